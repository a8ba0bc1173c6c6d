from runctl_core.cli.main import main

main()

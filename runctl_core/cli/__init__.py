"""runctl's command line (click). Modules here import only click at load time, so ``--help`` stays fast."""

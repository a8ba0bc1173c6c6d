"""runctl's local provider: runs jobs on this machine, each instance a sandbox directory."""

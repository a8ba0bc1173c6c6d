"""runctl provider for Slurm clusters."""

"""runctl provider for Lyceum Cloud: training scripts run as Lyceum executions."""

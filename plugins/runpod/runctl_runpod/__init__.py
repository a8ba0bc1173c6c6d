"""runctl provider plugin for RunPod GPU pods."""

__version__ = "0.1.0"

"""runctl provider for AWS EC2 (on-demand and spot), driven through SSM and staged through S3."""

__version__ = "0.1.0"

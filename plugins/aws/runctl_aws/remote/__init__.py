"""Files that run on the EC2 instance: ``agent.py``, the AWS helper the core's remote-job layer installs beside
runctl's runner (see :func:`runctl_aws.jobs.agent_tools`)."""

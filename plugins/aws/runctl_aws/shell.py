"""``runctl ssh`` on EC2: an SSM Session Manager session, the transport runctl already uses (no SSH key, no
open port). It needs the AWS CLI and its Session Manager plugin on this machine; when one is missing the error
gives the exact install step.

Documented by AWS ("Start a session", Systems Manager user guide): ``aws ssm start-session --target ID`` opens
a shell; ``--document-name AWS-StartInteractiveCommand --parameters command=...`` runs one command (here: ``cd``
into the project or the job's directory, then a login shell or the user's command);
``--document-name AWS-StartPortForwardingSession --parameters portNumber=...,localPortNumber=...`` forwards one
port per session. The plugin is installed separately from the CLI ("Install the Session Manager plugin for the
AWS CLI")."""

from __future__ import annotations

import json
import shlex
import shutil

from runctl_core.errors import PrerequisiteError, UsageError
from runctl_core.models import Instance, JobStatus, PortForward, ProviderContext, ShellCommand

INSTALL_CLI = "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
INSTALL_PLUGIN = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html"
)


def shell(
    ctx: ProviderContext, instance: Instance, job: JobStatus | None, command: list[str], ports: list[PortForward]
) -> ShellCommand:
    """The ``shell`` hook: the SSM session for this instance, with the provider's region, profile and endpoint."""
    from runctl_aws.common import region_of, settings_of

    settings = settings_of(ctx)
    return shell_command(
        instance,
        region=region_of(instance, ctx),
        profile=settings.profile,
        endpoint_url=settings.endpoint_url,
        remote_dir=settings.remote_dir,
        job=job,
        command=command,
        ports=ports,
    )


def shell_command(
    instance: Instance,
    *,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    remote_dir: str,
    job: JobStatus | None,
    command: list[str],
    ports: list[PortForward],
) -> ShellCommand:
    if shutil.which("aws") is None:
        raise PrerequisiteError(
            "runctl ssh on AWS opens an SSM session with the AWS CLI, and `aws` is not installed here",
            f"install the AWS CLI v2 ({INSTALL_CLI}) and its Session Manager plugin ({INSTALL_PLUGIN})",
        )
    if shutil.which("session-manager-plugin") is None:
        raise PrerequisiteError(
            "the AWS CLI's Session Manager plugin (session-manager-plugin) is not installed here",
            f"install it as described in {INSTALL_PLUGIN} (e.g. on Debian/Ubuntu: the session-manager-plugin.deb "
            "package from that page), then run runctl ssh again",
        )
    argv = ["aws", "ssm", "start-session", "--target", instance.id]
    if region:
        argv += ["--region", region]
    if profile:
        argv += ["--profile", profile]
    if endpoint_url:
        argv += ["--endpoint-url", endpoint_url]
    if ports:
        if len(ports) > 1 or command:
            raise UsageError(
                "an SSM port-forwarding session forwards exactly one port and runs no command",
                "run `runctl ssh ID --port LOCAL[:REMOTE]` once per port, in separate terminals",
            )
        forward = {"portNumber": [str(ports[0].remote)], "localPortNumber": [str(ports[0].local)]}
        return ShellCommand(
            argv=[*argv, "--document-name", "AWS-StartPortForwardingSession", "--parameters", json.dumps(forward)]
        )
    steps = [f"cd {shlex.quote(remote_dir + '/project')}"]
    if job is not None:
        job_dir = f"{remote_dir}/jobs/{job.job_id}"
        checkpoints = shlex.quote(job_dir + "/checkpoints")
        steps.append(f"export RUNCTL_JOB_ID={shlex.quote(job.job_id)} RUNCTL_CHECKPOINT_DIR={checkpoints}")
    steps.append(" ".join(command) if command else "exec bash -l")
    return ShellCommand(
        argv=[
            *argv,
            "--document-name",
            "AWS-StartInteractiveCommand",
            "--parameters",
            json.dumps({"command": [" && ".join(steps)]}),
        ]
    )

"""`runctl ssh`: a shell on an instance (or in a job's directory), and port forwarding where the transport
allows it. What is run comes from the provider's ``shell`` hook: ssh with the key runctl holds, an SSM session,
or a shell in the local sandbox."""

from __future__ import annotations

import click

from runctl_core.cli.options import common, session_of
from runctl_core.cli.output import examples


def _port(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[int, int]]:
    ports = []
    for value in values:
        local, _, remote = value.partition(":")
        try:
            pair = (int(local), int(remote or local))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not LOCAL[:REMOTE] (e.g. 6006 or 8888:8888)", param=param) from None
        if not all(1 <= p <= 65535 for p in pair):
            raise click.BadParameter(f"{value!r}: ports are 1-65535", param=param)
        ports.append(pair)
    return ports


@click.command(
    "ssh",
    epilog=examples(
        "runctl ssh i-0abc123",
        "runctl ssh job-7f3a9c -- ls -la '$RUNCTL_CHECKPOINT_DIR'",
        "runctl ssh i-0abc123 --port 6006            # TensorBoard on localhost:6006",
        "runctl ssh job-7f3a9c --port 8888:8888      # Jupyter",
    ),
)
@click.argument("ident", metavar="ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND...]")
@click.option(
    "--port",
    "ports",
    multiple=True,
    callback=_port,
    metavar="LOCAL[:REMOTE]",
    help="Forward LOCAL on this machine to REMOTE on the instance (repeatable), e.g. --port 6006.",
)
@common
@click.pass_context
def ssh_cmd(ctx: click.Context, ident: str, command: tuple[str, ...], ports: list[tuple[int, int]]) -> None:
    """Open a shell on ID: an instance, or a job's instance in the job's directory (with its
    RUNCTL_CHECKPOINT_DIR). COMMAND after `--` runs instead of an interactive shell. The exit code is the
    shell's. Providers that cannot do it say why."""
    import os
    import subprocess

    from runctl_core.errors import CapabilityError, UsageError
    from runctl_core.jobs import job_context, load_job, resolve_instance
    from runctl_core.models import PortForward

    session = session_of(ctx)
    job = None
    if session.store.job(ident) is not None:
        provider, instance, job = job_context(session, load_job(session, ident))
    else:
        provider, instance = resolve_instance(session, ident, or_job=True)
    caps = provider.capabilities()
    if not caps.shell.supported or not provider.has("shell"):
        raise CapabilityError(
            f"provider {provider.name} cannot open a shell: {caps.shell.reason or 'it has no shell hook'}",
            f"follow the job instead: runctl logs JOB --follow; or see: runctl status {instance.id}",
        )
    if ports and not caps.port_forward.supported:
        raise CapabilityError(
            f"provider {provider.name} cannot forward ports: {caps.port_forward.reason}", "drop --port"
        )
    report = provider.status(instance, None)
    if not report.instance.state.alive:
        raise UsageError(f"{instance.id} is {report.instance.state.value}", "start a new one: runctl create")
    forwards = [PortForward(local=local, remote=remote) for local, remote in ports]
    shell = provider.shell(report.instance, job, list(command), forwards)
    assert shell is not None
    session.progress.close()
    try:
        code = subprocess.call(shell.argv, cwd=shell.cwd, env={**os.environ, **shell.env})
    except FileNotFoundError:
        raise UsageError(f"{shell.argv[0]} is not installed here", "install it, then run runctl ssh again") from None
    except KeyboardInterrupt:
        code = 130
    raise click.exceptions.Exit(code)

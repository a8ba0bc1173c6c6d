"""`runctl train`: a script on an existing instance."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    ScriptCommand,
    common,
    duration_option,
    environment_options,
    job_env_options,
    multi_node_options,
    parse_env,
    session_of,
)
from runctl_core.cli.output import emit, environment_line, examples, log_sink

if TYPE_CHECKING:
    pass


@click.command(
    "train",
    cls=ScriptCommand,
    epilog=examples(
        "runctl train local-1a2b3c4d examples/train.py --wait -- --epochs 3",
        "JOB=$(runctl train i-0abc123 train.py --output id); runctl logs $JOB --follow",
        "runctl train slurm-1a2b3c4d examples/ddp_train.py --nodes 2 --wait",
    ),
)
@click.argument("instance_id", metavar="INSTANCE")
@click.argument("script", type=click.Path(dir_okay=False, path_type=str))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@click.option(
    "--wait/--no-wait",
    default=False,
    show_default=True,
    help="Follow the log until the job ends; the exit code is then the job's.",
)
@click.option("--no-sync", is_flag=True, help="Do not sync the project first (it is already there).")
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="The project directory (default: the current directory).",
)
@multi_node_options
@click.option("--timeout", metavar="DURATION", callback=duration_option, help="Kill the job after this.")
@job_env_options
@environment_options
@common
@click.pass_context
def train_cmd(
    ctx: click.Context,
    instance_id: str,
    script: str,
    script_args: tuple[str, ...],
    wait: bool,
    no_sync: bool,
    project: Path | None,
    timeout: float | None,
    env_pairs: tuple[str, ...],
    env_file: Path | None,
    nodes: int,
    launcher: str,
    setup_commands: tuple[str, ...],
    python_version: str | None,
) -> None:
    """Start SCRIPT on an existing INSTANCE (syncing the project first). Prints the job id.

    ARGS after `--` go to the script. The job runs detached: follow it with `runctl logs JOB --follow`,
    or pass --wait to follow it here (the exit code is then the job's).
    """
    from runctl_core.errors import JobFailed
    from runctl_core.job_watch import failing_rank_tail
    from runctl_core.jobfile import read_env_file
    from runctl_core.run_models import job_document
    from runctl_core.single_steps import follow_to_end, start_training
    from runctl_core.workflow import environment_report, raise_if_setup_failed

    session = session_of(ctx)
    env = {**(read_env_file(env_file) if env_file else {}), **parse_env(env_pairs)}
    provider, instance, status = start_training(
        session,
        instance_id,
        script,
        args=list(script_args),
        env=env,
        timeout=timeout,
        project=project,
        sync=not no_sync,
        nodes=nodes,
        launcher=launcher,
        setup=list(setup_commands),
        python=python_version,
    )
    job_id = status.job_id
    store = session.store
    if wait:
        session.progress.pause()
        status = follow_to_end(session, provider, instance, status, sink=log_sink(session))
        raise_if_setup_failed(job_id, environment_report(status), "", None)
        if status.state.value != "succeeded":
            rank_tail = failing_rank_tail(provider, instance, status)
            raise JobFailed(
                f"job {job_id} {status.state.value}"
                + (f" (exit code {status.exit_code})" if status.exit_code is not None else "")
                + (
                    f" (rank {status.rank} failed first; the other ranks were stopped)\n{rank_tail}"
                    if rank_tail
                    else ""
                ),
                f"see the whole log: runctl logs {job_id}" + (f" --rank {status.rank}" if status.rank else ""),
                details={"result": job_document(store, job_id)},
            )
    session.progress.close()
    document = job_document(store, job_id)
    environment = environment_report(status)
    if environment:
        document["environment"] = environment
    emit(
        session,
        document,
        f"job {job_id} {status.state.value} on {instance.id}"
        + (f"\n{environment_line(environment)}" if environment and wait else "")
        + ("" if wait else f"\nfollow it: runctl logs {job_id} --follow"),
        job_id,
    )

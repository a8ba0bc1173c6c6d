"""`runctl train`: a script on an existing instance."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    common,
    duration_option,
    environment_options,
    multi_node_options,
    parse_env,
    session_of,
)
from runctl_core.cli.output import emit, environment_line, examples, log_sink
from runctl_core.jobs import resolve_instance

if TYPE_CHECKING:
    pass


@click.command(
    "train",
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
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Environment for the script (repeatable), e.g. --env WANDB_API_KEY=$WANDB_API_KEY. Values are never"
    " stored; secret-looking ones (*_KEY, *TOKEN*, *SECRET*) are masked in output; RUNCTL_* names are reserved.",
)
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
    from runctl_core.files import default_project_root
    from runctl_core.models import JobSpec
    from runctl_core.workflow import (
        check_nodes,
        environment_report,
        failing_rank_tail,
        job_document,
        project_files,
        raise_if_setup_failed,
        resolve_script,
        start_job,
        sync_project,
        wait_job,
    )

    session = session_of(ctx)
    provider, instance = resolve_instance(session, instance_id)
    check_nodes(provider, nodes, launcher)
    root, rel = resolve_script(project or default_project_root(), script)
    if not no_sync:
        sync_project(session, provider, instance, project_files(session, root))
    store = session.store
    job_id = store.new_job_id()
    spec = JobSpec(
        job_id=job_id,
        script=rel,
        args=list(script_args),
        env=parse_env(env_pairs),
        timeout=timeout,
        nodes=nodes,
        launcher=launcher,  # click.Choice: "python" or "torchrun"
        setup=list(setup_commands),
        python=python_version,
    )
    store.create_job(spec, provider.name, keep=True)
    status = start_job(session, provider, instance, spec)
    if wait:
        session.progress.pause()
        try:
            status, _ = wait_job(session, provider, instance, status, sink=log_sink(session))
        except KeyboardInterrupt:
            from runctl_core.errors import Interrupted

            raise Interrupted(
                f"stopped following job {job_id}; it keeps running on {instance.id}",
                f"follow it again: runctl logs {job_id} --follow; stop it: runctl terminate {job_id} --yes",
            ) from None
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

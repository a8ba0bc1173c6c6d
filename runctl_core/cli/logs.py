"""`runctl logs`: print or follow a job's log."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    common,
    refuse_id_output,
    session_of,
)
from runctl_core.cli.output import emit, examples
from runctl_core.jobs import job_context, load_job, refresh_job

if TYPE_CHECKING:
    pass


@click.command(
    "logs",
    epilog=examples(
        "runctl logs job-7f3a9c",
        "runctl logs job-7f3a9c --follow",
        "runctl logs job-7f3a9c --follow --output json   # JSON Lines",
        "runctl logs job-7f3a9c --rank 1                  # a multi-node job's rank 1",
        "runctl logs job-7f3a9c --all-ranks               # every rank, lines prefixed [rank K]",
    ),
)
@click.argument("job_id", metavar="JOB")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new output until the job ends (exit code = the job's)."
)
@click.option(
    "--rank",
    type=click.IntRange(0, 1023),
    default=0,
    show_default=True,
    help="A multi-node job's rank to show (0 is the job's own log), e.g. --rank 1.",
)
@click.option("--all-ranks", is_flag=True, help="Every rank of a multi-node job, each line prefixed [rank K].")
@common
@click.pass_context
def logs_cmd(ctx: click.Context, job_id: str, follow: bool, rank: int, all_ranks: bool) -> None:
    """Print the log (stdout and stderr) of JOB, or follow it to the end. A multi-node job shows rank 0
    unless --rank or --all-ranks says otherwise."""
    from runctl_core.errors import CapabilityError, JobFailed
    from runctl_core.job_watch import read_logs, wait_job
    from runctl_core.redact import redact

    session = session_of(ctx)
    refuse_id_output(session)
    row = load_job(session, job_id)
    from runctl_core.job_files import removed_at

    when = removed_at(session, job_id)
    if when is not None:
        from runctl_core.errors import UsageError

        raise UsageError(
            f"the log of job {job_id} was removed by runctl resources cleanup at {when} (with its files on "
            f"{row.instance_id}, after its instance ended)",
            f"its collected checkpoints: runctl checkpoint list {job_id}; to keep ended jobs' logs longer: "
            "runctl config set resources.prune_job_files_after 30d",
        )
    provider, instance, status = job_context(session, row)
    as_json = session.options.output == "json"
    if not provider.has("logs"):
        raise CapabilityError(f"provider {provider.name} cannot show logs", f"check it with: runctl status {job_id}")
    nodes = row.spec.nodes
    if rank >= nodes:
        raise click.BadParameter(
            f"job {job_id} has {nodes} rank(s), 0 to {nodes - 1}; {rank} is not one", param_hint="--rank"
        )
    if all_ranks and follow:
        raise click.UsageError("--all-ranks cannot be followed; follow one rank with --rank K --follow")
    if all_ranks:
        logs_by_rank = {}
        for k in range(nodes):
            parts: list[str] = []
            read_logs(provider, instance, status, 0, parts.append, until_complete=True, rank=k)
            logs_by_rank[k] = redact("".join(parts))
        if as_json:
            emit(session, {"job_id": job_id, "ranks": {str(k): log for k, log in logs_by_rank.items()}})
        else:
            for k, log in logs_by_rank.items():
                sys.stdout.writelines(f"[rank {k}] {line}\n" for line in log.splitlines())
            sys.stdout.flush()
        return
    if not follow:
        parts = []
        read = read_logs(provider, instance, status, 0, parts.append, until_complete=True, rank=rank)
        log = "".join(parts)
        if as_json:
            emit(session, {"job_id": job_id, "log": log, "bytes": read.offset, "complete": read.complete})
        else:
            sys.stdout.write(redact(log))
            sys.stdout.flush()
        return

    def sink(text: str) -> None:
        if as_json:
            sys.stdout.write(json.dumps({"job_id": job_id, "data": redact(text)}) + "\n")
        else:
            sys.stdout.write(redact(text))
        sys.stdout.flush()

    try:
        final, offset = wait_job(session, provider, instance, status, sink=sink, rank=rank)
    except KeyboardInterrupt:
        from runctl_core.errors import Interrupted

        raise Interrupted(
            f"stopped following job {job_id}; it keeps running", f"stop it with: runctl terminate {job_id} --yes"
        ) from None
    refresh_job(session, session.store.job(job_id) or row)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "job_id": job_id,
                    "state": final.state.value,
                    "exit_code": final.exit_code,
                    "bytes": offset,
                    "complete": True,
                }
            )
            + "\n"
        )
    if final.state.value != "succeeded":
        raise JobFailed(
            f"job {job_id} {final.state.value}"
            + (f" (exit code {final.exit_code})" if final.exit_code is not None else ""),
            f"see its state: runctl status {job_id}",
        )

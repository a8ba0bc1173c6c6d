"""`runctl checkpoint list|info`: a job's checkpoints, local and remote."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    common,
    session_of,
)
from runctl_core.cli.output import emit, examples, table
from runctl_core.jobs import list_checkpoints

if TYPE_CHECKING:
    pass


@click.group(
    "checkpoint",
    epilog=examples(
        "runctl checkpoint list job-7f3a9c",
        "runctl checkpoint info job-7f3a9c",
        "runctl checkpoint pull job-7f3a9c ./ckpt",
    ),
)
def checkpoint_group() -> None:
    """Checkpoints of a job: on the instance or in provider storage, and those runctl collected locally."""


@checkpoint_group.command("list", epilog=examples("runctl checkpoint list job-7f3a9c --output json"))
@click.argument("job_id", metavar="JOB")
@common
@click.pass_context
def checkpoint_list(ctx: click.Context, job_id: str) -> None:
    """Every checkpoint file of JOB, local and remote."""
    session = session_of(ctx)
    found, local_dir = list_checkpoints(session, job_id)
    doc = {"job_id": job_id, "local_dir": local_dir, "checkpoints": found}
    emit(
        session,
        doc,
        table(
            None,
            ["NAME", "SIZE", "MODIFIED", "WHERE", "LOCATION"],
            [[c["name"], c["size"], (c.get("modified_at") or "")[:19], c["where"], c["location"]] for c in found],
        )
        if found
        else f"no checkpoints for {job_id}",
    )


@checkpoint_group.command("info", epilog=examples("runctl checkpoint info job-7f3a9c"))
@click.argument("job_id", metavar="JOB")
@common
@click.pass_context
def checkpoint_info(ctx: click.Context, job_id: str) -> None:
    """The newest checkpoint of JOB and where the job's checkpoints are."""
    session = session_of(ctx)
    found, local_dir = list_checkpoints(session, job_id)
    newest = max(found, key=lambda c: (c.get("modified_at") or "", c["name"])) if found else None
    doc = {
        "job_id": job_id,
        "count": len(found),
        "total_bytes": sum(c["size"] for c in found),
        "newest": newest,
        "local_dir": local_dir,
    }
    text = (
        f"{job_id}: {len(found)} files, {doc['total_bytes']} bytes"
        + (f"\nnewest file: {newest['name']} ({newest['where']}: {newest['location']})" if newest else "")
        + (f"\ncollected in: {local_dir}" if local_dir else "")
    )
    emit(session, doc, text)


@checkpoint_group.command(
    "pull",
    epilog=examples("runctl checkpoint pull job-7f3a9c", "runctl checkpoint pull job-7f3a9c ./ckpt --output json"),
)
@click.argument("job_id", metavar="JOB")
@click.argument("dest", metavar="[DEST]", required=False, type=click.Path(file_okay=False, path_type=Path))
@common
@click.pass_context
def checkpoint_pull(ctx: click.Context, job_id: str, dest: Path | None) -> None:
    """Fetch the checkpoints of JOB into DEST (default: where runctl keeps them) from wherever they are: its
    instance while it is alive, else the copy runctl collected."""
    from runctl_core.jobs import outputs_destination, pull_checkpoints

    session = session_of(ctx)
    if dest is not None:
        from runctl_core.errors import UsageError
        from runctl_core.preflight import check_outputs_dir

        try:
            check_outputs_dir(dest.expanduser())
        except UsageError as exc:  # before anything is fetched: say it about DEST, not --outputs
            raise UsageError(
                exc.message.replace("the outputs directory", "DEST"),
                f"pass a DEST you can write (created when missing), e.g. runctl checkpoint pull {job_id} ./ckpt",
            ) from None
    files = pull_checkpoints(session, job_id, dest)
    session.progress.close()
    where = str(dest.expanduser().resolve() if dest else outputs_destination(session, job_id))
    emit(
        session,
        {"job_id": job_id, "dest": where, "files": [str(f) for f in files]},
        f"{len(files)} files of {job_id} in {where}",
    )

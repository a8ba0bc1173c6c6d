"""`runctl sync`: send the project to an instance."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    common,
    session_of,
)
from runctl_core.cli.output import emit, examples
from runctl_core.jobs import resolve_instance

if TYPE_CHECKING:
    pass


@click.command(
    "sync", epilog=examples("runctl sync local-1a2b3c4d", "runctl --provider aws sync i-0abc123 --project ./src")
)
@click.argument("instance_id", metavar="INSTANCE")
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="The project directory to send (default: the current directory).",
)
@common
@click.pass_context
def sync_cmd(ctx: click.Context, instance_id: str, project: Path | None) -> None:
    """Send the project to INSTANCE, respecting .gitignore and .runctlignore; only changed files travel."""
    from runctl_core.files import default_project_root
    from runctl_core.preflight import project_files
    from runctl_core.steps import sync_project

    session = session_of(ctx)
    provider, instance = resolve_instance(session, instance_id)
    result = sync_project(session, provider, instance, project_files(session, project or default_project_root()))
    session.progress.close()
    emit(
        session,
        result,
        f"{result.files_sent} of {result.files_total} files sent ({result.bytes_sent} bytes), "
        f"{result.files_deleted} deleted -> {instance.id}:{result.remote_path}",
        instance.id,
    )

"""`runctl init` (a commented starter runctl.yaml) and `runctl schema` (the job file's JSON Schema)."""

from __future__ import annotations

from pathlib import Path

import click

from runctl_core.cli.options import output_option, session_of
from runctl_core.cli.output import emit, examples


@click.command("init", epilog=examples("runctl init", "runctl init --file jobs/big.yaml --force"))
@click.option(
    "--file",
    "-f",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="runctl.yaml",
    show_default=True,
    metavar="FILE",
    help="Where to write the job file, e.g. --file jobs/big.yaml.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@output_option
@click.pass_context
def init_cmd(ctx: click.Context, path: Path, force: bool) -> None:
    """Write a commented starter job file; `runctl run` then runs it."""
    from runctl_core.errors import UsageError
    from runctl_core.jobfile import STARTER

    session = session_of(ctx, load_config=False)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "edit it, or pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER)
    emit(session, {"path": str(path.resolve())}, f"wrote {path}; edit it, then: runctl run", str(path.resolve()))


@click.command(
    "schema",
    epilog=examples(
        "runctl schema > runctl.schema.json",
        "# in runctl.yaml, for editor completion: # yaml-language-server: $schema=runctl.schema.json",
    ),
)
@output_option
@click.pass_context
def schema_cmd(ctx: click.Context) -> None:
    """Print the JSON Schema of the job file runctl.yaml (for editor completion and validation)."""
    import json

    from runctl_core.jobfile import job_schema

    schema = job_schema()
    emit(session_of(ctx, load_config=False), schema, lambda: click.echo(json.dumps(schema, indent=2)))

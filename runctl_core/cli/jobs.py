"""`runctl jobs`: the jobs runctl knows, newest last, refreshed from their providers (like `sky queue`)."""

from __future__ import annotations

import click

from runctl_core.cli.options import common, session_of
from runctl_core.cli.output import emit, examples
from runctl_core.cli.status import jobs_table


@click.command(
    "jobs",
    epilog=examples("runctl jobs", "runctl jobs local-1a2b3c4d", "runctl jobs --all --output json"),
)
@click.argument("instance_id", metavar="[INSTANCE]", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also jobs that have ended (default: only active ones).")
@common
@click.pass_context
def jobs_cmd(ctx: click.Context, instance_id: str | None, show_all: bool) -> None:
    """Jobs runctl knows (only those on INSTANCE when given): active ones by default, every one with --all. Active
    jobs are asked of their providers first, so a job that has ended shows as ended."""
    from runctl_core.jobs import refresh_active, summary

    session = session_of(ctx)
    only = session.options.provider
    if only:
        session.provider(only)  # an unknown provider fails here, as with every other command
    if instance_id and not any(row.instance.id == instance_id for row in session.store.instances()):
        from runctl_core.errors import UsageError

        raise UsageError(
            f"runctl has no instance {instance_id!r}",
            "list instances with: runctl resources list (or every job: runctl jobs --all)",
        )
    notes = refresh_active(session, only=only, instance_id=instance_id)
    jobs = [j for j in summary(session, show_all, only=only)["jobs"] if instance_id in (None, j["instance_id"])]

    def text() -> None:
        if jobs:
            jobs_table(jobs)()
        else:
            click.echo("no active jobs" + ("" if show_all else " (runctl jobs --all lists ended ones too)"))
        for note in notes:
            click.echo(f"note: could not refresh {note}")

    emit(session, {"jobs": jobs, "notes": notes}, text)

"""`runctl resources list|cleanup|cost`: everything runctl created."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    common,
    confirm_or_require_yes,
    refuse_id_output,
    session_of,
)
from runctl_core.cli.output import emit, examples, money, table

if TYPE_CHECKING:
    pass


@click.group(
    "resources",
    epilog=examples(
        "runctl resources list",
        "runctl resources cleanup --dry-run",
        "runctl resources cleanup --yes --older-than 2h",
        "runctl resources cost --since 7d",
    ),
)
def resources_group() -> None:
    """Everything runctl created, across providers: reconcile, clean up, cost."""


@resources_group.command(
    "list", epilog=examples("runctl resources list", "runctl resources list --provider aws -o json")
)
@common
@click.pass_context
def resources_list(ctx: click.Context) -> None:
    """Live instances runctl created, as the journal and each provider report them, with orphans marked."""
    from runctl_core.resources import providers_in_scope, reconcile

    session = session_of(ctx)
    result = reconcile(session, providers_in_scope(session, session.options.provider))
    session.progress.close()

    def text() -> None:
        if result.resources:
            table(
                None,
                ["PROVIDER", "ID", "STATE", "KIND", "JOB", "$/H", "WHY"],
                [
                    [r.provider, r.id, r.state, r.kind, r.job_id or "-", money(r.hourly_price), r.reason]
                    for r in result.resources
                ],
            )()
        else:
            click.echo("nothing runctl created is running")
        for note in result.quiet_notes(explicit=bool(session.options.provider)):
            click.echo(f"note: {note}")

    emit(session, result, text)


@resources_group.command(
    "cleanup",
    epilog=examples(
        "runctl resources cleanup --dry-run",
        "runctl resources cleanup --yes --older-than 2h",
        "runctl config set resources.prune_job_files_after 30d   # keep ended jobs' files longer",
    ),
)
@click.option("--dry-run", is_flag=True, help="Show what would be terminated and removed; do nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed in scripts).")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only instances created, and ended jobs' files of instances ended, at least this long ago (e.g. 2h; "
    "default for job files: resources.prune_job_files_after, 7 days).",
)
@click.option("--all", "everything", is_flag=True, help="Also kept and in-use instances (all of yours runctl tagged).")
@common
@click.pass_context
def resources_cleanup(ctx: click.Context, dry_run: bool, yes: bool, older_than: str | None, everything: bool) -> None:
    """Terminate runctl's orphaned, abandoned and finished instances - never one runctl did not tag, never
    another owner's - and remove what providers keep of ended jobs on ended instances (local: a terminated
    sandbox's job log and checkpoints) after the retention, only once their checkpoints were collected."""
    from runctl_core import job_files
    from runctl_core.durations import parse_duration
    from runctl_core.errors import RunctlError
    from runctl_core.resources import REMOVABLE, providers_in_scope, reconcile
    from runctl_core.resources import older_than as is_older
    from runctl_core.teardown import terminate_instance

    session = session_of(ctx)
    refuse_id_output(session)
    try:
        age = parse_duration(older_than) if older_than else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    scope = providers_in_scope(session, session.options.provider)
    result = reconcile(session, scope)
    targets = [r for r in result.resources if (everything or r.kind in REMOVABLE) and is_older(r, age)]
    retention = age if age is not None else session.loaded.config.resources.prune_job_files_after
    files = job_files.plan(session, scope, retention)
    removable = [f for f in files if f.action == "remove"]
    done: list[dict[str, Any]] = []
    if (targets or removable) and not dry_run:
        what = [f"terminate {len(targets)} instance(s)"] if targets else []
        what += [f"remove the files of {len(removable)} ended job(s)"] if removable else []
        confirm_or_require_yes(session, yes, " and ".join(what) + "?")
        for resource in targets:
            provider = session.provider(resource.provider)
            row = session.store.instance(resource.id, resource.provider)
            from runctl_core.models import Instance, InstanceState

            instance = (
                row.instance
                if row
                else Instance(id=resource.id, provider=resource.provider, state=InstanceState(resource.state))
            )
            try:
                final = terminate_instance(session, provider, instance)
                done.append({"provider": resource.provider, "id": resource.id, "state": final.state.value})
            except RunctlError as exc:
                done.append({"provider": resource.provider, "id": resource.id, "error": exc.message})
        files = job_files.remove(session, files)
    session.progress.close()
    doc = {
        "dry_run": dry_run,
        "targets": targets,
        "terminated": done,
        "job_files": files,
        "notes": result.notes,
        "skipped": result.skipped,
    }

    def text() -> None:
        if not targets and not removable:
            click.echo("nothing to clean up")
        for r in targets:
            verb = "would terminate" if dry_run else "terminated"
            outcome = next((d for d in done if d["id"] == r.id), {})
            if "error" in outcome:
                verb = f"FAILED ({outcome['error']})"
            click.echo(f"{verb}: {r.provider} {r.id} [{r.kind}: {r.reason}]")
        verbs = {"remove": "would remove job files", "removed": "removed job files", "keep": "kept job files"}
        for f in files:
            verb = verbs.get(f.action, "FAILED to remove job files")
            click.echo(f"{verb}: {f.provider} {f.job_id} on {f.instance_id} [{f.reason}]")
        for note in result.quiet_notes(explicit=bool(session.options.provider)):
            click.echo(f"note: {note}")

    emit(session, doc, text)
    if any("error" in d for d in done) or any(f.action == "failed" for f in files):
        raise RunctlError(
            "some instances or job files could not be removed", "run the cleanup again; see the lines above"
        )


@resources_group.command("cost", epilog=examples("runctl resources cost", "runctl resources cost --since 7d -o json"))
@click.option("--since", metavar="DURATION", default="30d", show_default=True, help="Only instances created since.")
@common
@click.pass_context
def resources_cost(ctx: click.Context, since: str) -> None:
    """What runctl's instances cost (rate x billed time), by provider and by job, from the journal."""
    from runctl_core.durations import parse_duration
    from runctl_core.spending import cost_report

    session = session_of(ctx)
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    report = cost_report(session, window)
    total, by_provider, unknown, start = report.total, report.by_provider, report.instances_without_price, report.since

    def text() -> None:
        click.echo(
            f"{money(total, 2)} over {report.instances} instances since {start:%Y-%m-%d %H:%M} UTC"
            + (f" ({unknown} without a known price)" if unknown else "")
        )
        if by_provider:
            table(None, ["PROVIDER", "COST"], [[p, money(c)] for p, c in sorted(by_provider.items())])()

    emit(session, report, text)

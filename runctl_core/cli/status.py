"""`runctl status`: one job or instance, or a summary of everything."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    common,
    session_of,
)
from runctl_core.cli.output import emit, examples, money, table
from runctl_core.jobs import load_job, refresh_job

if TYPE_CHECKING:
    from runctl_core.session import Session


@click.command(
    "status",
    epilog=examples(
        "runctl status                 # 3 instances running, $4.12/h, 2 jobs active",
        "runctl status job-7f3a9c --output json",
        "runctl status i-0abc123",
    ),
)
@click.argument("ident", metavar="[ID]", required=False)
@click.option(
    "--all", "show_all", is_flag=True, help="With no ID: also list every instance and job, not only live ones."
)
@common
@click.pass_context
def status_cmd(ctx: click.Context, ident: str | None, show_all: bool) -> None:
    """The state of one job or instance (asking its provider), or with no ID a one-line summary of everything
    runctl is running, across providers, from its records."""
    from runctl_core.jobs import instance_status, refresh_active, summary

    session = session_of(ctx)
    only = session.options.provider
    if only:
        session.provider(only)  # an unknown provider fails here, as with every other command
    if ident is None:
        notes = refresh_active(session, only=only)
        _show_summary(session, summary(session, show_all, only=only), show_all, notes)
        return
    if session.store.job(ident) is not None:
        doc = refresh_job(session, load_job(session, ident))
        text = (
            f"job {doc['job_id']}: {doc['state']}"
            + (f" (exit code {doc['exit_code']})" if doc["exit_code"] is not None else "")
            + f" on {doc['provider']} instance {doc['instance_id']}"
            + (f" [{doc['instance']['state']}]" if doc.get("instance") else "")
            + (f", cost {money(doc['cost'])}" if doc.get("cost") is not None else "")
            + (f"\n{doc['message']}" if doc["message"] else "")
        )
        emit(session, doc, text, doc["job_id"])
        return
    doc = instance_status(session, ident)
    emit(
        session,
        doc,
        f"{doc['id']} ({doc['provider']}): {doc['state']}"
        + (f" - {doc['message']}" if doc.get("message") else "")
        + (f", {money(doc['hourly_price'])}/h" if doc.get("hourly_price") else ""),
        doc["id"],
    )


def _show_summary(session: Session, doc: dict[str, Any], show_all: bool, notes: list[str]) -> None:
    counts = doc["summary"]
    alive, active = counts["instances_running"], counts["jobs_active"]
    line = (
        f"{alive} instance{'s' if alive != 1 else ''} running, ${counts['hourly_cost']:.2f}/h, "
        f"{active} job{'s' if active != 1 else ''} active"
    )
    doc = {**doc, "notes": notes}

    def text() -> None:
        click.echo(line)
        if show_all or session.options.verbose:
            if doc["instances"]:
                instances_table(doc["instances"])()
            if doc["jobs"]:
                jobs_table(doc["jobs"])()
        for note in notes:
            click.echo(f"note: could not refresh {note}")

    emit(session, doc, text)


def instances_table(instances: list[dict[str, Any]]) -> Callable[[], None]:
    return table(
        "instances",
        ["INSTANCE", "PROVIDER", "STATE", "TYPE", "$/H", "COST", "JOB"],
        [
            [
                i["id"],
                i["provider"],
                i["state"],
                i.get("instance_type"),
                money(i.get("hourly_price")),
                money(i["cost"]),
                i["job_id"],
            ]
            for i in instances
        ],
    )


def jobs_table(jobs: list[dict[str, Any]]) -> Callable[[], None]:
    return table(
        "jobs",
        ["JOB", "PROVIDER", "INSTANCE", "STATE", "EXIT", "SCRIPT", "CREATED"],
        [
            [
                j["job_id"],
                j["provider"],
                j["instance_id"],
                j["state"],
                j["exit_code"],
                j["script"],
                j["created_at"][:16].replace("T", " "),
            ]
            for j in jobs
        ],
    )

"""`runctl status`: one job or instance, or a summary of everything."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
@click.option("--all", "show_all", is_flag=True, help="With no ID: list every instance and job, not only live ones.")
@common
@click.pass_context
def status_cmd(ctx: click.Context, ident: str | None, show_all: bool) -> None:
    """The state of one job or instance (asking its provider), or with no ID a one-line summary of everything
    runctl is running, across providers, from its records."""
    session = session_of(ctx)
    store = session.store
    if ident is None:
        _summary(session, show_all)
        return
    if store.job(ident) is not None:
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
    from runctl_core.jobs import resolve_instance

    provider, instance = resolve_instance(session, ident, or_job=True)
    report = provider.status(instance, None)
    store.save_instance(report.instance)
    row = store.instance(instance.id, provider.name)
    doc = {**report.instance.model_dump(mode="json"), "cost": row.cost() if row else None}
    emit(
        session,
        doc,
        f"{instance.id} ({provider.name}): {report.instance.state.value}"
        + (f" - {report.instance.message}" if report.instance.message else "")
        + (f", {money(report.instance.hourly_price)}/h" if report.instance.hourly_price else ""),
        instance.id,
    )


def _summary(session: Session, show_all: bool) -> None:
    store = session.store
    instances = store.instances(alive_only=not show_all)
    jobs = store.jobs(active_only=not show_all)
    alive = [r for r in instances if r.ended_at is None]
    rate = sum(r.instance.hourly_price or 0.0 for r in alive)
    active = [j for j in jobs if not j.state.terminal]
    line = (
        f"{len(alive)} instance{'s' if len(alive) != 1 else ''} running, ${rate:.2f}/h, "
        f"{len(active)} job{'s' if len(active) != 1 else ''} active"
    )
    doc = {
        "summary": {"instances_running": len(alive), "hourly_cost": rate, "jobs_active": len(active)},
        "instances": [{**r.instance.model_dump(mode="json"), "cost": r.cost(), "job_id": r.job_id} for r in instances],
        "jobs": [
            {
                "job_id": j.id,
                "provider": j.provider,
                "instance_id": j.instance_id,
                "state": j.state.value,
                "exit_code": j.exit_code,
                "script": j.spec.script,
                "created_at": j.created_at.isoformat(),
            }
            for j in jobs
        ],
    }

    def text() -> None:
        click.echo(line)
        if show_all or session.options.verbose:
            table(
                "jobs",
                ["JOB", "PROVIDER", "INSTANCE", "STATE", "EXIT", "SCRIPT", "CREATED"],
                [
                    [
                        j.id,
                        j.provider,
                        j.instance_id,
                        j.state.value,
                        j.exit_code,
                        j.spec.script,
                        j.created_at.strftime("%Y-%m-%d %H:%M"),
                    ]
                    for j in jobs
                ],
            )()

    emit(session, doc, text)

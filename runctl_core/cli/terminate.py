"""`runctl terminate`: an instance, or a job (and its instance unless kept)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    common,
    confirm_or_require_yes,
    session_of,
)
from runctl_core.cli.output import emit, examples

if TYPE_CHECKING:
    pass


@click.command("terminate", epilog=examples("runctl terminate i-0abc123 --yes", "runctl terminate job-7f3a9c --yes"))
@click.argument("ident", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed in scripts).")
@common
@click.pass_context
def terminate_cmd(ctx: click.Context, ident: str, yes: bool) -> None:
    """Terminate the instance ID, or, when ID is a job id, stop that job and terminate the instance it ran
    on unless that instance was created to be kept. Harmless when it is already gone."""
    from runctl_core.jobs import resolve_instance, stop_job, stop_target, terminate_by_id

    session = session_of(ctx)
    if session.store.job(ident) is not None:
        row, _provider, instance, kept = stop_target(session, ident)
        journalled = session.store.instance(instance.id, row.provider)
        if not (row.state.terminal and journalled is not None and journalled.ended_at is not None):
            what = f"stop job {ident}" + ("" if kept else f" and terminate {instance.id}")
            confirm_or_require_yes(session, yes, f"{what}?")  # nothing to confirm when both have ended
        doc = stop_job(session, ident)
        session.progress.close()
        emit(
            session,
            {k: doc[k] for k in ("job_id", "state", "instance")},
            (
                f"job {ident} had already ended ({doc['previous_state']})"
                if doc["already_ended"]
                else f"job {ident} stopped"
            )
            + f"; instance {doc['instance']['id']} {doc['instance']['state']}",
            ident,
        )
        return
    provider, instance = resolve_instance(session, ident, or_job=True)
    journalled = session.store.instance(instance.id, provider.name)
    if journalled is None or journalled.ended_at is None:  # one already ended is only checked again
        confirm_or_require_yes(session, yes, f"terminate {provider.name} instance {instance.id}?")
    final = terminate_by_id(session, ident)
    session.progress.close()
    emit(session, final, f"{final.id} {final.state.value}", final.id)

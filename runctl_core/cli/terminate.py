"""`runctl terminate`: an instance, or a job (and its instance unless kept)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    from runctl_core.jobs import job_context, load_job, resolve_instance
    from runctl_core.workflow import terminate_instance

    session = session_of(ctx)
    store = session.store
    if store.job(ident) is not None:
        row = load_job(session, ident)
        provider, instance, status = job_context(session, row)
        inst_row = store.instance(instance.id, row.provider)
        kept = bool(inst_row and inst_row.keep and row.keep)
        what = f"stop job {ident}" + ("" if kept else f" and terminate {instance.id}")
        confirm_or_require_yes(session, yes, f"{what}?")
        ended = row.state.terminal  # nothing to stop: only its instance may still need ending
        stopped = None if ended else provider.cancel(instance, status)
        if stopped is not None:
            store.update_job(ident, status=stopped)
        if not kept or (stopped is None and not ended):
            instance = terminate_instance(session, provider, instance)
        if not ended:
            store.update_job(ident, state=_cancelled(), message="terminated on request")
        session.progress.close()
        job_now = store.job(ident)
        emit(
            session,
            {
                "job_id": ident,
                "state": job_now.state.value if job_now else None,
                "instance": instance.model_dump(mode="json"),
            },
            (f"job {ident} had already ended ({row.state.value})" if ended else f"job {ident} stopped")
            + f"; instance {instance.id} {instance.state.value}",
            ident,
        )
        return
    provider, instance = resolve_instance(session, ident, or_job=True)
    confirm_or_require_yes(session, yes, f"terminate {provider.name} instance {instance.id}?")
    final = terminate_instance(session, provider, instance)
    session.progress.close()
    emit(session, final, f"{final.id} {final.state.value}", final.id)


def _cancelled() -> Any:
    from runctl_core.models import JobState

    return JobState.CANCELLED

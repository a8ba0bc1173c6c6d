"""Looking up what runctl knows: a job, the instance it ran on, a job's checkpoints; refreshing a job from
its provider (and finishing a detached run whose job has ended)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runctl_core.session import Session
    from runctl_core.state import JobRow


def load_job(session: Session, job_id: str) -> JobRow:
    from runctl_core.errors import UsageError

    row = session.store.job(job_id)
    if row is None:
        raise UsageError(f"runctl has no job {job_id!r}", "list jobs with: runctl status --all")
    return row


def job_context(session: Session, row: JobRow) -> tuple[Any, Any, Any]:
    """(provider, instance record, last job status) for a job runctl knows."""
    from runctl_core.errors import UsageError
    from runctl_core.models import JobStatus

    if row.instance_id is None:
        raise UsageError(
            f"job {row.id} never started on an instance ({row.state.value}: {row.message})",
            "start a new run: runctl run SCRIPT",
        )
    instance_row = session.store.instance(row.instance_id, row.provider)
    if instance_row is None:
        raise UsageError(f"runctl lost the record of instance {row.instance_id}", "runctl resources list")
    status = row.status or JobStatus(job_id=row.id, state=row.state, exit_code=row.exit_code)
    return session.provider(row.provider), instance_row.instance, status


def refresh_job(session: Session, row: JobRow) -> dict[str, Any]:
    """Ask the provider for the job's state now; finish a detached run whose job has ended."""
    from runctl_core.cost import job_cost
    from runctl_core.workflow import collect_outputs, job_document, outputs_dir_for, terminate_instance

    provider, instance, status = job_context(session, row)
    report = provider.status(instance, status)
    session.store.save_instance(report.instance)
    if report.job is not None:
        session.store.update_job(row.id, status=report.job)
        if report.job.state.terminal and not row.keep and row.outputs_dir is None:
            dest = outputs_dir_for(session, row.id, None)
            if report.instance.state.alive:  # claimed: a concurrent `resources cleanup` leaves it to us
                with session.store.claim(row.provider, report.instance.id, row.id, "collecting its job's outputs"):
                    collect_outputs(session, provider, report.instance, report.job, dest)
                    terminate_instance(session, provider, report.instance)
    inst = session.store.instance(instance.id, row.provider)
    cost = job_cost(inst, report.job)
    if cost is not None:
        session.store.update_job(row.id, cost=cost)
    doc = job_document(session.store, row.id)
    doc["instance"] = inst.instance.model_dump(mode="json") if inst else None
    doc["cost"] = cost
    return doc


def resolve_instance(session: Session, instance_id: str, *, or_job: bool = False) -> tuple[Any, Any]:
    """The provider and the last known record of an instance runctl knows about (``or_job``: the command also
    takes a job id, and the error says so)."""
    from runctl_core.errors import UsageError

    row = session.store.instance(instance_id)
    if row is None:
        if or_job:
            raise UsageError(
                f"runctl has no job or instance {instance_id!r}",
                "list jobs with: runctl status --all; instances with: runctl resources list",
            )
        raise UsageError(
            f"runctl has no instance {instance_id!r}", "list what runctl knows with: runctl resources list"
        )
    provider = session.provider(row.instance.provider)
    return provider, row.instance


def list_checkpoints(session: Session, job_id: str) -> tuple[list[dict[str, Any]], str | None]:
    from runctl_core.models import JobStatus
    from runctl_core.workflow import outputs_dir_for

    row = load_job(session, job_id)
    found: list[dict[str, Any]] = []
    local_dir = Path(row.outputs_dir) if row.outputs_dir else outputs_dir_for(session, row.id, None)
    if local_dir.is_dir():
        for path in sorted(local_dir.rglob("*")):
            if path.is_file():
                st = path.stat()
                found.append(
                    {
                        "name": path.relative_to(local_dir).as_posix(),
                        "size": st.st_size,
                        "modified_at": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(),
                        "location": str(path),
                        "where": "local",
                    }
                )
    if row.instance_id:
        inst = session.store.instance(row.instance_id, row.provider)
        if inst is not None:
            provider = session.provider(row.provider)
            status = row.status or JobStatus(job_id=row.id, state=row.state, exit_code=row.exit_code)
            remote = provider.list_checkpoints(inst.instance, status) or []
            known = {c["name"] for c in found}
            for ckpt in remote:
                if ckpt.name not in known:
                    found.append({**ckpt.model_dump(mode="json"), "where": row.provider})
    return found, str(local_dir) if local_dir.is_dir() else None


def newest_resumable(session: Session, since: Any) -> str | None:
    """The newest job of this command that was interrupted or lost with checkpoints collected, if any."""
    for job in reversed(session.store.jobs(since=since)):
        if job.state.value in ("interrupted", "lost") and job.outputs_dir:
            directory = Path(job.outputs_dir)
            if directory.is_dir() and any(directory.iterdir()):
                return job.id
    return None

"""Looking up what runctl knows: a job, the instance it ran on, a job's checkpoints; refreshing a job from
its provider (and finishing a detached run whose job has ended)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from runctl_core.models import Collected, Instance, JobStatus
    from runctl_core.plugins import Provider
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
    """Ask the provider for the job's state now; finish a job seen ended (see :func:`apply_report`)."""
    provider, instance, status = job_context(session, row)
    return apply_report(session, row, provider.status(instance, status))


def apply_report(session: Session, row: JobRow, report: Any) -> dict[str, Any]:
    """Record what the provider reported. A job seen ended has its checkpoints collected (into the ``--outputs``
    directory it was started with) once; then the instance is terminated unless it was created to be kept."""
    from runctl_core.cost import job_cost
    from runctl_core.run_models import job_document
    from runctl_core.steps import collect_outputs
    from runctl_core.teardown import terminate_instance

    provider = session.provider(row.provider)
    session.store.save_instance(report.instance)
    if report.job is not None:
        session.store.update_job(row.id, status=report.job)
        if report.job.state.terminal and not _collected(session, row.id) and report.instance.state.alive:
            dest = outputs_destination(session, row.id)
            with session.store.claim(row.provider, report.instance.id, row.id, "collecting its job's outputs"):
                collect_outputs(session, provider, report.instance, report.job, dest)
                session.store.event("collected", provider=row.provider, job_id=row.id)
                if not row.keep:
                    terminate_instance(session, provider, report.instance)
    inst = session.store.instance(report.instance.id, row.provider)
    cost = job_cost(inst, report.job)
    if cost is not None:
        session.store.update_job(row.id, cost=cost)
    doc = job_document(session.store, row.id)
    doc["instance"] = inst.instance.model_dump(mode="json") if inst else None
    doc["cost"] = cost
    return doc


def outputs_destination(session: Session, job_id: str) -> Path:
    """Where a job's checkpoints are collected: the --outputs directory a detached run was started with, else
    where they were collected, else runctl's state directory."""
    from runctl_core.steps import outputs_dir_for

    for event in reversed(session.store.events(job_id)):
        if event.get("kind") == "outputs" and event["data"].get("dest"):
            return Path(event["data"]["dest"])
    row = session.store.job(job_id)
    return Path(row.outputs_dir) if row and row.outputs_dir else outputs_dir_for(session, job_id, None)


def _collected(session: Session, job_id: str) -> bool:
    return any(event.get("kind") in ("collected", "collect") for event in session.store.events(job_id))


def refresh_active(
    session: Session, timeout: float = 20.0, *, only: str | None = None, instance_id: str | None = None
) -> list[str]:
    """Ask the providers about every active job at once (bounded in threads and time) and record the answers,
    so that a summary shows jobs that ended since runctl last looked. Returns notes on jobs it could not ask."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from runctl_core.errors import RunctlError

    rows = [
        row
        for row in session.store.jobs(active_only=True, instance_id=instance_id)
        if row.instance_id and (only is None or row.provider == only)
    ]
    if not rows:
        return []
    notes: list[str] = []
    asks = []
    for row in rows:
        try:
            provider, instance, status = job_context(session, row)
        except RunctlError as exc:
            notes.append(f"{row.id}: {exc.message}")
            continue
        asks.append((row, provider, instance, status))
    pool = ThreadPoolExecutor(max_workers=min(8, len(asks) or 1), thread_name_prefix="runctl-status")
    futures = {pool.submit(provider.status, instance, status): row for row, provider, instance, status in asks}
    done, pending = wait(futures, timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    for future in done:  # recorded here, in this thread: the state store is not shared across threads
        row = futures[future]
        try:
            apply_report(session, row, future.result())
        except RunctlError as exc:
            notes.append(f"{row.id}: {exc.message}")
    notes.extend(f"{futures[f].id}: its provider did not answer within {timeout:.0f}s" for f in pending)
    return notes


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
    from runctl_core.steps import outputs_dir_for

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


def stop_target(session: Session, job_id: str) -> tuple[JobRow, Any, Any, bool]:
    """(job, provider, instance, kept): what stopping ``job_id`` acts on; ``kept`` means its instance stays."""
    row = load_job(session, job_id)
    provider, instance, _status = job_context(session, row)
    inst_row = session.store.instance(instance.id, row.provider)
    return row, provider, instance, bool(inst_row and inst_row.keep and row.keep)


def stop_job(session: Session, job_id: str) -> dict[str, Any]:
    """Stop a job and terminate the instance it ran on unless that instance was created to be kept. Harmless when
    the job has already ended (only its instance may still need ending)."""
    from runctl_core.models import JobState
    from runctl_core.teardown import terminate_instance

    store = session.store
    row, provider, instance, kept = stop_target(session, job_id)
    _provider, _instance, status = job_context(session, row)
    ended = row.state.terminal
    stopped = None if ended else provider.cancel(instance, status)
    if stopped is not None:
        store.update_job(job_id, status=stopped)
    if instance.state.alive and not _collected(session, job_id):  # never lose work: collect, then terminate
        from runctl_core.salvage import salvage

        salvage(session, provider, instance, stopped or status, outputs_destination(session, job_id), stop=False)
    if not kept or (stopped is None and not ended):
        instance = terminate_instance(session, provider, instance)
    if not ended:
        store.update_job(job_id, state=JobState.CANCELLED, message="terminated on request")
    job_now = store.job(job_id)
    return {
        "job_id": job_id,
        "state": job_now.state.value if job_now else None,
        "already_ended": ended,
        "previous_state": row.state.value,
        "instance": instance.model_dump(mode="json"),
    }


def terminate_by_id(session: Session, ident: str) -> Any:
    """Terminate the instance ``ident`` (an Instance comes back), after collecting the jobs still running on it."""
    from runctl_core.salvage import salvage
    from runctl_core.teardown import terminate_instance

    provider, instance = resolve_instance(session, ident, or_job=True)
    if instance.state.alive:  # never lose work: the jobs still on it are stopped and collected first
        for row in session.store.jobs(active_only=True, instance_id=instance.id):
            if row.provider == provider.name:
                _p, _i, status = job_context(session, row)
                salvage(session, provider, instance, status, outputs_destination(session, row.id))
    return terminate_instance(session, provider, instance)


def instance_status(session: Session, instance_id: str) -> dict[str, Any]:
    """An instance as its provider reports it now, with what it has cost so far."""
    provider, instance = resolve_instance(session, instance_id, or_job=True)
    report = provider.status(instance, None)
    session.store.save_instance(report.instance)
    row = session.store.instance(instance.id, provider.name)
    return {**report.instance.model_dump(mode="json"), "cost": row.cost() if row else None}


def summary(session: Session, show_all: bool, *, only: str | None = None) -> dict[str, Any]:
    """Everything runctl is running (or, with ``show_all``, has run), from its records (``only``: one provider)."""
    store = session.store
    instances = [r for r in store.instances(alive_only=not show_all) if only is None or r.instance.provider == only]
    jobs = [j for j in store.jobs(active_only=not show_all) if only is None or j.provider == only]
    alive = [r for r in instances if r.ended_at is None]
    rate = sum(r.instance.hourly_price or 0.0 for r in alive)
    active = [j for j in jobs if not j.state.terminal]
    return {
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


def _collect_after_the_end(
    session: Session, provider: Provider, instance: Instance, status: JobStatus, target: Path, *, record: bool
) -> Collected | None:
    """The instance is gone: collect only when the provider still lists the job's checkpoints in its own storage
    (``list_checkpoints`` answers without the instance; ``collect`` then reads from there). A provider that
    cannot answer without its instance leaves the pull to what runctl collected."""
    from runctl_core.errors import RunctlError
    from runctl_core.steps import collect_outputs

    try:
        if not provider.list_checkpoints(instance, status):
            return None
        target.mkdir(parents=True, exist_ok=True)
        return collect_outputs(session, provider, instance, status, target, record=record)
    except RunctlError as exc:
        session.progress.warn(f"{provider.name} could not return the checkpoints of {status.job_id}: {exc.message}")
        return None


class CheckpointEntry(BaseModel):
    """One checkpoint file of a job: collected (``where == "local"``) or still with the provider."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    name: str
    size: int
    modified_at: str | None = None
    location: str
    where: str


def pull_checkpoints(session: Session, job_id: str, dest: Path | None) -> list[Path]:
    """Fetch a job's checkpoints into ``dest`` (default: runctl's directory for the job) from wherever they are:
    from its instance while that is alive; once it is gone, from the provider's own storage when its
    ``list_checkpoints`` still lists files there (e.g. S3), else from where runctl collected them."""
    import shutil

    from runctl_core.errors import UsageError
    from runctl_core.models import JobStatus
    from runctl_core.steps import collect_outputs

    row = load_job(session, job_id)
    collected_dir = outputs_destination(session, job_id)
    target = (dest or collected_dir).expanduser().resolve()
    inst = session.store.instance(row.instance_id, row.provider) if row.instance_id else None
    source = Path(row.outputs_dir) if row.outputs_dir else collected_dir
    if inst is not None:
        provider = session.provider(row.provider)
        status = row.status or JobStatus(job_id=row.id, state=row.state, exit_code=row.exit_code)
        # a pull elsewhere copies, never re-points the job; a pull while it runs is not its final collection
        own = target == collected_dir.expanduser().resolve() and status.state.terminal
        got = None
        if inst.instance.state.alive:
            got = collect_outputs(session, provider, inst.instance, status, target, record=own)
        elif not (source.is_dir() and any(source.rglob("*"))):  # nothing collected here: the provider's storage
            got = _collect_after_the_end(session, provider, inst.instance, status, target, record=own)
        if got is not None and got.files:
            return [Path(f) for f in got.files]
    if not source.is_dir() or not any(source.rglob("*")):
        raise UsageError(
            f"job {job_id} has no checkpoints to pull (its instance is gone and none were collected)",
            f"see what it has: runctl checkpoint list {job_id}",
        )
    files = [p for p in sorted(source.rglob("*")) if p.is_file()]
    if source.resolve() == target:
        return files
    copied = []
    for path in files:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
        copied.append(out)
    return copied

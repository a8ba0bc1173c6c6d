"""What a job leaves: its status (asked until terminal, then remembered), its output (the execution's event
stream, cached; ``GET /logs/execution/{id}`` as fallback) and its checkpoints (the storage bucket)."""

from __future__ import annotations

from pathlib import Path

from runctl_core.errors import NotFoundError, PrerequisiteError
from runctl_core.models import (
    Checkpoint,
    Collected,
    Instance,
    InstanceState,
    JobState,
    JobStatus,
    LogChunk,
    StatusReport,
)
from runctl_lyceum import logcache
from runctl_lyceum.compute import Context, end_execution, to_instance
from runctl_lyceum.jobs import query


def status(c: Context, instance: Instance, job: JobStatus | None) -> StatusReport:
    rec = c.store.load(instance.id)
    if rec is None:
        gone = instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "no such reservation"})
        lost = None
        if job is not None:
            lost = (
                job
                if job.state.terminal
                else job.model_copy(
                    update={"state": JobState.LOST, "message": "no record of this job's execution on this machine"}
                )
            )
        return StatusReport(instance=gone, job=lost)
    result = None
    if job is not None:
        ref = rec.executions.get(job.job_id)
        if ref is None:
            result = (
                job
                if job.state.terminal
                else job.model_copy(update={"state": JobState.LOST, "message": f"no such job on {rec.id}"})
            )
        elif ref.final is not None:
            result = JobStatus.model_validate(ref.final)
        else:
            result = query(c, ref)
            if result.state.terminal:  # terminal is final: remember it, never ask again
                ref.final = result.model_dump(mode="json")
                c.store.save(rec)
    return StatusReport(instance=to_instance(rec), job=result)


def cancel(c: Context, instance: Instance, job: JobStatus) -> JobStatus:
    rec = c.store.load(instance.id)
    ref = rec.executions.get(job.job_id) if rec else None
    if rec is None or ref is None:
        return job
    if ref.final is not None:
        return JobStatus.model_validate(ref.final)
    try:
        end_execution(c, ref.execution_id)
    except NotFoundError:
        pass
    ref.cancel_requested = True
    c.store.save(rec)
    return status(c, instance, job).job or job


def logs(c: Context, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
    rec = c.store.load(instance.id)
    ref = rec.executions.get(job.job_id) if rec else None
    if ref is None:
        return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
    eid = ref.execution_id
    cache = logcache.LogCache(c.store.execution_dir(eid))
    if not cache.complete and c.credentials.api_key is not None:
        url = c.client.stream_url(eid, c.store.stream_url(eid))
        if job.state.terminal or ref.final is not None:
            _finish_log(c, cache, eid, url)
        else:
            client = c.client
            logcache.ensure_follower(eid, cache, lambda: client.stream_events(url, 600.0), c.settings.stream_reconnects)
    text, next_offset, at_end = cache.read(offset)
    return LogChunk(data=text, offset=offset, next_offset=next_offset, complete=cache.complete and at_end)


def _finish_log(c: Context, cache: logcache.LogCache, eid: str, url: str) -> None:
    """The execution has ended: read what is left of its output now (stream, then the logs endpoint)."""
    logcache.join_follower(eid, c.settings.stream_timeout)
    if cache.complete:
        return
    with cache.following() as mine:
        if not mine or cache.complete:
            return
        timeout = c.settings.stream_timeout
        if logcache.pump(cache, lambda: c.client.stream_events(url, timeout), reconnects=1, delay=0.2):
            return
        try:
            entries = c.client.execution_logs(eid)
        except NotFoundError:
            entries = []
        logcache.fill_from_entries(cache, entries)


def _prefix(c: Context, instance: Instance, job: JobStatus) -> str:
    rec = c.store.load(instance.id)
    ref = rec.executions.get(job.job_id) if rec else None
    return (ref.storage_path if ref else c.storage_path(job.job_id)).rstrip("/") + "/"


def list_checkpoints(c: Context, instance: Instance, job: JobStatus) -> list[Checkpoint]:
    c.require_key()
    prefix = _prefix(c, instance, job)
    storage = c.storage()
    return [
        Checkpoint(
            name=obj["Key"][len(prefix) :],
            size=int(obj.get("Size", 0)),
            modified_at=obj.get("LastModified"),
            location=f"s3://{storage.bucket}/{obj['Key']}",
        )
        for obj in storage.list(prefix)
        if not obj["Key"].endswith("/")
    ]


def collect(c: Context, instance: Instance, job: JobStatus, dest: Path) -> Collected:
    c.require_key()
    prefix = _prefix(c, instance, job)
    try:
        storage = c.storage()
    except PrerequisiteError as exc:
        c.ctx.warn(f"{exc.message}; the checkpoints stay in Lyceum storage under {prefix} ({exc.hint})")
        return Collected(directory=dest, files=[])
    written: list[Path] = []
    root = dest.resolve()
    for obj in storage.list(prefix):
        rel = obj["Key"][len(prefix) :]
        target = (dest / rel).resolve()
        if not rel or rel.endswith("/") or not str(target).startswith(str(root) + "/"):
            continue
        storage.download(obj["Key"], target)
        written.append(dest / rel)
    return Collected(directory=dest, files=written)

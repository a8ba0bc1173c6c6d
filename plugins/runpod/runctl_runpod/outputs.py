"""What a job leaves: its log and checkpoints, read on the pod over SSH while it exists, and from runctl's
local copy (``ctx.state_dir/jobs/<job>/``) once it is gone. :func:`save_before_terminate` makes that copy
whenever runctl ends a pod (run, terminate, ``resources cleanup``), so nothing is lost to a cleanup."""

from __future__ import annotations

import posixpath
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from runctl_core.errors import NotFoundError, ProviderError, RunctlError, TransientError
from runctl_core.models import Checkpoint, Collected, Instance, InstanceState, JobStatus, LogChunk, ProviderContext
from runctl_core.remote.records import decode_log_chunk
from runctl_runpod.compute import client, pod_state
from runctl_runpod.jobs import LOG_CHUNK, host, local_dir, reach
from runctl_runpod.transport import cached

T = TypeVar("T")


def _local_log(ctx: ProviderContext, job_id: str, offset: int) -> LogChunk | None:
    path = local_dir(ctx, job_id) / "log"
    if not path.is_file():
        return None
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(min(LOG_CHUNK, max(0, size - offset)))
    text, used = decode_log_chunk(data, final=offset + len(data) >= size)
    return LogChunk(data=text, offset=offset, next_offset=offset + used, complete=offset + used >= size)


def logs(ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
    try:
        return reach(ctx, instance, lambda access: host(access).logs(job.job_id, offset))
    except (TransientError, NotFoundError, ProviderError) as exc:
        saved = _local_log(ctx, job.job_id, offset)
        if saved is not None:
            return saved
        api = client(ctx)
        pod = api.get_pod(instance.id)
        state = pod_state(pod)[0]
        if state not in (InstanceState.RUNNING, InstanceState.PENDING):
            ctx.warn(
                f"the log of {job.job_id} is gone with pod {instance.id} ({pod_state(pod)[1]}): runctl keeps a copy "
                "when it ends a pod itself or collects; this one ended without runctl (preempted, or it ended "
                "itself after a detached job nobody looked at within detached_grace)"
            )
            return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
        if state is InstanceState.RUNNING and not isinstance(exc, TransientError):
            raise
        tail = api.pod_logs(instance.id, 20) if pod is not None else []
        if tail:  # not reachable over SSH yet: show what the pod itself says (REST v2 log stream)
            ctx.warn(
                f"pod {instance.id} is not reachable over SSH ({getattr(exc, 'message', exc)}); "
                "its own log says:\n" + "\n".join(tail)
            )
        return LogChunk(data="", offset=offset, next_offset=offset, complete=False)


def cancel(ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
    try:
        return reach(ctx, instance, lambda access: host(access).stop(job.job_id, access.s.grace_period))
    except NotFoundError:
        return job


def list_checkpoints(ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
    try:
        found = reach(ctx, instance, lambda access: host(access).checkpoints(job.job_id))
    except NotFoundError:  # the pod is gone: what runctl saved before ending it
        saved = local_dir(ctx, job.job_id) / "checkpoints"
        return [
            Checkpoint(
                name=p.relative_to(saved).as_posix(),
                size=p.stat().st_size,
                modified_at=datetime.fromtimestamp(p.stat().st_mtime, timezone.utc),
                location=str(p),
            )
            for p in sorted(saved.rglob("*"))
            if p.is_file()
        ]
    return [c.model_copy(update={"location": f"pod:{instance.id}:{c.location}"}) for c in found]


def collect(ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
    saved = local_dir(ctx, job.job_id) / "checkpoints"
    try:
        return reach(ctx, instance, lambda access: host(access).collect(job.job_id, dest))
    except NotFoundError as exc:
        if saved.is_dir():  # saved before the pod was ended
            files = [p for p in sorted(saved.rglob("*")) if p.is_file()]
            for p in files:
                (dest / p.relative_to(saved)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dest / p.relative_to(saved))
            return Collected(directory=dest, files=[dest / p.relative_to(saved) for p in files])
        ctx.warn(f"checkpoints of {job.job_id} could not be collected: {exc.message}")
        return Collected(directory=dest, files=[])


def save_before_terminate(ctx: ProviderContext, instance: Instance) -> list[str]:
    """Copy every job's record, log and checkpoints from the pod into runctl's state before it is ended. Best
    effort and bounded: a pod that does not answer is ended anyway (its instance must not keep billing)."""
    saved: list[str] = []
    try:
        access = cached(ctx, instance)
        if access is None:
            return saved
        jobs_dir = posixpath.join(access.base(), "jobs")
        for f in access.ssh.walk(jobs_dir):
            job_id, _, rest = f.path.partition("/")
            if rest == "log" or rest == "job.json" or rest.startswith("checkpoints/"):
                local = local_dir(ctx, job_id) / rest
                local.parent.mkdir(parents=True, exist_ok=True)
                access.ssh.get(posixpath.join(jobs_dir, f.path), local)
                if job_id not in saved:
                    saved.append(job_id)
    except (RunctlError, OSError) as exc:
        ctx.warn(f"could not save the jobs of pod {instance.id} before ending it: {getattr(exc, 'message', exc)}")
    return saved

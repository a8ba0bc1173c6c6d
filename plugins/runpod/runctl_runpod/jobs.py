"""Jobs on a pod: readiness, the pod ending itself (after a detached job, or at ``max_runtime``), and sync /
train / status run through the core's remote-job layer (:class:`runctl_core.remote.jobs.JobHost`) over
:class:`runctl_core.remote.ssh.SshTransport`: the same supervisor launch (pending record first), environment
step (uv, PEP 723 / requirements.txt / pyproject.toml, cached per pod), incremental sync and job records as
every other provider with a shell.

What runctl brings back is kept under ``ctx.state_dir/jobs/<job>/`` (the log and the checkpoints), saved
before any termination runctl does, so ``logs``/``checkpoint list`` still answer once the pod is gone.
"""

from __future__ import annotations

import base64
import json
import posixpath
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runctl_core.errors import AuthError, ProviderError, TransientError
from runctl_core.models import (
    Instance,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    Project,
    ProviderContext,
    StatusReport,
    SyncResult,
)
from runctl_core.remote.hostcache import HostCache
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.records import job_status_from_record
from runctl_core.timestamps import parse_time
from runctl_runpod.compute import PodRecord, client, instance_from_pod, now
from runctl_runpod.transport import PodAccess, cached, connect

LOG_CHUNK = 1 << 20
MANIFEST = "manifest.json"  # where the core's remote-job layer keeps the sync manifest
END_POD = Path(__file__).with_name("scripts") / "end_pod.py"
T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "lost")


def local_dir(ctx: ProviderContext, job_id: str) -> Path:
    return ctx.state_dir / "jobs" / job_id


def host_cache(ctx: ProviderContext, pod_id: str) -> HostCache:
    """What runctl last installed and synced on the pod (see :mod:`runctl_core.remote.hostcache`)."""
    return HostCache.for_instance(ctx.state_dir, pod_id)


def host(access: PodAccess) -> JobHost:
    """runctl's jobs on this pod, under runctl's directory on it: every operation one SSH command, files sent
    with it; end_pod.py (a detached run's pod ending itself) rides with runctl's tools into ``bin/``."""
    return JobHost(
        access.ssh,
        access.base(),
        python=access.s.python,
        cache=host_cache(access.ctx, access.record.pod_id),
        extra_tools={END_POD.name: END_POD.read_bytes()},
    )


def job_status(access: PodAccess, job_id: str) -> JobStatus:
    try:
        return host(access).status(job_id)
    except ProviderError as exc:
        pod = client(access.ctx).get_pod(access.record.pod_id)
        if pod is None or pod.status != "RUNNING":  # stopped or preempted under the command: status will tell
            raise TransientError(f"the pod stopped while runctl asked about {job_id} ({exc.message})") from None
        if not host(access).transport.walk(posixpath.join(access.base(), "jobs", job_id)):
            return JobStatus(job_id=job_id, state=JobState.LOST, message="the job never ran on this pod")
        raise


# ------------------------------------------------------------------------------------------- ending itself


def end_pod_command(access: PodAccess, pod_id: str, after: float = 0.0, path: str | None = None) -> str:
    """The command that ends this pod from a non-interactive shell on it: the pod id is explicit, and the
    pod-scoped key is found in the container environment files (SSH sessions do not inherit it)."""
    api = client(access.ctx)
    args = [
        access.s.python,
        path or posixpath.join(access.base(), "end_pod.py"),
        "--pod",
        pod_id,
        "--api",
        api.kind,
        "--url",
        api.base_url,
        "--after",
        str(int(after)),
    ]
    for path in access.s.container_env_files:
        args += ["--env-file", path]
    return " ".join(shlex.quote(a) for a in args)


def first_contact(access: PodAccess, pod_id: str) -> None:
    """The first useful command on a new pod, in one round trip: make runctl's directory (and learn its absolute
    path) and, for ``max_runtime``, install end_pod.py and start the timer that ends the pod when the time runs
    out, counted from its creation. (runctl's job tools ride with the first sync.)"""
    record = access.record
    ends_at = parse_time(record.ends_at)
    timer = ends_at is not None and not record.watchdog
    if record.base and not timer:
        return
    remote = shlex.quote(access.s.remote_dir)
    script = f"mkdir -p {remote} && cd {remote} && pwd"
    if timer and ends_at is not None:
        left = max(0.0, (ends_at - now()).total_seconds())
        encoded = base64.b64encode(END_POD.read_bytes()).decode()
        script += (
            f" && echo {encoded} | base64 -d > end_pod.py.tmp && mv end_pod.py.tmp end_pod.py"
            f" && (nohup setsid {end_pod_command(access, pod_id, left, path='end_pod.py')}"
            " > watchdog.log 2>&1 < /dev/null &)"
        )
    result = access.ssh.run(["sh", "-c", script], timeout=60)
    base = result.text.strip().splitlines()[0] if result.text.strip() else ""
    if result.exit_code != 0 or not base.startswith("/"):
        raise ProviderError(
            f"could not prepare {access.s.remote_dir} on pod {pod_id}: {result.error_text[-300:]}",
            "check the remote_dir setting of [providers.runpod]",
        )
    record.base = base
    record.watchdog = record.watchdog or timer
    record.save(access.ctx.state_dir)


# ------------------------------------------------------------------------------------------- readiness, status


def ready(ctx: ProviderContext, instance: Instance) -> Instance:
    pod = client(ctx).get_pod(instance.id)
    if pod is None:
        return instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "the pod no longer exists"})
    current = instance_from_pod(pod, PodRecord.load(ctx.state_dir, instance.id), instance)
    if current.state is not InstanceState.RUNNING:
        return current
    if pod.ssh_endpoint() is None:
        return current.model_copy(update={"state": InstanceState.PENDING, "message": "waiting for the pod's SSH port"})
    try:
        access = connect(ctx, instance, pod)
        first_contact(access, instance.id)  # the first useful command: SSH answers, the shell works
    except TransientError as exc:
        return current.model_copy(update={"state": InstanceState.PENDING, "message": f"waiting for SSH: {exc.message}"})
    return current


def status(ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
    pod = client(ctx).get_pod(instance.id)
    record = PodRecord.load(ctx.state_dir, instance.id)
    if pod is None:
        current = instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "the pod no longer exists"})
    else:
        current = instance_from_pod(pod, record, instance)
    if job is None:
        return StatusReport(instance=current)
    spot = record.spot if record else instance.spot
    if current.state is InstanceState.RUNNING and pod is not None and pod.ssh_endpoint():
        try:
            access = connect(ctx, instance, pod)
            first_contact(access, instance.id)
            return StatusReport(instance=current, job=job_status(access, job.job_id))
        except TransientError as exc:
            return StatusReport(instance=current, job=job.model_copy(update={"message": exc.message}))
    if job.state.terminal:
        return StatusReport(instance=current, job=job)
    saved = local_dir(ctx, job.job_id) / "job.json"
    final = job_status_from_record(job.job_id, json.loads(saved.read_text())) if saved.is_file() else None
    if final is not None and final.state.terminal:  # runctl saved the job's final record before the pod went
        return StatusReport(instance=current, job=final)
    if spot and current.state is InstanceState.STOPPED:
        update = {"state": JobState.INTERRUPTED, "message": "the spot pod was stopped by the market (preempted)"}
    elif current.state in (InstanceState.TERMINATED, InstanceState.STOPPED):
        update = {"state": JobState.LOST, "message": f"the pod is {current.state.value}: {current.message}"}
    else:
        return StatusReport(instance=current, job=job)
    return StatusReport(instance=current, job=job.model_copy(update={**update, "ended_at": now()}))


# ------------------------------------------------------------------------------------------- code and jobs


def live(ctx: ProviderContext, instance: Instance) -> PodAccess:
    return connect(ctx, instance, client(ctx).get_pod(instance.id))


def reach(ctx: ProviderContext, instance: Instance, work: Callable[[PodAccess], T]) -> T:
    """Run ``work`` on the pod at its last known SSH address (no API round trip); only if that does not answer,
    or answers as another pod (addresses are reused: it refuses the pod's key or shows another host key, which
    happens before any command runs), ask the API where the pod is (or whether it is gone) and try once more."""
    known = cached(ctx, instance)
    if known is not None:
        try:
            return work(known)
        except (TransientError, AuthError):
            known.ssh.close()
    return work(live(ctx, instance))


def sync(ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
    return reach(ctx, instance, lambda access: host(access).sync(project))


def train(ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
    def work(access: PodAccess) -> JobStatus:
        extra: list[str] = []
        if job.terminate_on_exit:  # a detached run: the pod ends itself, after a window for runctl to collect
            end_pod = posixpath.join(access.base(), "bin", END_POD.name)  # installed with the tools
            extra = [
                "--shutdown-after",
                "--shutdown-cmd",
                end_pod_command(access, instance.id, access.s.detached_grace, path=end_pod),
            ]
        return host(access).launch(job, grace=access.s.grace_period, use_uv=access.s.use_uv, extra=extra)

    return reach(ctx, instance, work)

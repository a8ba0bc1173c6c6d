"""Jobs on a pod over SSH: readiness, sync, the job runner, status, logs, stopping, checkpoints, and the pod
ending itself (after a detached job, or at ``max_runtime``).

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
from typing import Any, TypeVar

from runctl_core.errors import ProviderError, UsageError
from runctl_core.models import (
    Instance,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    ProviderContext,
    StatusReport,
    SyncResult,
)
from runctl_runpod.compute import PodRecord, client, instance_from_pod, now, parse_time
from runctl_runpod.transport import PodAccess, SshUnavailable, cached, connect

LOG_CHUNK = 1 << 20
MANIFEST = ".runctl-manifest.json"
END_POD = Path(__file__).with_name("scripts") / "end_pod.py"
T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "lost")


def local_dir(ctx: ProviderContext, job_id: str) -> Path:
    return ctx.state_dir / "jobs" / job_id


def job_status(job_id: str, record: dict[str, Any], previous: JobStatus | None = None) -> JobStatus:
    state = record.get("state", "lost")  # no record: the job never ran there (train writes it before returning)
    return JobStatus(
        job_id=job_id,
        state=JobState(state) if state in JobState._value2member_map_ else JobState.LOST,
        exit_code=record.get("exit_code"),
        started_at=parse_time(record.get("started_at")),
        ended_at=parse_time(record.get("ended_at")),
        message=str(record.get("message", "")),
    )


def job_record(access: PodAccess, job_id: str) -> dict[str, Any]:
    job_dir = posixpath.join(access.base(), "jobs", job_id)
    missing = json.dumps({"state": "lost", "message": f"no job record in {job_dir}: the job never ran on this pod"})
    result = access.ssh.run(  # a job the pod never ran has no directory (and maybe no runner): lost, not an error
        f"test -d {shlex.quote(job_dir)} || {{ echo {shlex.quote(missing)}; exit 0; }}; "
        + access.runner("status", "--job-dir", job_dir),
        timeout=60,
    )
    if result.exit_status != 0:  # e.g. the container was stopped under the command: worth another look
        raise SshUnavailable(
            f"the job runner on the pod failed (exit {result.exit_status}): {result.stderr.strip()[-300:]}"
        )
    try:
        record: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProviderError(f"the job runner on the pod printed no status: {result.stdout[-200:]!r}") from None
    return record


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


def end_pod_file(access: PodAccess) -> tuple[str, bytes, int]:
    """end_pod.py as a file to write next to the runner (see :meth:`PodSsh.batch`)."""
    return posixpath.join(access.base(), "end_pod.py"), END_POD.read_bytes(), 0o755


def first_contact(access: PodAccess, pod_id: str) -> None:
    """The first useful command on a new pod, in one round trip: make runctl's directory (and learn its absolute
    path) and, for ``max_runtime``, install end_pod.py and start the timer that ends the pod when the time runs
    out, counted from its creation."""
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
    result = access.ssh.run(script, timeout=60)
    base = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    if result.exit_status != 0 or not base.startswith("/"):
        raise ProviderError(
            f"could not prepare {access.s.remote_dir} on pod {pod_id}: {result.stderr.strip()[-300:]}",
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
    except SshUnavailable as exc:
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
            return StatusReport(instance=current, job=job_status(job.job_id, job_record(access, job.job_id), job))
        except SshUnavailable as exc:
            return StatusReport(instance=current, job=job.model_copy(update={"message": exc.message}))
    if job.state.terminal:
        return StatusReport(instance=current, job=job)
    saved = local_dir(ctx, job.job_id) / "job.json"
    final = job_status(job.job_id, json.loads(saved.read_text()), job) if saved.is_file() else None
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
    ask the API where the pod is (or whether it is gone) and try once more."""
    known = cached(ctx, instance)
    if known is not None:
        try:
            return work(known)
        except SshUnavailable:
            known.ssh.close()
    return work(live(ctx, instance))


def sync(ctx: ProviderContext, instance: Instance, project: Any) -> SyncResult:
    from runctl_core.files import changed_files

    def work(access: PodAccess) -> SyncResult:
        ssh, base = access.ssh, access.base()
        target = posixpath.join(base, "project")
        manifest_path = posixpath.join(base, MANIFEST)
        try:
            previous = json.loads(ssh.read(manifest_path, 0, 64 << 20) or b"{}")
        except ValueError:
            previous = {}
        previous = previous if isinstance(previous, dict) else {}
        send, delete = changed_files(project, previous)
        ctx.report(f"sync: {len(send)} of {len(project.files)} files to send, {len(delete)} to delete")
        manifest = project.manifest()
        if send or delete or manifest != previous:  # one SFTP session for everything
            ssh.batch(
                directories=[target],
                puts=[(project.root / f.path, posixpath.join(target, f.path), f.mode) for f in send],
                removes=[posixpath.join(target, rel) for rel in delete],
                writes=[(manifest_path, json.dumps(manifest).encode(), 0o644)],
            )
        return SyncResult(
            remote_path=target,
            files_total=len(project.files),
            files_sent=len(send),
            bytes_sent=sum(f.size for f in send),
            files_deleted=len(delete),
        )

    return reach(ctx, instance, work)


def train(ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
    return reach(ctx, instance, lambda access: _train(access, instance, job))


def _train(access: PodAccess, instance: Instance, job: JobSpec) -> JobStatus:
    """Write the runner, the job's env and its launcher in one SFTP session, then check and launch in one SSH
    command: two round trips from "train" to "job started"."""
    from runctl_core.remote import runner_source

    s, ssh, base = access.s, access.ssh, access.base()
    project = posixpath.join(base, "project")
    job_dir = posixpath.join(base, "jobs", job.job_id)
    env_file = posixpath.join(job_dir, "env.json")
    writes = [
        (posixpath.join(base, "runner.py"), runner_source().encode(), 0o755),
        (env_file, json.dumps(job.env).encode(), 0o600),
    ]
    puts: list[tuple[Path, str, int]] = []
    args = [
        "supervise",
        "--job-dir",
        job_dir,
        "--workdir",
        project,
        "--checkpoint-dir",
        posixpath.join(job_dir, "checkpoints"),
        "--job-id",
        job.job_id,
        "--env-file",
        env_file,
        "--grace",
        str(s.grace_period),
    ]
    if not s.use_uv:
        args.append("--no-uv")
    if job.timeout:
        args += ["--timeout", str(job.timeout)]
    if job.resume_dir and Path(job.resume_dir).is_dir():
        resume = posixpath.join(job_dir, "resume")
        files = [p for p in sorted(Path(job.resume_dir).rglob("*")) if p.is_file()]
        puts += [(p, posixpath.join(resume, p.relative_to(job.resume_dir).as_posix()), 0o644) for p in files]
        args += ["--resume-dir", resume]
    if job.terminate_on_exit:  # a detached run: the pod ends itself, after a window for runctl to collect
        writes.append(end_pod_file(access))
        args += ["--shutdown-after", "--shutdown-cmd", end_pod_command(access, instance.id, s.detached_grace)]
    args += ["--", job.script, *job.args]
    launcher = posixpath.join(job_dir, "launch.sh")
    launch = "\n".join(
        [
            "#!/bin/sh",
            "# written by runctl: become the job's supervisor in its own session (the launch command wrote the",
            "# pending record with this process's pid before returning)",
            f"cd {shlex.quote(project)} || exit 1",
            f"exec setsid {access.runner(*args)}",
            "",
        ]
    )
    writes.append((launcher, launch.encode(), 0o700))
    ssh.batch(writes=writes, puts=puts)
    script, done = shlex.quote(posixpath.join(project, job.script)), shlex.quote(posixpath.join(job_dir, "job.json"))
    out = shlex.quote(posixpath.join(job_dir, "runner.out"))
    pending_path = shlex.quote(posixpath.join(job_dir, "job.json.pending"))
    record = '{"state": "pending", "supervisor_pid": %d, "submitted_at": "%s"}'
    # the pending record exists before this command returns, so status right after train is never "no record";
    # ln never overwrites a record the supervisor may already have written
    started = ssh.run(
        f"test -f {script} || exit 3; test -e {done} && exit 4; "
        f"nohup sh {shlex.quote(launcher)} > {out} 2>&1 < /dev/null & "
        f'printf {shlex.quote(record)} "$!" {shlex.quote(now().isoformat())} > {pending_path} && '
        f"ln {pending_path} {done} 2>/dev/null; rm -f {pending_path}; exit 0",
        timeout=60,
    )
    if started.exit_status == 3:
        raise UsageError(
            f"{job.script} is not in the synced project on pod {instance.id}",
            f"sync first (runctl sync {instance.id}) or check the script path",
        )
    if started.exit_status == 4:
        raise UsageError(f"job {job.job_id} already ran on pod {instance.id}", "use a new job id")
    if started.exit_status != 0:
        raise ProviderError(f"could not start the job on pod {instance.id}: {started.stderr.strip()[-300:]}")
    pending = JobStatus(job_id=job.job_id, state=JobState.PENDING, message="starting")
    try:
        return job_status(job.job_id, job_record(access, job.job_id), pending)
    except SshUnavailable:  # started; the pod stopped answering right after (e.g. preempted): status will tell
        return pending

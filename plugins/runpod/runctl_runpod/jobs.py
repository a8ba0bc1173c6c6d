"""Jobs on a pod over SSH: readiness, sync, the job runner, status, logs, stopping, checkpoints, and the pod
ending itself (after a detached job, or at ``max_runtime``).

What runctl brings back is kept under ``ctx.state_dir/jobs/<job>/`` (the log and the checkpoints), saved
before any termination runctl does, so ``logs``/``checkpoint list`` still answer once the pod is gone.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from pathlib import Path
from typing import Any

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
from runctl_runpod.transport import PodAccess, SshUnavailable, connect

LOG_CHUNK = 1 << 20
MANIFEST = ".runctl-manifest.json"
END_POD = Path(__file__).with_name("scripts") / "end_pod.py"
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "lost")


def local_dir(ctx: ProviderContext, job_id: str) -> Path:
    return ctx.state_dir / "jobs" / job_id


def job_status(job_id: str, record: dict[str, Any], previous: JobStatus | None = None) -> JobStatus:
    state = record.get("state", "lost")
    if state == "lost" and str(record.get("message", "")).startswith("no job record") and previous is not None:
        return previous  # the launcher has not written the record yet: still pending
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
    result = access.ssh.run(access.runner("status", "--job-dir", job_dir), timeout=60)
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


def end_pod_command(access: PodAccess, pod_id: str, after: float = 0.0) -> str:
    """The command that ends this pod from a non-interactive shell on it: the pod id is explicit, and the
    pod-scoped key is found in the container environment files (SSH sessions do not inherit it)."""
    api = client(access.ctx)
    args = [
        access.s.python,
        posixpath.join(access.base(), "end_pod.py"),
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


def install_end_pod(access: PodAccess) -> None:
    access.ssh.write_bytes(posixpath.join(access.base(), "end_pod.py"), END_POD.read_bytes(), 0o755)


def start_watchdog(access: PodAccess, pod_id: str) -> None:
    """max_runtime: a detached timer on the pod that ends it when the time runs out, counted from creation."""
    record = access.record
    ends_at = parse_time(record.ends_at)
    if record.watchdog or ends_at is None:
        return
    install_end_pod(access)
    left = max(0.0, (ends_at - now()).total_seconds())
    log = posixpath.join(access.base(), "watchdog.log")
    command = end_pod_command(access, pod_id, after=left)
    started = access.ssh.run(f"nohup setsid {command} > {shlex.quote(log)} 2>&1 < /dev/null &", timeout=60)
    if started.exit_status != 0:
        raise ProviderError(f"could not start the max_runtime timer on pod {pod_id}: {started.stderr.strip()[-300:]}")
    record.watchdog = True
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
        start_watchdog(access, instance.id)  # also the first useful command: SSH answers and the shell works
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
            start_watchdog(access, instance.id)
            return StatusReport(instance=current, job=job_status(job.job_id, job_record(access, job.job_id), job))
        except SshUnavailable as exc:
            return StatusReport(instance=current, job=job.model_copy(update={"message": exc.message}))
    if job.state.terminal:
        return StatusReport(instance=current, job=job)
    saved = local_dir(ctx, job.job_id) / "job.json"
    if saved.is_file():  # runctl saved the job's final record before the pod went
        return StatusReport(instance=current, job=job_status(job.job_id, json.loads(saved.read_text()), job))
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


def sync(ctx: ProviderContext, instance: Instance, project: Any) -> SyncResult:
    from runctl_core.files import changed_files

    access = live(ctx, instance)
    ssh, base = access.ssh, access.base()
    target = posixpath.join(base, "project")
    manifest_path = posixpath.join(base, MANIFEST)
    try:
        previous = json.loads(ssh.read(manifest_path, 0, 64 << 20) or b"{}")
    except ValueError:
        previous = {}
    send, delete = changed_files(project, previous if isinstance(previous, dict) else {})
    ctx.report(f"sync: {len(send)} of {len(project.files)} files to send, {len(delete)} to delete")
    ssh.run(f"mkdir -p {shlex.quote(target)}", timeout=60, check=True)
    ssh.put_files([(project.root / f.path, posixpath.join(target, f.path), f.mode) for f in send])
    ssh.remove([posixpath.join(target, rel) for rel in delete])
    ssh.write_bytes(manifest_path, json.dumps(project.manifest()).encode())
    return SyncResult(
        remote_path=target,
        files_total=len(project.files),
        files_sent=len(send),
        bytes_sent=sum(f.size for f in send),
        files_deleted=len(delete),
    )


def train(ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
    from runctl_core.remote import runner_source

    access = live(ctx, instance)
    s, ssh, base = access.s, access.ssh, access.base()
    project = posixpath.join(base, "project")
    if not ssh.exists(posixpath.join(project, job.script)):
        raise UsageError(
            f"{job.script} is not in the synced project on pod {instance.id}",
            f"sync first (runctl sync {instance.id}) or check the script path",
        )
    job_dir = posixpath.join(base, "jobs", job.job_id)
    if ssh.exists(posixpath.join(job_dir, "job.json")):
        raise UsageError(f"job {job.job_id} already ran on pod {instance.id}", "use a new job id")
    ssh.write_bytes(posixpath.join(base, "runner.py"), runner_source().encode(), 0o755)
    env_file = posixpath.join(job_dir, "env.json")
    ssh.write_bytes(env_file, json.dumps(job.env).encode(), 0o600)
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
        ssh.put_files([(p, posixpath.join(resume, p.relative_to(job.resume_dir).as_posix()), 0o644) for p in files])
        args += ["--resume-dir", resume]
    if job.terminate_on_exit:  # a detached run: the pod ends itself, after a window for runctl to collect
        install_end_pod(access)
        args += ["--shutdown-after", "--shutdown-cmd", end_pod_command(access, instance.id, s.detached_grace)]
    args += ["--", job.script, *job.args]
    launch = "\n".join(
        [
            "#!/bin/sh",
            "# written by runctl: record the job as pending, then become its supervisor (own session)",
            f"cd {shlex.quote(project)} || exit 1",
            f"J={shlex.quote(job_dir)}",
            'printf \'{"state": "pending", "supervisor_pid": %d, "submitted_at": "%s"}\' "$$" '
            f'{shlex.quote(now().isoformat())} > "$J/job.json.pending"',
            'ln "$J/job.json.pending" "$J/job.json" 2>/dev/null',
            'rm -f "$J/job.json.pending"',
            f"exec setsid {access.runner(*args)}",
            "",
        ]
    )
    launcher = posixpath.join(job_dir, "launch.sh")
    ssh.write_bytes(launcher, launch.encode(), 0o700)
    out = posixpath.join(job_dir, "runner.out")
    started = ssh.run(f"nohup sh {shlex.quote(launcher)} > {shlex.quote(out)} 2>&1 < /dev/null &", timeout=60)
    if started.exit_status != 0:
        raise ProviderError(f"could not start the job on pod {instance.id}: {started.stderr.strip()[-300:]}")
    pending = JobStatus(job_id=job.job_id, state=JobState.PENDING, message="starting")
    try:
        return job_status(job.job_id, job_record(access, job.job_id), pending)
    except SshUnavailable:  # started; the pod stopped answering right after (e.g. preempted): status will tell
        return pending

"""Hook implementations of the local provider. Registered exactly as a third party's provider would be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core.errors import UsageError
from runctl_core.hookspecs import hookimpl
from runctl_core.models import (
    Capabilities,
    Capability,
    Checkpoint,
    Collected,
    CredentialStatus,
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    Offer,
    PlannedCall,
    PlanRequest,
    PriceQuery,
    Project,
    ProviderContext,
    StatusReport,
    SyncResult,
)
from runctl_core.redact import job_environment
from runctl_core.remote import RANKS_PATH, RUNNER_PATH
from runctl_core.remote import runner as job_runner
from runctl_core.remote.records import decode_log_chunk
from runctl_local.sandbox import Sandbox
from runctl_local.settings import LocalSettings

LOG_CHUNK = 1 << 20


def _settings(ctx: ProviderContext) -> LocalSettings:
    return LocalSettings.model_validate(ctx.settings)


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _job_status(job_id: str, record: dict[str, Any]) -> JobStatus:
    state = record.get("state", "lost")
    return JobStatus(
        job_id=job_id,
        state=JobState(state) if state in JobState._value2member_map_ else JobState.LOST,
        exit_code=record.get("exit_code"),
        started_at=_parse_time(record.get("started_at")),
        ended_at=_parse_time(record.get("ended_at")),
        message=record.get("message", ""),
        rank=record.get("rank") if isinstance(record.get("rank"), int) else None,
    )


def _stop_job(job_dir: Path, grace: float) -> dict[str, Any]:
    """Stop a job and, for a multi-node job, each rank too: its launcher stops them, but a launcher killed
    with SIGKILL leaves its ranks' runners behind (each rank has its own RUNCTL_JOB_ID, see ranks.py)."""
    record: dict[str, Any] = job_runner.stop_job(str(job_dir), grace)
    ranks = job_dir / "ranks"
    if ranks.is_dir():
        for rank_dir in sorted(ranks.iterdir()):
            job_runner.stop_job(str(rank_dir), grace)
    return record


class LocalProvider:
    """Runs jobs on this machine. An instance is a sandbox directory; it costs nothing."""

    @hookimpl
    def settings_schema(self) -> type[LocalSettings]:
        return LocalSettings

    @hookimpl
    def capabilities(self) -> Capabilities:
        return Capabilities(
            spot=Capability(supported=False, reason="the local provider runs on this machine; there is no spot market"),
            stop=Capability(supported=False, reason="local sandboxes cost nothing while idle"),
            max_runtime=Capability(supported=False, reason="local sandboxes cost nothing; use --timeout for jobs"),
            gpu=Capability(supported=False, reason="the local provider does not schedule GPUs"),
            paid=False,
            multi_node=Capability(supported=True),  # N process groups on this machine (runctl_core/remote/ranks.py)
            poll_interval=0.01,
            ready_timeout=10.0,
        )

    @hookimpl
    def check_credentials(self) -> CredentialStatus:
        return CredentialStatus(found=True, source="none needed")

    @hookimpl
    def price(self, query: PriceQuery) -> list[Offer]:
        if query.gpu or (query.instance_type not in (None, "local")) or query.spot:
            return []
        memory = None
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        except (ValueError, OSError, AttributeError):
            pass
        return [
            Offer(
                provider="local",
                instance_type="local",
                vcpus=os.cpu_count(),
                memory_gb=memory,
                on_demand_hourly=0.0,
                availability="high",
                source="this machine",
            )
        ]

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        if spec.gpu:
            raise UsageError("the local provider cannot give a GPU", "drop --gpu, or choose a cloud --provider")
        if spec.instance_type not in (None, "local"):
            raise UsageError(
                f"the local provider has one instance type, 'local' (got {spec.instance_type!r})",
                "drop --instance-type, or choose a cloud --provider",
            )
        sandbox = Sandbox.new(ctx.state_dir)
        tags = {"runctl:owner": spec.owner, "runctl:intent": spec.intent_id, **spec.tags}
        if spec.job_id:
            tags["runctl:job"] = spec.job_id
        now = datetime.now(timezone.utc)
        tags["runctl:created"] = now.isoformat()
        instance = Instance(
            id=sandbox.id,
            provider="local",
            state=InstanceState.RUNNING,
            instance_type="local",
            hourly_price=0.0,
            created_at=now,
            tags=tags,
            details={"path": str(sandbox.root)},
        )
        sandbox.project.mkdir(parents=True)
        sandbox.write(instance)
        return instance

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return self.status(ctx, instance, None).instance

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        from runctl_core.files import changed_files

        sandbox = Sandbox(ctx.state_dir, instance.id)
        if sandbox.read().state is not InstanceState.RUNNING:
            raise UsageError(f"local instance {instance.id} is terminated", "create a new one: runctl create")
        previous = sandbox.read_manifest()
        send, delete = changed_files(project, previous)
        for item in send:
            target = sandbox.project / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project.root / item.path, target)
            os.chmod(target, item.mode)
        for rel in delete:
            (sandbox.project / rel).unlink(missing_ok=True)
        sandbox.write_manifest(project.manifest())
        return SyncResult(
            remote_path=str(sandbox.project),
            files_total=len(project.files),
            files_sent=len(send),
            bytes_sent=sum(f.size for f in send),
            files_deleted=len(delete),
        )

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        settings = _settings(ctx)
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if sandbox.read().state is not InstanceState.RUNNING:
            raise UsageError(f"local instance {instance.id} is terminated", "create a new one: runctl create")
        if not (sandbox.project / job.script).is_file():
            raise UsageError(
                f"{job.script} is not in the synced project of {instance.id}",
                f"sync first (runctl sync {instance.id}) or check the script path",
            )
        job_dir = sandbox.job_dir(job.job_id)
        job_dir.mkdir(parents=True, exist_ok=False)
        env_file = job_dir / "env.json"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(job.env, fh)
        # -S: the runner (and ranks.py) are stdlib only: skipping site (.pth files of every plugin) starts faster
        launcher = [sys.executable, "-S", str(RUNNER_PATH), "supervise"]
        if job.nodes > 1 or job.launcher != "python":
            launcher = [sys.executable, "-S", str(RANKS_PATH), "launch", "--nodes", str(job.nodes)]
            launcher += ["--launcher", job.launcher, "--nproc-per-node", str(job.procs_per_node)]
        command = [
            *launcher,
            "--job-dir",
            str(job_dir),
            "--workdir",
            str(sandbox.project),
            "--checkpoint-dir",
            str(job_dir / "checkpoints"),
            "--job-id",
            job.job_id,
            "--env-file",
            str(env_file),
            "--grace",
            str(settings.grace_period),
        ]
        if not settings.use_uv:
            command.append("--no-uv")
        if job.timeout:
            command += ["--timeout", str(job.timeout)]
        if job.resume_dir:
            command += ["--resume-dir", str(job.resume_dir)]
        command += ["--", job.script, *job.args]
        env = job_environment(os.environ)  # never runctl's own provider credentials: pass them with --env
        if settings.python:
            env["RUNCTL_PYTHON"] = settings.python
        proc = subprocess.Popen(
            command,
            cwd=sandbox.project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        record = {
            "state": "pending",
            "supervisor_pid": proc.pid,
            "supervisor_start": job_runner.start_time(proc.pid),  # known from fork on: pid + start time name it
            "submitted_at": datetime.now(timezone.utc).isoformat(),
        }
        if not (job_dir / "job.json").exists():  # the runner may already have written "running"
            tmp = job_dir / "job.json.pending"
            tmp.write_text(json.dumps(record))
            try:
                os.link(tmp, job_dir / "job.json")  # fails if the runner got there first: never overwrite it
            except FileExistsError:
                pass
            tmp.unlink()
        return _job_status(job.job_id, job_runner.job_record(str(job_dir)))

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if not sandbox.exists():
            gone = instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "sandbox not found"})
            job_status = None
            if job is not None:
                job_status = job if job.state.terminal else job.model_copy(update={"state": JobState.LOST})
            return StatusReport(instance=gone, job=job_status)
        current = sandbox.read()
        job_status = None
        if job is not None:
            job_dir = sandbox.job_dir(job.job_id)
            if job_dir.is_dir():
                job_status = _job_status(job.job_id, job_runner.job_record(str(job_dir)))
            else:
                job_status = job.model_copy(update={"state": JobState.LOST, "message": "no such job on this instance"})
        return StatusReport(instance=current, job=job_status)

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int, rank: int = 0) -> LogChunk:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        job_dir = sandbox.job_dir(job.job_id)
        if rank and not (job_dir / "ranks" / str(rank)).is_dir():
            raise UsageError(f"job {job.job_id} has no rank {rank}", "ranks are numbered 0 to --nodes minus 1")
        path = job_dir / "ranks" / str(rank) / "log" if rank else job_dir / "log"
        record = job_runner.job_record(str(job_dir)) if job_dir.is_dir() else {"state": "lost"}
        terminal = record.get("state") in job_runner.TERMINAL
        data = b""
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read(LOG_CHUNK)
                at_end = fh.read(1) == b""
        except FileNotFoundError:
            at_end = True
        text, used = decode_log_chunk(data, final=terminal and at_end)
        next_offset = offset + used
        return LogChunk(data=text, offset=offset, next_offset=next_offset, complete=terminal and at_end)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        job_dir = sandbox.job_dir(job.job_id)
        if not job_dir.is_dir():
            return job
        return _job_status(job.job_id, _stop_job(job_dir, _settings(ctx).grace_period))

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if not sandbox.exists():
            return instance.model_copy(update={"state": InstanceState.TERMINATED})
        grace = _settings(ctx).grace_period
        for job_dir in sandbox.job_dirs():
            _stop_job(job_dir, grace)
        shutil.rmtree(sandbox.project, ignore_errors=True)
        sandbox.manifest_path.unlink(missing_ok=True)
        current = sandbox.read()
        if current.state is not InstanceState.TERMINATED:
            current = current.model_copy(update={"state": InstanceState.TERMINATED, "message": "sandbox removed"})
            sandbox.write(current)
        return current

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        found = []
        for sandbox in Sandbox.all(ctx.state_dir):
            if sandbox.exists():
                found.append(sandbox.read())
        return found

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        directory = Sandbox(ctx.state_dir, instance.id).job_dir(job.job_id) / "checkpoints"
        return (
            [
                Checkpoint(
                    name=path.relative_to(directory).as_posix(),
                    size=path.stat().st_size,
                    modified_at=datetime.fromtimestamp(path.stat().st_mtime, timezone.utc),
                    location=str(path),
                )
                for path in sorted(directory.rglob("*"))
                if path.is_file()
            ]
            if directory.is_dir()
            else []
        )

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        source = Sandbox(ctx.state_dir, instance.id).job_dir(job.job_id) / "checkpoints"
        written: list[Path] = []
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    target = dest / path.relative_to(source)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
                    written.append(target)
        return Collected(directory=dest, files=written)

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        settings = _settings(ctx)
        base = ctx.state_dir / "instances"
        calls: list[PlannedCall] = []
        for step in request.steps:
            if step == "create":
                calls.append(
                    PlannedCall(step=step, api="local", operation="mkdir", params={"path": f"{base}/local-<id>"})
                )
            elif step == "sync":
                calls.append(
                    PlannedCall(
                        step=step,
                        api="local",
                        operation="copy files",
                        params={"files": request.project_files, "bytes": request.project_bytes},
                    )
                )
            elif step == "train" and request.job is not None:
                runner = "uv run" if settings.use_uv and job_runner.find_uv() else (settings.python or sys.executable)
                calls.append(
                    PlannedCall(
                        step=step,
                        api="local",
                        operation="spawn",
                        params={
                            "command": [*runner.split(), request.job.script, *request.job.args],
                            "timeout": request.job.timeout,
                        },
                    )
                )
            elif step == "terminate":
                calls.append(
                    PlannedCall(
                        step=step,
                        api="local",
                        operation="stop jobs (SIGTERM, SIGKILL) and remove sandbox",
                        params={"grace_period": settings.grace_period},
                    )
                )
            else:
                calls.append(PlannedCall(step=step, api="local", operation=step))
        return calls

"""Hook implementations of the local provider. Registered exactly as a third party's provider would be."""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from runctl_core.errors import NotFoundError, UsageError
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
    PortForward,
    PriceQuery,
    Project,
    ProviderContext,
    ShellCommand,
    StatusReport,
    SyncResult,
)
from runctl_core.redact import job_environment
from runctl_core.remote.hostcache import HostCache
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.records import runctl_tags
from runctl_core.remote.transport import LocalTransport
from runctl_local.sandbox import Sandbox, wait_for_supervisor
from runctl_local.settings import LocalSettings


def _settings(ctx: ProviderContext) -> LocalSettings:
    return LocalSettings.model_validate(ctx.settings)


def _host(ctx: ProviderContext, sandbox: Sandbox) -> JobHost:
    """The sandbox as a machine: runctl's remote-job layer over a LocalTransport, run by runctl's own Python.
    uv (when runctl installs it) is shared by all sandboxes; environments are cached per sandbox (instance)."""
    settings = _settings(ctx)
    env = {"RUNCTL_PYTHON": settings.python} if settings.python else {}
    return JobHost(
        LocalTransport(job_environment(os.environ)),  # never runctl's own provider credentials: pass them with --env
        str(sandbox.root),
        python=sys.executable,
        python_args=["-S"],  # runctl's tools are stdlib only: skipping site (every plugin's .pth) starts them faster
        tools_dir=str(ctx.state_dir / "tools"),
        env=env,
        inline=True,
        cache=HostCache.for_instance(ctx.state_dir, sandbox.id),
    )


def _running(ctx: ProviderContext, instance: Instance) -> tuple[Sandbox, JobHost]:
    sandbox = Sandbox(ctx.state_dir, instance.id)
    if sandbox.read().state is not InstanceState.RUNNING:
        raise UsageError(f"local instance {instance.id} is terminated", "create a new one: runctl create")
    return sandbox, _host(ctx, sandbox)


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
            shell=Capability(supported=True),
            port_forward=Capability(
                supported=False, reason="a local job runs on this machine: open localhost:PORT directly"
            ),
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
        now = datetime.now(timezone.utc)
        tags = runctl_tags(spec, now)
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
        HostCache.for_instance(ctx.state_dir, sandbox.id).mark_new()  # nothing synced: the first sync reads nothing
        return instance

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return self.status(ctx, instance, None).instance

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        return _running(ctx, instance)[1].sync(project)

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        sandbox, host = _running(ctx, instance)
        if not (sandbox.project / job.script).is_file():
            raise UsageError(
                f"{job.script} is not in the synced project of {instance.id}",
                f"sync first (runctl sync {instance.id}) or check the script path",
            )
        settings = _settings(ctx)
        return host.launch(job, grace=settings.grace_period, use_uv=settings.use_uv)

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
            if sandbox.job_dir(job.job_id).is_dir():
                job_status = _host(ctx, sandbox).status(job.job_id)
            else:
                job_status = job.model_copy(update={"state": JobState.LOST, "message": "no such job on this instance"})
        return StatusReport(instance=current, job=job_status)

    @hookimpl
    def wait_change(self, ctx: ProviderContext, instance: Instance, job: JobStatus, seconds: float) -> None:
        """Sleep until the job's supervisor process ends or ``seconds`` pass: on Linux through a pidfd of the
        supervisor (found by the pid and start time in the job's record, so a recycled pid is never waited on),
        which becomes readable the moment the process ends; elsewhere, or in any doubt, a plain sleep."""
        if not wait_for_supervisor(Sandbox(ctx.state_dir, instance.id).job_dir(job.job_id), seconds):
            time.sleep(seconds)

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int, rank: int = 0) -> LogChunk:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        job_dir = sandbox.job_dir(job.job_id)
        if not job_dir.is_dir():
            return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
        if rank and not (job_dir / "ranks" / str(rank)).is_dir():
            raise UsageError(f"job {job.job_id} has no rank {rank}", "ranks are numbered 0 to --nodes minus 1")
        return _host(ctx, sandbox).logs(job.job_id, offset, rank=rank)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if not sandbox.job_dir(job.job_id).is_dir():
            return job
        return _host(ctx, sandbox).stop(job.job_id, _settings(ctx).grace_period)

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if not sandbox.exists():
            return instance.model_copy(update={"state": InstanceState.TERMINATED})
        host = _host(ctx, sandbox)
        host.stop_all(_settings(ctx).grace_period)
        host.remove_project()
        host.transport.remove(f"{host.root}/envs")
        HostCache.for_instance(ctx.state_dir, instance.id).clear()
        current = sandbox.read()
        if current.state is not InstanceState.TERMINATED:
            # its jobs/ stays (deliberately): `runctl logs` and `checkpoint pull` still work after the end
            kept = f"sandbox removed; job logs and checkpoints kept under {sandbox.root / 'jobs'}"
            current = current.model_copy(update={"state": InstanceState.TERMINATED, "message": kept})
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
        return _host(ctx, Sandbox(ctx.state_dir, instance.id)).checkpoints(job.job_id)

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        return _host(ctx, Sandbox(ctx.state_dir, instance.id)).collect(job.job_id, dest)

    @hookimpl
    def remove_job_files(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> bool:
        """The job's directory in a terminated sandbox (kept by ``terminate`` for ``logs``/``checkpoint``); the
        sandbox itself once no job is left in it."""
        sandbox = Sandbox(ctx.state_dir, instance.id)
        job_dir = sandbox.job_dir(job.job_id)
        if sandbox.exists() and sandbox.read().state is not InstanceState.TERMINATED:
            raise UsageError(f"{instance.id} is not terminated; its job files stay", f"runctl terminate {instance.id}")
        if not job_dir.is_dir():
            return False
        if not _host(ctx, sandbox).status(job.job_id).state.terminal:  # its own record, not the journal's
            raise UsageError(f"job {job.job_id} is still running on {instance.id}", f"runctl terminate {job.job_id}")
        shutil.rmtree(job_dir)
        if not sandbox.job_dirs() and not (sandbox.project.exists() or (sandbox.root / "envs").exists()):
            shutil.rmtree(sandbox.root, ignore_errors=True)
        return True

    @hookimpl
    def shell(
        self,
        ctx: ProviderContext,
        instance: Instance,
        job: JobStatus | None,
        command: list[str],
        ports: list[PortForward],
    ) -> ShellCommand:
        """A shell in the sandbox's project directory; for a job, with its RUNCTL_JOB_ID and checkpoint directory."""
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if not sandbox.project.is_dir():
            raise NotFoundError(
                f"{instance.id} has no project directory (it was terminated, or nothing was synced yet)",
                f"send the project first: runctl sync {instance.id}",
            )
        env = {}
        if job is not None:
            env = {
                "RUNCTL_JOB_ID": job.job_id,
                "RUNCTL_CHECKPOINT_DIR": str(sandbox.job_dir(job.job_id) / "checkpoints"),
            }
        shell = os.environ.get("SHELL") or "/bin/sh"
        argv = [shell, "-c", " ".join(command)] if command else [shell]
        return ShellCommand(argv=argv, cwd=str(sandbox.project), env=env)

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
                calls.append(
                    PlannedCall(
                        step=step,
                        api="local",
                        operation="spawn runner.py launch (environment step, then the script)",
                        params={
                            "command": [request.job.script, *request.job.args],
                            "setup": request.job.setup,
                            "python": request.job.python or settings.python or sys.executable,
                            "use_uv": settings.use_uv,
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

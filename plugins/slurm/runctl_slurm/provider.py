"""Hook implementations of the Slurm provider.

An *instance* here is allocation-free: ``create`` checks the prerequisites, makes a directory on the cluster's
shared filesystem and records it - nothing is queued or billed. ``train`` submits the job with ``sbatch
--parsable`` (one or ``--nodes N`` nodes); the job is what Slurm schedules, and ``terminate`` cancels the
instance's jobs with ``scancel``. Jobs carry runctl's tags in ``--comment`` and are named ``runctl-<job>``.
"""

from __future__ import annotations

import json
import secrets
import shlex
from datetime import datetime, timezone
from pathlib import Path

from runctl_core.errors import ProviderError, UsageError
from runctl_core.files import changed_files, pack_tar
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
from runctl_core.remote.records import decode_log_chunk, read_json, runctl_tags, write_json_atomic
from runctl_slurm.cluster import runctl_tools, tools_tar
from runctl_slurm.plan import planned_calls
from runctl_slurm.settings import SlurmSettings
from runctl_slurm.slurm import (
    BatchJob,
    batch_script,
    comment_for,
    gres_options,
    map_state,
    tags_from_comment,
    time_limit,
)
from runctl_slurm.state import (
    cluster_of,
    local_slurm_configured,
    metric,
    paths_of,
    record_path,
    save_instance,
    settings_of,
)

LOG_CHUNK = 1 << 20
TAG_INSTANCE = "runctl:instance"


class SlurmProvider:
    """Runs jobs on a Slurm cluster through its login node."""

    @hookimpl
    def settings_schema(self) -> type[SlurmSettings]:
        return SlurmSettings

    @hookimpl
    def capabilities(self) -> Capabilities:
        return Capabilities(
            spot=Capability(supported=False, reason="Slurm has no spot market (preemption is the cluster's policy)"),
            stop=Capability(supported=False, reason="a Slurm instance holds no allocation; there is nothing to stop"),
            max_runtime=Capability(supported=True),  # sbatch --time
            multi_node=Capability(supported=True),  # sbatch --nodes N, one rank per node with srun
            billing="job",  # an instance is free; a job uses the cluster while it runs
            poll_interval=2.0,
            ready_timeout=60.0,
        )

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        settings = settings_of(ctx)
        source = f"SSH to {settings.host} (~/.ssh/config, agent, keys)" if settings.host else "Slurm on this machine"
        if not settings.host and not local_slurm_configured():
            return CredentialStatus(
                found=False,
                source=source,
                message="no Slurm cluster configured: [providers.slurm] host is not set and this machine has no "
                "Slurm client configuration",
                hint="set the login node: runctl config set providers.slurm.host LOGIN_HOST (an ~/.ssh/config "
                "alias works), or run runctl on the login node",
            )
        if not probe:
            return CredentialStatus(found=True, source=source)
        result = cluster_of(ctx).sh("sinfo -h -o %P | head -n 1")
        if result.exit_code != 0:
            return CredentialStatus(found=False, source=source, message=result.error_text, hint="check `sinfo`")
        return CredentialStatus(found=True, source=source, identity=result.text.strip())

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        """One offer at ``price_per_gpu_hour``, only for a GPU the cluster has: named in ``gres_map`` or a GPU
        GRES type in ``sinfo`` (one read-only call); nothing when the cluster cannot be asked."""
        settings = settings_of(ctx)
        if query.spot or (not settings.host and not local_slurm_configured()):
            return []
        own = settings.partition or "slurm"
        if query.instance_type and query.instance_type != own:  # jobs go to the configured partition only
            return []
        if query.gpu and query.gpu.lower() not in {k.lower() for k in settings.gres_map}:
            result = cluster_of(ctx).sh("sinfo -h -o %G")
            wanted = gres_options(query.gpu, 1, {}, None)[-1].split(":")[1]  # the GRES type runctl would ask for
            if result.exit_code != 0 or f"gpu:{wanted}:" not in result.text:
                return []
        count = query.gpu_count or (1 if query.gpu else 0)
        return [
            Offer(
                provider="slurm",
                instance_type=own,
                gpu=query.gpu,
                gpu_count=count,
                on_demand_hourly=settings.price_per_gpu_hour * count,
                availability="unknown",
                source="your cluster (price_per_gpu_hour setting)",
            )
        ]

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        settings = settings_of(ctx)
        if spec.spot:
            raise UsageError("Slurm has no spot instances", "drop --spot")
        cluster = cluster_of(ctx)
        options = gres_options(spec.gpu, spec.gpu_count, settings.gres_map, settings.partition)
        partition = next((o.split("=", 1)[1] for o in options if o.startswith("--partition=")), None)
        workdir = cluster.resolve_workdir(settings.workdir, partition)
        instance_id = f"slurm-{secrets.token_hex(4)}"
        now = datetime.now(timezone.utc)
        tags = runctl_tags(spec, now)
        tags[TAG_INSTANCE] = instance_id
        instance = Instance(
            id=instance_id,
            provider="slurm",
            state=InstanceState.RUNNING,
            instance_type=partition or "slurm",
            gpu=spec.gpu,
            gpu_count=spec.gpu_count if spec.gpu else 0,
            hourly_price=settings.price_per_gpu_hour * (spec.gpu_count if spec.gpu else 0),
            created_at=now,
            tags=tags,
            details={
                "root": f"{workdir}/instances/{instance_id}",
                "host": settings.host or "",
                "options": options,
                "max_runtime": spec.max_runtime,
            },
            message="no allocation: jobs are submitted with sbatch by train",
        )
        save_instance(ctx, instance)
        metric(ctx, step="create", instance_id=instance_id, round_trips=cluster.transport.count)
        return instance

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return instance

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        paths = paths_of(instance)
        manifest_path = record_path(ctx, "manifests", instance.id)
        send, delete = changed_files(project, read_json(manifest_path, {}))
        removal = " ".join(shlex.quote(f"{paths.project}/{rel}") for rel in delete)
        cluster = cluster_of(ctx)
        result = cluster.upload_and_run(
            pack_tar(project, send), paths.project, f"rm -f -- {removal}" if delete else "true"
        )
        if result.exit_code != 0:
            raise ProviderError(f"syncing to {instance.id} failed: {result.error_text[-300:]}", "check the workdir")
        write_json_atomic(manifest_path, project.manifest())
        metric(ctx, step="sync", instance_id=instance.id, round_trips=cluster.transport.count)
        return SyncResult.of_changes(paths.project, project, send, delete)

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        settings = settings_of(ctx)
        paths = paths_of(instance)
        job_dir = paths.job(job.job_id)
        options = list(instance.details.get("options") or [])
        max_runtime = instance.details.get("max_runtime")
        if isinstance(max_runtime, (int, float)):
            options.append(f"--time={time_limit(max_runtime)}")
        options += [f"--account={settings.account}"] * bool(settings.account)
        options += [f"--qos={settings.qos}"] * bool(settings.qos)
        tags = {k: v for k, v in instance.tags.items() if k.startswith("runctl:") and k != "runctl:created"}
        tags["runctl:job"] = job.job_id
        files = runctl_tools()
        rel = f"jobs/{job.job_id}"
        batch = BatchJob(
            job_id=job.job_id,
            job_dir=job_dir,
            project_dir=paths.project,
            tools_dir=paths.bin,
            script=job.script,
            args=job.args,
            nodes=job.nodes,
            options=options,
            comment=comment_for(tags),
            python=settings.python,
            use_uv=settings.use_uv,
            launcher=job.launcher,
            procs_per_node=max(job.procs_per_node, instance.gpu_count or 1) if job.launcher == "torchrun" else 1,
            grace=settings.grace_period,
            timeout=job.timeout,
            resume_dir=f"{job_dir}/resume" if job.resume_dir else None,
            envs_dir=f"{paths.workdir}/envs",
            uv_dir=f"{paths.workdir}/tools",
            setup_file=f"{job_dir}/setup-commands.json" if job.setup else "",
            python_version=job.python or "",
        )
        files[f"{rel}/batch.sh"] = batch_script(batch).encode()
        files[f"{rel}/env.json"] = json.dumps(job.env).encode()
        if job.setup:
            files[f"{rel}/setup-commands.json"] = json.dumps(job.setup).encode()
        if job.resume_dir:
            for path in sorted(Path(job.resume_dir).rglob("*")):
                if path.is_file():
                    files[f"{rel}/resume/{path.relative_to(job.resume_dir).as_posix()}"] = path.read_bytes()
        cluster = cluster_of(ctx)
        q = shlex.quote
        submit = (
            f"test -f {q(paths.project + '/' + job.script)} || {{ echo missing >&2; exit 18; }}\n"
            f"sbatch --parsable {q(job_dir + '/batch.sh')}"
        )
        private = {f"{rel}/env.json": 0o600, f"{rel}/setup-commands.json": 0o600}
        result = cluster.upload_and_run(tools_tar(files, private), paths.root, submit)
        if result.exit_code == 18:
            raise UsageError(
                f"{job.script} is not in the synced project of {instance.id}",
                f"sync first (runctl sync {instance.id}) or check the script path",
            )
        slurm_id = result.text.strip().split(";")[0].splitlines()[-1] if result.text.strip() else ""
        if result.exit_code != 0 or not slurm_id.isdigit():
            raise ProviderError(
                f"sbatch refused the job: {result.error_text[-500:] or result.text[-300:]}",
                "check the partition, account, qos and GPU request against `sinfo` and your limits",
            )
        write_json_atomic(
            record_path(ctx, "jobs", job.job_id),
            {"slurm_job_id": slurm_id, "instance_id": instance.id, "job_dir": job_dir, "nodes": job.nodes},
        )
        metric(ctx, step="train", job_id=job.job_id, slurm_job_id=slurm_id, round_trips=cluster.transport.count)
        return JobStatus(job_id=job.job_id, state=JobState.PENDING, message=f"submitted to Slurm as job {slurm_id}")

    def _job_ref(self, ctx: ProviderContext, instance: Instance, job_id: str) -> tuple[str | None, str]:
        record = read_json(record_path(ctx, "jobs", job_id), {}) or {}
        return record.get("slurm_job_id"), record.get("job_dir") or paths_of(instance).job(job_id)

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        current = read_json(record_path(ctx, "instances", instance.id))
        report_instance = Instance.model_validate(current) if current else instance
        if job is None:
            return StatusReport(instance=report_instance)
        slurm_id, job_dir = self._job_ref(ctx, instance, job.job_id)
        if slurm_id is None:
            return StatusReport(instance=report_instance, job=job)
        slurm, record, batch_log = cluster_of(ctx).job_state(slurm_id, job_dir)
        state, code, message = map_state(slurm, record)
        if state is JobState.LOST and batch_log.strip():
            message += "\n" + batch_log.strip()[-800:]
        record = record or {}
        started = record.get("started_at")
        ended = record.get("ended_at")
        return StatusReport(
            instance=report_instance,
            job=JobStatus(
                job_id=job.job_id,
                state=state,
                exit_code=code,
                started_at=datetime.fromisoformat(started) if isinstance(started, str) else job.started_at,
                ended_at=datetime.fromisoformat(ended) if isinstance(ended, str) and state.terminal else None,
                message=message,
                rank=record.get("rank") if isinstance(record.get("rank"), int) and state.terminal else None,
            ),
        )

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int, rank: int) -> LogChunk:
        _slurm_id, job_dir = self._job_ref(ctx, instance, job.job_id)
        path = f"{job_dir}/ranks/{rank}/log" if rank else f"{job_dir}/log"
        try:
            data = cluster_of(ctx).transport.read_range(path, offset, LOG_CHUNK)
        except FileNotFoundError:
            data = b""
        at_end = len(data) < LOG_CHUNK
        text, consumed = decode_log_chunk(data, final=job.state.terminal and at_end)
        return LogChunk(data=text, offset=offset, next_offset=offset + consumed, complete=job.state.terminal and at_end)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        slurm_id, _job_dir = self._job_ref(ctx, instance, job.job_id)
        if slurm_id and not job.state.terminal:
            cluster_of(ctx).cancel([slurm_id])
            return job.model_copy(update={"state": JobState.CANCELLED, "message": "cancelled in Slurm (scancel)"})
        return job

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        """scancel every job of the instance (Slurm: SIGTERM, KillWait, SIGKILL) and wait until none is active."""
        import time

        cluster = cluster_of(ctx)
        deadline = time.monotonic() + settings_of(ctx).grace_period + 60
        while True:
            mine = [j for j in cluster.queue() if tags_from_comment(j.comment).get(TAG_INSTANCE) == instance.id]
            active = [j.job_id for j in mine if j.state not in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT")]
            if not active or time.monotonic() > deadline:
                break
            cluster.cancel(active)
            time.sleep(1.0)
        if active:
            raise ProviderError(
                f"Slurm jobs {', '.join(active)} of {instance.id} did not end after scancel",
                f"check with: squeue -j {','.join(active)}; then: runctl terminate {instance.id} --yes",
            )
        ended = instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "jobs cancelled"})
        if record_path(ctx, "instances", instance.id).exists():
            save_instance(ctx, ended)
        return ended

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        found: dict[str, Instance] = {}
        for path in sorted((ctx.state_dir / "instances").glob("*.json")):
            instance = Instance.model_validate(read_json(path))
            if instance.state.alive:
                found[instance.id] = instance
        for job in cluster_of(ctx).queue():
            tags = tags_from_comment(job.comment)
            instance_id = tags.get(TAG_INSTANCE)
            if not instance_id or instance_id in found or job.state in ("COMPLETED", "CANCELLED", "FAILED"):
                continue
            found[instance_id] = Instance(
                id=instance_id,
                provider="slurm",
                state=InstanceState.RUNNING,
                tags=tags,
                details={"slurm_job_id": job.job_id},
                message=f"Slurm job {job.job_id} {job.state}",
            )
        return list(found.values())

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        _slurm_id, job_dir = self._job_ref(ctx, instance, job.job_id)
        where = f"{ctx.settings.get('host') or 'cluster'}:{job_dir}/checkpoints"
        return [
            Checkpoint(
                name=f.path,
                size=f.size,
                modified_at=datetime.fromtimestamp(f.mtime, timezone.utc),
                location=f"{where}/{f.path}",
            )
            for f in cluster_of(ctx).transport.walk(f"{job_dir}/checkpoints")
        ]

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        _slurm_id, job_dir = self._job_ref(ctx, instance, job.job_id)
        cluster = cluster_of(ctx)
        written = []
        for f in cluster.transport.walk(f"{job_dir}/checkpoints"):
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            cluster.transport.get(f"{job_dir}/checkpoints/{f.path}", target)
            written.append(target)
        return Collected(directory=dest, files=written)

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        return planned_calls(ctx, request)

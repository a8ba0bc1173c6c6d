"""runctl's hooks for Lyceum Cloud.

Lyceum runs code as *executions* (one script, one hardware profile, billed per second while it runs), not as
machines that stay up. runctl's model maps onto that as follows (README.md explains it for users):

* **instance** = a *reservation* of a hardware profile (``lyc-<12 hex>``), validated against ``GET /machine-types``
  and kept in ``ctx.state_dir``. Creating it calls nothing paid; it is ``running`` at once and costs nothing.
* **sync** stages the filtered project locally (manifest of hashes); its files travel in every execution request
  (``import_files``). Projects over the request size limit are refused with what to do.
* **train** = ``POST /execution/streaming/start`` (or ``/execution/image/start`` with ``--image``): the code is
  runctl's bootstrap, which runs the script with ``RUNCTL_JOB_ID``/``RUNCTL_CHECKPOINT_DIR`` set and mirrors the
  checkpoint dir into the storage bucket mounted in the execution. ``run_name``/``labels``/``metadata`` carry the
  job id, owner and instance id.
* **status** = ``GET /execution/streaming/{id}/status`` (+ ``GET /execution/{id}`` for the return code once ended).
* **logs** = the execution's event stream, cached per execution; ``GET /logs/execution/{id}`` as fallback.
* **terminate/cancel** = ``POST /workloads/abort/{id}`` (then ``/workloads/stop/{id}`` if abort is refused).
* **collect/list_checkpoints** = the bucket via ``POST /storage/credentials`` + boto3.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core.errors import (
    CapabilityError,
    CredentialsError,
    NotFoundError,
    PrerequisiteError,
    ProviderError,
    QuotaError,
    TransientError,
    UsageError,
)
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
from runctl_lyceum import logcache
from runctl_lyceum.auth import KEY_HINT, find_credentials
from runctl_lyceum.client import LyceumClient, StorageClient
from runctl_lyceum.models import (
    ExecutionRecord,
    ExecutionRef,
    LyceumSettings,
    MachineType,
    Reservation,
)
from runctl_lyceum.packaging import (
    BLOBS_FILE,
    BOOTSTRAP_NAME,
    bootstrap_code,
    bundle_files,
    check_size,
    requirements_for,
)
from runctl_lyceum.store import Store

NAME = "lyceum"
IMAGE_CODE_LIMIT = 100_000  # an image execution's bootstrap travels in docker_run_cmd: one argv string
_LEGACY = {"cpu", "gpu"}
PENDING_STATES = {"pending", "queued", "starting", "scheduled", "provisioning", "initializing"}
CANCELLED_STATES = {"cancelled", "canceled", "aborted"}
SYSTEM_FAILURES = {"failed_system", "system_failure"}
USER_FAILURES = {"failed_user", "failed"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _norm(text: str) -> str:
    value = re.sub(r"[^a-z0-9]", "", text.lower())
    return value[len("nvidia") :] if value.startswith("nvidia") else value


def gpu_of(profile: str) -> str | None:
    """``gpu.a100`` -> ``A100``; ``None`` for CPU profiles."""
    parts = profile.split(".")
    return parts[1].upper() if len(parts) > 1 and parts[0] == "gpu" else None


def _is_legacy(profile: str) -> bool:
    return profile in _LEGACY or profile.startswith("gpu.t4")


def _matches_gpu(profile: str, gpu: str) -> bool:
    parts = profile.split(".")
    if len(parts) < 2 or parts[0] != "gpu":
        return False
    wanted = _norm(gpu)
    return _norm(parts[1]) == wanted or _norm("".join(parts[1:])) == wanted


class Context:
    """Per-call helpers: validated settings, the local store, an API client (created on first use)."""

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.settings = LyceumSettings.model_validate(ctx.settings)
        self.store = Store(ctx.state_dir)
        self.credentials = find_credentials(self.settings)
        self._client: LyceumClient | None = None

    @property
    def client(self) -> LyceumClient:
        if self._client is None:
            s = self.settings
            self._client = LyceumClient(
                s.resolved_base_url(),
                self.credentials.api_key,
                org=self.credentials.org,
                timeout=s.http_timeout,
                retries=s.http_retries,
                base_delay=s.retry_base_delay,
            )
        return self._client

    def require_key(self) -> None:
        if self.credentials.api_key is None:
            raise CredentialsError(f"no Lyceum API key found: {self.credentials.problem}", KEY_HINT)

    def storage(self) -> StorageClient:
        return StorageClient(self.client.storage_credentials())

    def storage_path(self, job_id: str) -> str:
        return f"{self.settings.storage_prefix.strip('/')}/{job_id}"

    def reservation(self, instance: Instance) -> Reservation:
        rec = self.store.load(instance.id)
        if rec is None or rec.state != "running":
            raise NotFoundError(
                f"Lyceum instance {instance.id} is terminated or unknown here",
                "create a new one: runctl --provider lyceum create",
            )
        return rec


def to_instance(rec: Reservation, message: str = "") -> Instance:
    gpu = gpu_of(rec.hardware_profile)
    running = rec.state == "running"
    return Instance(
        id=rec.id,
        provider=NAME,
        state=InstanceState.RUNNING if running else InstanceState.TERMINATED,
        instance_type=rec.hardware_profile,
        gpu=gpu,
        gpu_count=1 if gpu else 0,
        hourly_price=rec.hourly_price,
        created_at=_parse_time(rec.created_at),
        tags=dict(rec.tags),
        details={
            "kind": "reservation",
            "hardware_profile": rec.hardware_profile,
            "image": rec.image,
            "executions": {job: ref.execution_id for job, ref in rec.executions.items()},
        },
        message=message
        or (
            f"reservation of {rec.hardware_profile}: billed only while an execution runs"
            if running
            else "reservation ended"
        ),
    )


def map_status(
    raw: str, ref: ExecutionRef, record: ExecutionRecord | None, meta: dict[str, Any], errors: Any = None
) -> JobStatus:
    """Lyceum's execution status onto runctl's JobState (the README has the table)."""
    status = raw.lower()
    rc = record.return_code if record is not None else None
    if rc is None and isinstance(meta.get("return_code"), int):
        rc = meta["return_code"]
    started = _parse_time(record.job_start) if record else None
    ended = _parse_time(record.job_end) if record else None
    problems = (record.system_errors if record and record.system_errors else None) or errors or meta.get("error")
    detail = f": {problems}" if problems else ""
    base: dict[str, Any] = {
        "job_id": ref.job_id,
        "started_at": started,
        "ended_at": ended,
        "cost": record.billed if record is not None else None,
    }  # USD, as the Lyceum CLI shows it
    if status in PENDING_STATES:
        return JobStatus(state=JobState.PENDING, message=f"Lyceum execution {ref.execution_id} {status}", **base)
    if status == "running":
        return JobStatus(state=JobState.RUNNING, message=f"Lyceum execution {ref.execution_id}", **base)
    ended = ended or _now()
    base["ended_at"] = ended
    if status == "completed":
        if ref.cancel_requested and rc is None:
            return JobStatus(state=JobState.CANCELLED, message="stopped on request", **base)
        if rc not in (None, 0):
            return JobStatus(state=JobState.FAILED, exit_code=rc, message=f"script exited with code {rc}", **base)
        return JobStatus(state=JobState.SUCCEEDED, exit_code=0, **base)
    if status in USER_FAILURES:
        return JobStatus(
            state=JobState.FAILED,
            exit_code=rc,
            message=f"script exited with code {rc}" if rc is not None else f"Lyceum: {status}{detail}",
            **base,
        )
    if status == "timeout":
        return JobStatus(state=JobState.FAILED, exit_code=rc, message="killed after the execution timeout", **base)
    if status in CANCELLED_STATES:
        return JobStatus(state=JobState.CANCELLED, exit_code=rc, message=f"Lyceum execution {status}", **base)
    if status in SYSTEM_FAILURES:
        return JobStatus(
            state=JobState.LOST,
            message=f"Lyceum system failure{detail}; checkpoints mirrored so far "
            "are in storage (runctl run --resume-from the job)",
            **base,
        )
    return JobStatus(state=JobState.RUNNING, message=f"Lyceum status {raw!r}", **{**base, "ended_at": None})


class LyceumProvider:
    """Runs training scripts as Lyceum executions. See the module docstring and README.md."""

    # -------------------------------------------------------------------------------- declarations

    @hookimpl
    def settings_schema(self) -> type[LyceumSettings]:
        return LyceumSettings

    @hookimpl
    def capabilities(self, ctx: ProviderContext) -> Capabilities:
        settings = LyceumSettings.model_validate(ctx.settings)
        return Capabilities(
            spot=Capability(
                supported=False,
                reason="Lyceum bills executions per second at one price per hardware "
                "profile; it has no spot or preemptible tier",
            ),
            stop=Capability(
                supported=False,
                reason="a Lyceum instance is a reservation that costs nothing while idle; "
                "executions end with their script",
            ),
            log_follow=Capability(supported=True),
            checkpoints=Capability(supported=True),
            max_runtime=Capability(supported=True),  # every execution carries a server-side timeout
            gpu=Capability(supported=True),
            billing="job",  # a reservation is free; executions bill per second while they run
            paid=True,
            poll_interval=settings.poll_interval,
            ready_timeout=60.0,
        )

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        c = Context(ctx)
        creds = c.credentials
        if creds.api_key is None:
            return CredentialStatus(found=False, message=creds.problem, hint=KEY_HINT)
        if not probe:
            return CredentialStatus(found=True, source=creds.source, message=creds.problem)
        try:
            identity = c.client.whoami()
        except (CredentialsError, ProviderError) as exc:
            if isinstance(exc, TransientError):
                raise
            return CredentialStatus(
                found=True, source=creds.source, message=f"rejected by Lyceum: {exc.message}", hint=KEY_HINT
            )
        return CredentialStatus(found=True, source=creds.source, identity=identity, message="accepted by Lyceum")

    # -------------------------------------------------------------------------------- prices

    def _machine_types(self, c: Context) -> list[MachineType]:
        c.require_key()
        return [m for m in c.client.machine_types() if not _is_legacy(m.hardware_profile)]

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        if query.spot:
            return []
        c = Context(ctx)
        types = self._machine_types(c)
        if query.instance_type:
            wanted = {query.instance_type, f"gpu.{query.instance_type}"}
            types = [m for m in types if m.hardware_profile in wanted]
        if query.gpu:
            types = [m for m in types if _matches_gpu(m.hardware_profile, query.gpu)]
        if query.gpu_count and query.gpu_count > 1:
            return []
        allowed = set(c.client.available_hardware()) if types else set()
        return [
            Offer(
                provider=NAME,
                instance_type=m.hardware_profile,
                gpu=gpu_of(m.hardware_profile),
                gpu_count=1 if gpu_of(m.hardware_profile) else 0,
                on_demand_hourly=m.price_per_hour,
                availability="none" if allowed and m.hardware_profile not in allowed else "unknown",
                source="Lyceum API /machine-types (billed per second)",
            )
            for m in types
        ]

    def _resolve_profile(self, c: Context, spec: InstanceSpec) -> MachineType:
        types = self._machine_types(c)
        names = ", ".join(m.hardware_profile for m in types) or "none"
        if spec.gpu_count > 1:
            raise UsageError(
                f"Lyceum executions run on one hardware profile; {spec.gpu_count} GPUs is not offered",
                f"drop --gpu-count, or pick a profile: {names}",
            )
        if spec.instance_type:
            for m in types:
                if m.hardware_profile in (spec.instance_type, f"gpu.{spec.instance_type}"):
                    return m
            raise UsageError(
                f"Lyceum has no hardware profile {spec.instance_type!r}",
                f"choose one of: {names} (prices: runctl price --provider lyceum)",
            )
        if spec.gpu:
            matching = [m for m in types if _matches_gpu(m.hardware_profile, spec.gpu)]
            if not matching:
                raise UsageError(
                    f"Lyceum has no hardware profile with a {spec.gpu} GPU",
                    f"choose one of: {names} (prices: runctl price --provider lyceum)",
                )
            return min(matching, key=lambda m: m.price_per_hour if m.price_per_hour is not None else math.inf)
        for m in types:
            if m.hardware_profile == c.settings.default_instance_type:
                return m
        raise UsageError(
            f"Lyceum does not offer the default profile {c.settings.default_instance_type!r}",
            f"pass --instance-type, one of: {names}",
        )

    # -------------------------------------------------------------------------------- instances

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        c = Context(ctx)
        c.require_key()
        if spec.spot:
            raise CapabilityError(
                "Lyceum has no spot market: executions are billed per second at one price", "drop --spot"
            )
        machine = self._resolve_profile(c, spec)
        allowed = c.client.available_hardware()
        if allowed and machine.hardware_profile not in allowed:
            raise QuotaError(
                f"your Lyceum account has no access to {machine.hardware_profile}",
                f"profiles you can use: {', '.join(allowed)}; ask Lyceum for access",
            )
        price = machine.price_per_hour
        if spec.max_price is not None and price is not None and price > spec.max_price:
            raise UsageError(
                f"{machine.hardware_profile} costs ${machine.price_per_hour:.2f}/h, above --max-price "
                f"${spec.max_price:.2f}",
                "raise --max-price or pick a cheaper profile",
            )
        if spec.region:
            ctx.warn("Lyceum chooses where executions run; --region is ignored")
        if spec.disk_gb:
            ctx.warn("Lyceum executions have a fixed disk; --disk-gb is ignored (use Lyceum storage for data)")
        now = _now()
        tags = {
            **spec.tags,
            "runctl:owner": spec.owner,
            "runctl:intent": spec.intent_id,
            "runctl:created": now.isoformat(),
        }
        if spec.job_id:
            tags["runctl:job"] = spec.job_id
        rec = Reservation(
            id=c.store.new_id(),
            hardware_profile=machine.hardware_profile,
            hourly_price=machine.price_per_hour,
            created_at=now.isoformat(),
            tags=tags,
            max_runtime=spec.max_runtime,
            image=spec.image,
        )
        c.store.save(rec)
        return to_instance(rec)

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return self.status(ctx, instance, None).instance

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        c = Context(ctx)
        known = {rec.id: rec for rec in c.store.all()}
        found = [to_instance(rec) for rec in known.values() if rec.state == "running"]
        if c.credentials.api_key is None:
            return found
        orphans: dict[str, Instance] = {}
        for workload in c.client.workloads():
            tags = workload.runctl_tags()
            iid = tags.get("runctl:instance")
            if not iid or (iid in known and known[iid].state == "running"):
                continue
            status = (workload.status or "").lower()
            if status and status not in PENDING_STATES and status != "running":
                continue
            if iid in orphans:
                orphans[iid].details["executions"][tags.get("runctl:job", "?")] = workload.execution_id
                continue
            profile = workload.hardware_profile
            orphans[iid] = Instance(
                id=iid,
                provider=NAME,
                state=InstanceState.PENDING if status in PENDING_STATES else InstanceState.RUNNING,
                instance_type=profile,
                gpu=gpu_of(profile or ""),
                tags=tags,
                created_at=_parse_time(workload.created_at),
                details={"kind": "orphan", "executions": {tags.get("runctl:job", "?"): workload.execution_id}},
                message="executions at Lyceum labelled by runctl with no open reservation here",
            )
        return found + list(orphans.values())

    def _labelled_executions(self, c: Context, instance_id: str) -> list[str]:
        if c.credentials.api_key is None:
            return []
        return [
            w.execution_id
            for w in c.client.workloads()
            if w.runctl_tags().get("runctl:instance") == instance_id
            and (w.status or "running").lower()
            not in CANCELLED_STATES | SYSTEM_FAILURES | USER_FAILURES | {"completed", "timeout"}
        ]

    def _end_execution(self, c: Context, execution_id: str) -> None:
        """Abort (hard stop); if Lyceum refuses the abort, stop it gracefully. Gone already is fine."""
        try:
            c.client.abort(execution_id)
        except (NotFoundError, TransientError, CredentialsError):
            raise
        except ProviderError:
            c.client.stop(execution_id)

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        c = Context(ctx)
        rec = c.store.load(instance.id)
        targets: list[str] = []
        if rec is not None:
            targets = [ref.execution_id for ref in rec.executions.values() if ref.final is None]
        targets += [e for e in self._labelled_executions(c, instance.id) if e not in targets]
        for execution_id in targets:
            try:
                self._end_execution(c, execution_id)
            except NotFoundError:
                pass
        if rec is None:
            return instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "no such reservation"})
        for ref in rec.executions.values():
            if ref.final is None:
                ref.cancel_requested = True
        rec.state = "terminated"
        c.store.save(rec)
        c.store.drop_project(rec.id)
        return to_instance(rec, "reservation ended" + (f"; aborted {len(targets)} execution(s)" if targets else ""))

    # -------------------------------------------------------------------------------- sync, train

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        c = Context(ctx)
        rec = c.reservation(instance)
        bundle = bundle_files(project.root, [(f.path, f.mode) for f in project.files])
        limit = c.settings.max_request_bytes
        if rec.image:
            limit = min(limit, IMAGE_CODE_LIMIT)
        check_size(bundle, limit)
        previous = c.store.manifest(rec.id)
        staged = c.store.project_dir(rec.id)
        send = [f for f in project.files if previous.get(f.path, {}).get("sha256") != f.sha256]
        current = {f.path for f in project.files}
        delete = sorted(set(previous) - current)
        for item in send:
            target = staged / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((project.root / item.path).read_bytes())
        for rel in delete:
            (staged / rel).unlink(missing_ok=True)
        c.store.save_manifest(
            rec.id, {f.path: {"sha256": f.sha256, "mode": f.mode, "size": f.size} for f in project.files}
        )
        return SyncResult(
            remote_path="the execution's working directory (files go with each execution request)",
            files_total=len(project.files),
            files_sent=len(send),
            bytes_sent=sum(f.size for f in send),
            files_deleted=len(delete),
        )

    def _timeout(self, c: Context, rec: Reservation, job: JobSpec) -> int:
        seconds = job.timeout or float(c.settings.default_timeout)
        if rec.max_runtime:
            seconds = min(seconds, rec.max_runtime)
        return max(1, math.ceil(seconds))

    def _labels(self, rec: Reservation, job: JobSpec, owner: str) -> tuple[list[str], dict[str, str]]:
        metadata = {k: v for k, v in rec.tags.items() if k.startswith("runctl:")}
        metadata.update(
            {"runctl:job": job.job_id, "runctl:owner": rec.tags.get("runctl:owner", owner), "runctl:instance": rec.id}
        )
        labels = ["runctl"] + [f"{k}={v}" for k, v in sorted(metadata.items()) if k != "runctl:created"]
        return labels, metadata

    def _request(self, c: Context, rec: Reservation, job: JobSpec) -> dict[str, Any]:
        staged = c.store.project_dir(rec.id)
        manifest = c.store.manifest(rec.id)
        if job.script not in manifest:
            raise UsageError(
                f"{job.script} is not in the project synced to {rec.id}",
                f"sync first (runctl sync {rec.id}) or check the script path",
            )
        bundle = bundle_files(staged, [(path, int(meta.get("mode", 0o644))) for path, meta in sorted(manifest.items())])
        config: dict[str, Any] = {
            "script": job.script,
            "args": list(job.args),
            "env": dict(job.env),
            "job_id": job.job_id,
            "storage_mount": c.settings.storage_mount,
            "storage_path": c.storage_path(job.job_id),
            "sync_interval": c.settings.checkpoint_sync_interval,
            "grace": c.settings.grace_period,
            "modes": bundle.modes,
            "blobs_file": BLOBS_FILE,
        }
        labels, metadata = self._labels(rec, job, c.ctx.owner)
        common: dict[str, Any] = {
            "execution_type": rec.hardware_profile,
            "timeout": self._timeout(c, rec, job),
            "run_name": f"runctl {job.job_id} ({metadata['runctl:owner']})",
            "labels": labels,
            "metadata": metadata,
        }
        if rec.image:
            config["inline_files"] = {**bundle.binary, **{k: _b64(v) for k, v in bundle.text.items()}}
            code = bootstrap_code(config)
            if len(code) > IMAGE_CODE_LIMIT:
                raise UsageError(
                    f"the project is too large to pass to an image execution ({len(code)} bytes)",
                    "bake the code into the image, or run without --image",
                )
            return {
                "docker_image_ref": rec.image,
                "docker_run_cmd": ["python3", "-c", code],
                "docker_run_env": "PYTHONUNBUFFERED=1",
                "file_name": job.script,
                "enable_s3_mount": True,
                "s3_mount_path": c.settings.storage_mount,
                "graceful_timeout": math.ceil(c.settings.grace_period),
                **common,
            }
        body: dict[str, Any] = {
            "code": bootstrap_code(config),
            "nbcode": 0,
            "file_name": BOOTSTRAP_NAME,
            "import_files": bundle.import_files(),
            **common,
        }
        requirements = requirements_for(staged, job.script, c.settings.requirements)
        if requirements:
            body["requirements_content"] = requirements
        check_size(bundle, c.settings.max_request_bytes)
        return body

    def _upload_resume(self, c: Context, job: JobSpec) -> int:
        if job.resume_dir is None:
            return 0
        files = [p for p in sorted(Path(job.resume_dir).rglob("*")) if p.is_file()]
        if not files:
            return 0
        storage = c.storage()
        prefix = c.storage_path(job.job_id)
        for path in files:
            storage.upload(path, f"{prefix}/{path.relative_to(job.resume_dir).as_posix()}")
        return len(files)

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        c = Context(ctx)
        c.require_key()
        rec = c.reservation(instance)
        if job.job_id in rec.executions:
            raise UsageError(f"job {job.job_id} already ran on {rec.id}", "start a new job")
        body = self._request(c, rec, job)
        uploaded = self._upload_resume(c, job)
        if uploaded:
            ctx.report(f"uploaded {uploaded} resume file(s) to Lyceum storage")
        started = c.client.start_image(body) if rec.image else c.client.start_python(body)
        c.store.save_stream_url(started.execution_id, started.streaming_url)
        rec.executions[job.job_id] = ExecutionRef(
            execution_id=started.execution_id,
            job_id=job.job_id,
            script=job.script,
            submitted_at=_now().isoformat(),
            storage_path=c.storage_path(job.job_id),
        )
        c.store.save(rec)
        return JobStatus(
            job_id=job.job_id,
            state=JobState.PENDING,
            message=f"Lyceum execution {started.execution_id} ({started.status})",
        )

    # -------------------------------------------------------------------------------- status, logs, cancel

    def _query(self, c: Context, ref: ExecutionRef) -> JobStatus:
        meta = logcache.LogCache(c.store.execution_dir(ref.execution_id)).meta()
        try:
            current = c.client.execution_status(ref.execution_id)
        except NotFoundError:
            return JobStatus(
                job_id=ref.job_id,
                state=JobState.LOST,
                ended_at=_now(),
                message=f"Lyceum no longer knows execution {ref.execution_id}",
            )
        raw = current.status.lower()
        record = None
        if raw not in PENDING_STATES and raw != "running":
            try:
                record = c.client.execution(ref.execution_id)
            except NotFoundError:
                record = None
        return map_status(raw, ref, record, meta, current.errors)

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        c = Context(ctx)
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
                result = self._query(c, ref)
                if result.state.terminal:  # terminal is final: remember it, never ask again
                    ref.final = result.model_dump(mode="json")
                    c.store.save(rec)
        return StatusReport(instance=to_instance(rec), job=result)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        c = Context(ctx)
        rec = c.store.load(instance.id)
        ref = rec.executions.get(job.job_id) if rec else None
        if rec is None or ref is None:
            return job
        if ref.final is not None:
            return JobStatus.model_validate(ref.final)
        try:
            self._end_execution(c, ref.execution_id)
        except NotFoundError:
            pass
        ref.cancel_requested = True
        c.store.save(rec)
        return self.status(ctx, instance, job).job or job

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
        c = Context(ctx)
        rec = c.store.load(instance.id)
        ref = rec.executions.get(job.job_id) if rec else None
        if ref is None:
            return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
        eid = ref.execution_id
        cache = logcache.LogCache(c.store.execution_dir(eid))
        if not cache.complete and c.credentials.api_key is not None:
            url = c.client.stream_url(eid, c.store.stream_url(eid))
            terminal = job.state.terminal or ref.final is not None
            if terminal:
                self._finish_log(c, cache, eid, url)
            else:
                client = c.client
                logcache.ensure_follower(
                    eid, cache, lambda: client.stream_events(url, 600.0), c.settings.stream_reconnects
                )
        text, next_offset, at_end = cache.read(offset)
        return LogChunk(data=text, offset=offset, next_offset=next_offset, complete=cache.complete and at_end)

    def _finish_log(self, c: Context, cache: logcache.LogCache, eid: str, url: str) -> None:
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

    # -------------------------------------------------------------------------------- checkpoints

    def _prefix(self, c: Context, instance: Instance, job: JobStatus) -> str:
        rec = c.store.load(instance.id)
        ref = rec.executions.get(job.job_id) if rec else None
        return (ref.storage_path if ref else c.storage_path(job.job_id)).rstrip("/") + "/"

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        c = Context(ctx)
        c.require_key()
        prefix = self._prefix(c, instance, job)
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

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        c = Context(ctx)
        c.require_key()
        prefix = self._prefix(c, instance, job)
        try:
            storage = c.storage()
        except PrerequisiteError as exc:
            ctx.warn(f"{exc.message}; the checkpoints stay in Lyceum storage under {prefix} ({exc.hint})")
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

    # -------------------------------------------------------------------------------- dry run

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        settings = LyceumSettings.model_validate(ctx.settings)
        api = settings.resolved_base_url()
        spec = request.instance
        profile = (
            spec.instance_type or (f"<cheapest profile with a {spec.gpu}>" if spec.gpu else None) if spec else None
        ) or settings.default_instance_type
        image = spec.image if spec else None
        job = request.job
        calls: list[PlannedCall] = []
        for step in request.steps:
            if step == "create":
                calls.append(
                    PlannedCall(step=step, api=api, operation="GET /machine-types", params={"validate": profile})
                )
                calls.append(
                    PlannedCall(
                        step=step,
                        api="local",
                        operation="record reservation lyc-<id>",
                        params={"hardware_profile": profile, "billed": "only while executions run"},
                    )
                )
            elif step == "sync":
                calls.append(
                    PlannedCall(
                        step=step,
                        api="local",
                        operation="stage project for import_files",
                        params={
                            "files": request.project_files,
                            "bytes": request.project_bytes,
                            "limit_bytes": settings.max_request_bytes,
                        },
                    )
                )
            elif step == "train" and job is not None:
                timeout = math.ceil(job.timeout or settings.default_timeout)
                if spec and spec.max_runtime:
                    timeout = min(timeout, math.ceil(spec.max_runtime))
                if job.resume_dir:
                    calls.append(PlannedCall(step=step, api=api, operation="POST /storage/credentials"))
                    calls.append(
                        PlannedCall(
                            step=step,
                            api="s3",
                            operation="PutObject",
                            params={"from": str(job.resume_dir), "to": f"{settings.storage_prefix}/{job.job_id}/"},
                        )
                    )
                params: dict[str, Any] = {
                    "execution_type": profile,
                    "timeout": timeout,
                    "script": job.script,
                    "args": job.args,
                    "run_name": f"runctl {job.job_id}",
                    "labels": ["runctl", f"runctl:job={job.job_id}"],
                    "checkpoint_dir": f"{settings.storage_mount}/{settings.storage_prefix}/{job.job_id} (mirrored)",
                }
                if image:
                    calls.append(
                        PlannedCall(
                            step=step,
                            api=api,
                            operation="POST /execution/image/start",
                            params={"docker_image_ref": image, **params},
                            paid=True,
                        )
                    )
                else:
                    calls.append(
                        PlannedCall(
                            step=step,
                            api=api,
                            operation="POST /execution/streaming/start",
                            params={"file_name": BOOTSTRAP_NAME, "import_files": "<project files>", **params},
                            paid=True,
                        )
                    )
            elif step == "wait":
                calls.append(PlannedCall(step=step, api=api, operation="GET /execution/streaming/{id}/status"))
                calls.append(PlannedCall(step=step, api=api, operation="POST {streaming_url} (server-sent events)"))
            elif step == "collect":
                calls.append(PlannedCall(step=step, api=api, operation="POST /storage/credentials"))
                calls.append(
                    PlannedCall(
                        step=step,
                        api="s3",
                        operation="ListObjectsV2 + GetObject",
                        params={"prefix": f"{settings.storage_prefix}/{job.job_id if job else '<job>'}/"},
                    )
                )
            elif step == "terminate":
                calls.append(
                    PlannedCall(
                        step=step,
                        api=api,
                        operation="POST /workloads/abort/{id}",
                        params={"then_if_refused": "POST /workloads/stop/{id}"},
                    )
                )
            else:
                calls.append(PlannedCall(step=step, api=api, operation=step))
        return calls


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")


__all__ = ["LyceumProvider", "map_status"]

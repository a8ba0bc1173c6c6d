"""Reservations (runctl's "instances" on Lyceum): create, list, terminate, and the per-call context every hook
uses. A reservation is a local record of a validated hardware profile; it costs nothing. Terminating one ends
every execution still running under it (``POST /workloads/abort/{id}``, then ``/workloads/stop/{id}`` when Lyceum
refuses the abort)."""

from __future__ import annotations

from datetime import datetime, timezone

from runctl_core.errors import (
    CapabilityError,
    CredentialsError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
    UsageError,
)
from runctl_core.models import Instance, InstanceSpec, InstanceState, ProviderContext
from runctl_core.remote.records import runctl_tags
from runctl_core.timestamps import parse_time
from runctl_lyceum import offers
from runctl_lyceum.auth import KEY_HINT, TokenSource, find_credentials
from runctl_lyceum.client import LyceumClient, StorageClient
from runctl_lyceum.models import Reservation
from runctl_lyceum.offers import NAME, gpu_of
from runctl_lyceum.settings import LyceumSettings
from runctl_lyceum.store import Store

PENDING_STATES = {"pending", "queued", "starting", "scheduled", "provisioning", "initializing"}
CANCELLED_STATES = {"cancelled", "canceled", "aborted"}
SYSTEM_FAILURES = {"failed_system", "system_failure"}
USER_FAILURES = {"failed_user", "failed"}
ENDED_STATES = CANCELLED_STATES | SYSTEM_FAILURES | USER_FAILURES | {"completed", "timeout"}


def now() -> datetime:
    return datetime.now(timezone.utc)


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
            token = TokenSource(self.credentials, s.resolved_base_url()) if self.credentials.path else None
            self._client = LyceumClient(
                s.resolved_base_url(),
                self.credentials.api_key,
                org=self.credentials.org,
                timeout=s.http_timeout,
                retries=s.http_retries,
                base_delay=s.retry_base_delay,
                token=token,
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
        created_at=parse_time(rec.created_at),
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


def create(c: Context, spec: InstanceSpec) -> Instance:
    c.require_key()
    if spec.spot:
        raise CapabilityError("Lyceum has no spot market: executions are billed per second at one price", "drop --spot")
    machine = offers.resolve_profile(c, spec)
    allowed = c.client.available_hardware()
    if allowed and machine.hardware_profile not in allowed:
        raise QuotaError(
            f"your Lyceum account has no access to {machine.hardware_profile}",
            f"profiles you can use: {', '.join(allowed)}; ask Lyceum for access",
        )
    price = machine.price_per_hour
    if spec.max_price is not None and price is not None and price > spec.max_price:
        raise UsageError(
            f"{machine.hardware_profile} costs ${price:.2f}/h, above --max-price ${spec.max_price:.2f}",
            "raise --max-price or pick a cheaper profile",
        )
    if spec.region:
        c.ctx.warn("Lyceum chooses where executions run; --region is ignored")
    if spec.disk_gb:
        c.ctx.warn("Lyceum executions have a fixed disk; --disk-gb is ignored (use Lyceum storage for data)")
    created = now()
    tags = runctl_tags(spec, created)  # the core's tags, one precedence for every provider
    rec = Reservation(
        id=c.store.new_id(),
        hardware_profile=machine.hardware_profile,
        hourly_price=price,
        created_at=created.isoformat(),
        tags=tags,
        max_runtime=spec.max_runtime,
        image=spec.image,
    )
    c.store.save(rec)
    return to_instance(rec)


def list_instances(c: Context) -> list[Instance]:
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
            created_at=parse_time(workload.created_at),
            details={"kind": "orphan", "executions": {tags.get("runctl:job", "?"): workload.execution_id}},
            message="executions at Lyceum labelled by runctl with no open reservation here",
        )
    return found + list(orphans.values())


def _labelled_executions(c: Context, instance_id: str) -> list[str]:
    if c.credentials.api_key is None:
        return []
    return [
        w.execution_id
        for w in c.client.workloads()
        if w.runctl_tags().get("runctl:instance") == instance_id and (w.status or "running").lower() not in ENDED_STATES
    ]


def end_execution(c: Context, execution_id: str) -> None:
    """Abort (hard stop); if Lyceum refuses the abort (a 400, or another refusal), stop it gracefully instead.

    Lyceum's CLI aborts with ``POST /workloads/abort/{id}`` (lyceum-cli 1.2.2, execution/jobs.py ``abort``) and
    stops with ``POST /workloads/stop/{id}``, accepting 404 as "already gone" (execution/notebook.py ``stop``).
    A NotFoundError (gone already) propagates for the caller to accept."""
    try:
        c.client.abort(execution_id)
    except (NotFoundError, TransientError, CredentialsError):
        raise
    except (UsageError, ProviderError) as exc:
        c.ctx.warn(f"Lyceum refused to abort execution {execution_id} ({exc.message}); stopping it instead")
        c.client.stop(execution_id)


def terminate(c: Context, instance: Instance) -> Instance:
    rec = c.store.load(instance.id)
    targets: list[str] = []
    if rec is not None:
        targets = [ref.execution_id for ref in rec.executions.values() if ref.final is None]
    targets += [e for e in _labelled_executions(c, instance.id) if e not in targets]
    for execution_id in targets:
        try:
            end_execution(c, execution_id)
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

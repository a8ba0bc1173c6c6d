"""A pod's life through RunPod's API: choosing where to create it, creating it (by the failure table of
``createPod``), reading its state, terminating it, listing what runctl made. No SSH here."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from runctl_core.errors import CapabilityError, CapacityError, SpotRefused, TransientError, UsageError
from runctl_core.models import Instance, InstanceSpec, InstanceState, ProviderContext
from runctl_core.retry import RetryPolicy
from runctl_core.timestamps import parse_time
from runctl_runpod.client import CandidateRefused, RunpodApi, make_client
from runctl_runpod.models import DeployRequest, Pod
from runctl_runpod.offers import Candidate, candidates, clouds_for, resolve, split_instance_type, times
from runctl_runpod.settings import PROVIDER, RunpodSettings

INIT_SCRIPT = Path(__file__).with_name("scripts") / "init_sshd.sh"
REGIONS = {"NORTH_AMERICA", "SOUTH_AMERICA", "EUROPE", "ASIA", "OCEANIA", "AFRICA", "MIDDLE_EAST"}
STATES = {
    "PROVISIONING": (InstanceState.PENDING, "provisioning"),
    "STARTING": (InstanceState.PENDING, "starting the container"),
    "RUNNING": (InstanceState.RUNNING, ""),
    "EXITED": (InstanceState.STOPPED, "pod exited"),
    "ERROR": (InstanceState.STOPPED, "pod in error"),
    "TERMINATED": (InstanceState.TERMINATED, "terminated"),
}


def settings(ctx: ProviderContext) -> RunpodSettings:
    return RunpodSettings.model_validate(ctx.settings)


def client(ctx: ProviderContext) -> RunpodApi:
    return make_client(settings(ctx))


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class PodRecord:
    """What runctl keeps locally about a pod it created (no secrets; the key file's path, not the key)."""

    pod_id: str
    key_path: str
    spot: bool = False
    gpu_type_id: str = ""
    gpu_count: int = 1
    cloud_type: str = "SECURE"
    host_key: str | None = None
    base: str | None = None  # the absolute remote_dir on the pod, once resolved
    ssh: list[Any] = field(default_factory=list)  # [host, port] last seen
    ends_at: str | None = None  # max_runtime: when the pod must have ended itself (ISO time)
    watchdog: bool = False  # the timer that ends it runs on the pod

    @staticmethod
    def path(state_dir: Path, pod_id: str) -> Path:
        return state_dir / "pods" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', pod_id)}.json"

    @classmethod
    def load(cls, state_dir: Path, pod_id: str) -> PodRecord | None:
        try:
            data = json.loads(cls.path(state_dir, pod_id).read_text())
        except (OSError, ValueError):
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, state_dir: Path) -> None:
        target = self.path(state_dir, self.pod_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, target)


def pod_state(pod: Pod | None) -> tuple[InstanceState, str]:
    if pod is None:
        return InstanceState.TERMINATED, "the pod no longer exists"
    return STATES.get(pod.status, (InstanceState.UNKNOWN, f"status {pod.status}"))


def tags_from_env(env: dict[str, str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    try:
        extra = json.loads(env.get("RUNCTL_TAGS", "{}"))
        if isinstance(extra, dict):
            tags.update({str(k): str(v) for k, v in extra.items()})
    except ValueError:
        pass
    for key, tag in (
        ("RUNCTL_JOB_ID", "runctl:job"),
        ("RUNCTL_OWNER", "runctl:owner"),
        ("RUNCTL_INTENT", "runctl:intent"),
        ("RUNCTL_CREATED", "runctl:created"),
    ):
        if env.get(key):
            tags[tag] = env[key]
    return tags


def instance_from_pod(pod: Pod, record: PodRecord | None, base: Instance | None = None) -> Instance:
    state, message = pod_state(pod)
    spot = record.spot if record else pod.env.get("RUNCTL_SPOT") == "1"
    if spot and state is InstanceState.STOPPED:
        message = "the spot pod was stopped (outbid or reclaimed by the market)"
    details: dict[str, Any] = {"name": pod.name, "image": pod.image, "status": pod.status}
    endpoint = pod.ssh_endpoint()
    if endpoint:
        details["ssh"] = f"{endpoint[0]}:{endpoint[1]}"
    if record:
        details.update({"gpu_type_id": record.gpu_type_id, "cloud_type": record.cloud_type, "ssh_key": record.key_path})
    update: dict[str, Any] = {
        "state": state,
        "message": message,
        "details": {**(base.details if base else {}), **details},
    }
    if pod.cost_per_hr:
        update["hourly_price"] = pod.cost_per_hr
    if base is not None:
        return base.model_copy(update=update)
    return Instance(
        id=pod.id,
        provider=PROVIDER,
        gpu=pod.gpu_name,
        gpu_count=pod.gpu_count,
        spot=spot,
        instance_type=f"{record.cloud_type.lower()}:{record.gpu_type_id}" if record else None,
        created_at=parse_time(pod.env.get("RUNCTL_CREATED")),
        tags=tags_from_env(pod.env),
        **update,
    )


# ------------------------------------------------------------------------------------------- requests


def gpu_name(spec: InstanceSpec) -> tuple[str | None, str]:
    """(forced cloud, GPU name) of the request."""
    if spec.instance_type:
        return split_instance_type(spec.instance_type)
    if spec.gpu:
        return None, spec.gpu
    raise UsageError(
        "RunPod rents GPU pods: say which GPU",
        'pass --gpu (e.g. --gpu "RTX 4090"); `runctl --provider runpod price` lists them',
    )


def placement(s: RunpodSettings, spec: InstanceSpec) -> str | None:
    return spec.region or s.data_center_id


def deploy_request(
    s: RunpodSettings, spec: InstanceSpec, gpu_id: str, cloud: str, public_key: str, data_center_ids: list[str]
) -> DeployRequest:
    """The one builder of what is sent to create a pod: ``create`` and the dry run both use it."""
    image = spec.image or s.image
    env = {
        "PUBLIC_KEY": public_key,
        "RUNCTL_JOB_ID": spec.job_id or "",
        "RUNCTL_OWNER": spec.owner,
        "RUNCTL_INTENT": spec.intent_id,
        "RUNCTL_CREATED": now().isoformat(timespec="seconds"),
    }
    extra = {k: v for k, v in spec.tags.items() if not k.startswith("runctl:")}
    if extra:
        env["RUNCTL_TAGS"] = json.dumps(extra, sort_keys=True)
    ports = [p.strip() for p in s.ports.split(",") if p.strip()]
    if "22/tcp" not in ports:
        ports.append("22/tcp")
    docker_args = ""
    if s.ssh_init == "always" or (s.ssh_init == "auto" and not image.startswith("runpod/")):
        encoded = base64.b64encode(INIT_SCRIPT.read_bytes()).decode()
        docker_args = f"bash -c 'echo {encoded} | base64 -d | sh'"
    return DeployRequest(
        name=f"{s.name_prefix}{spec.job_id or spec.intent_id}",
        image=image,
        gpu_type_id=gpu_id,
        gpu_count=spec.gpu_count,
        cloud_type="SECURE" if cloud == "ALL" else cloud,
        container_disk_gb=s.container_disk_gb,
        volume_gb=spec.disk_gb or s.volume_gb,
        volume_mount_path=s.volume_mount_path,
        ports=ports,
        env=env,
        docker_args=docker_args,
        min_vcpu_count=s.min_vcpu_count,
        min_memory_gb=s.min_memory_gb,
        data_center_ids=data_center_ids,
        allowed_cuda_versions=s.allowed_cuda_versions,
    )


def data_center_ids(api: RunpodApi, where: str | None) -> list[str]:
    """``--region``: a data centre id (``US-KS-2``) or a region (``EUROPE``: its data centres, from the API)."""
    if not where:
        return []
    if where.upper() in REGIONS:
        found = api.data_centers([where.upper()])
        if not found:
            raise UsageError(f"RunPod lists no data centre in {where}", "pick another --region")
        return found
    return [where]


# ------------------------------------------------------------------------------------------- create


def find_by_intent(api: RunpodApi, intent_id: str) -> Pod | None:
    for pod in api.list_pods():
        if pod.env.get("RUNCTL_INTENT") == intent_id and pod.status != "TERMINATED":
            return pod
    return None


def create(ctx: ProviderContext, spec: InstanceSpec, public_key: str, key_path: Path) -> Instance:
    s = settings(ctx)
    api = client(ctx)
    existing = find_by_intent(api, spec.intent_id)
    if existing is not None:  # this intent already created a pod (a retried create): reuse it
        return instance_from_pod(existing, PodRecord.load(ctx.state_dir, existing.id))
    if spec.spot and api.spot_reason:
        raise CapabilityError(f"cannot rent a spot pod: {api.spot_reason}", "drop --spot")
    forced, name = gpu_name(spec)
    wanted = resolve(api, name)
    if len(wanted) > 1:
        names = ", ".join(g.display_name or g.id for g in wanted)
        ctx.report(f"{name!r} matches {len(wanted)} RunPod GPUs ({names}); the cheapest in stock is tried first")
    request = deploy_request(s, spec, "", forced or s.cloud_type, public_key, data_center_ids(api, placement(s, spec)))
    priced = api.gpu_prices([g.id for g in wanted], request.stock_filter())
    clouds = clouds_for(s, forced)
    count = spec.gpu_count
    pod: Pod | None = None
    chosen: Candidate | None = None
    if spec.spot:
        bid = s.spot_bid or (spec.max_price / count if spec.max_price else None)
        offered = candidates(priced, clouds, True, count)
        usable = [c for c in offered if bid is None or (c.spot or 0) <= bid]
        request.env["RUNCTL_SPOT"] = "1"
        try:
            if not usable and offered:
                cheapest_bid = min(c.spot or 0 for c in offered)
                raise CapacityError(
                    f"the spot bid ${bid or 0:.3f}/GPU/h is below RunPod's minimum ${cheapest_bid:.3f} for {name}"
                )
            if not usable:
                raise CapacityError(f"RunPod shows no spot {name} in stock")
            pod, chosen = place(ctx, api, request, usable, spec, bid, spot=True)
        except (CapacityError, CapabilityError) as refusal:  # the core applies --on-demand-fallback
            cheapest = next(iter(candidates(priced, clouds, False, count)), None)
            spot_bid = bid or (usable[0].spot if usable else None)
            raise SpotRefused(
                f"spot unavailable on RunPod: {refusal.message}",
                "RunPod may no longer offer spot (interruptible) pods; use --on-demand, or --on-demand-fallback always",
                spot_price=times(spot_bid, count),
                on_demand_price=times(cheapest.on_demand, count) if cheapest else None,
            ) from None
    if pod is None:
        offered = candidates(priced, clouds, False, count)
        if not offered:
            where = f" in {', '.join(request.data_center_ids)}" if request.data_center_ids else ""
            raise CapacityError(
                f"RunPod has no {count} x {name} in stock ({' then '.join(clouds).lower()} cloud{where})",
                "try another GPU, cloud_type (or community_fallback = true), region, or later",
            )
        affordable = [c for c in offered if not spec.max_price or (c.on_demand or 0) * count <= spec.max_price]
        if not affordable:
            c = offered[0]
            raise CapacityError(
                f"{count} x {c.gpu.display_name} costs ${(c.on_demand or 0) * count:.2f}/h on demand, "
                f"over --max-price ${spec.max_price:.2f}/h",
                "raise --max-price, pick another GPU",
            )
        pod, chosen = place(ctx, api, request, affordable, spec, None, spot=False)
    assert chosen is not None
    spot = request.env.get("RUNCTL_SPOT") == "1"
    record = PodRecord(
        pod_id=pod.id,
        key_path=str(key_path),
        spot=spot,
        gpu_type_id=chosen.gpu.id,
        gpu_count=count,
        cloud_type=chosen.cloud,
    )
    if spec.max_runtime:
        record.ends_at = (now() + timedelta(seconds=spec.max_runtime)).isoformat()
    record.save(ctx.state_dir)
    instance = instance_from_pod(pod, record)
    price = (pod.cost_per_hr or None) or times(chosen.spot if spot else chosen.on_demand, count)
    return instance.model_copy(
        update={
            "spot": spot,
            "gpu": chosen.gpu.display_name,
            "gpu_count": count,
            "hourly_price": price,
            "created_at": instance.created_at or now(),
            "tags": {**instance.tags, **tags_from_env(request.env)},
            "state": InstanceState.PENDING if instance.state is InstanceState.RUNNING else instance.state,
        }
    )


def place(
    ctx: ProviderContext,
    api: RunpodApi,
    request: DeployRequest,
    offered: list[Candidate],
    spec: InstanceSpec,
    bid: float | None,
    *,
    spot: bool,
) -> tuple[Pod, Candidate]:
    """Try the candidates in order until one is placed. The catalogue only orders them: RunPod can still refuse
    a GPU it just listed as available (400: try the next; 403: this pool is not for the account, skip it)."""
    refusals: list[CandidateRefused] = []
    for index, candidate in enumerate(offered):
        attempt = request.model_copy(update={"gpu_type_id": candidate.gpu.id, "cloud_type": candidate.cloud})
        try:
            return deploy(ctx, api, attempt, spec, (bid or candidate.spot) if spot else None), candidate
        except CandidateRefused as exc:
            refusals.append(exc)
            if index + 1 < len(offered):
                ctx.warn(
                    f"RunPod could not place {candidate.gpu.display_name} ({candidate.cloud.lower()} cloud): "
                    f"{exc.message}; trying the next candidate"
                )
    last = refusals[-1].message if refusals else "no candidate"
    hint = "try another GPU, cloud_type (or community_fallback = true), region, or later"
    if refusals and all(r.kind == "capacity" for r in refusals) and len(refusals) > 1:
        hint = (
            "every candidate was refused the same way: that may be a rule of the request rather than capacity "
            "(RunPod's createPod docs); check the image, ports, disk sizes and CUDA versions, or " + hint
        )
    raise CapacityError(f"RunPod refused all {len(offered)} candidate(s); last answer: {last}", hint)


def deploy(ctx: ProviderContext, api: RunpodApi, request: DeployRequest, spec: InstanceSpec, bid: float | None) -> Pod:
    """Create the pod on one candidate. Never retried blindly: after an unknown outcome (5xx, a lost answer,
    429), look for a pod carrying this intent first, and try again (after ``Retry-After``) only if there is none."""
    s = settings(ctx)
    policy = RetryPolicy(attempts=max(2, s.retries), base_delay=s.retry_base_delay, max_delay=8.0, budget=60.0)
    for attempt in range(1, policy.attempts + 1):
        try:
            return api.create_pod(request, bid)
        except TransientError as exc:
            found = find_by_intent(api, spec.intent_id)
            if found is not None:
                return found
            if attempt == policy.attempts:
                raise
            delay = policy.delay(attempt, exc.retry_after)
            ctx.report(f"RunPod did not create the pod ({exc.message}); none was made, trying again in {delay:.1f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------------------------------- the rest of a life


def terminate(ctx: ProviderContext, instance: Instance) -> Instance:
    client(ctx).terminate_pod(instance.id)  # idempotent: already gone is success
    record = PodRecord.load(ctx.state_dir, instance.id)
    if record is not None:  # the per-pod key is useless now: remove it
        Path(record.key_path).unlink(missing_ok=True)
    details = {**instance.details, "status": "TERMINATED"}
    return instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "terminated", "details": details})


def list_instances(ctx: ProviderContext) -> list[Instance]:
    prefix = settings(ctx).name_prefix
    return [
        instance_from_pod(pod, PodRecord.load(ctx.state_dir, pod.id))
        for pod in client(ctx).list_pods()
        if pod.name.startswith(prefix) and "RUNCTL_OWNER" in pod.env
    ]  # never pods runctl did not create

"""Hook implementations of the RunPod provider.

Pods are created, watched and terminated through :mod:`runctl_runpod.client` (RunPod's API, nothing else);
code, jobs, logs and checkpoints move over SSH/SFTP (:mod:`runctl_runpod.ssh`) with a key pair runctl makes
for each pod. Jobs run under runctl's job runner (``runctl_core/remote/runner.py``), uploaded to the pod.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import shlex
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core.errors import (
    AuthError,
    CapacityError,
    CredentialsError,
    NotFoundError,
    ProviderError,
    QuotaError,
    RunctlError,
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
from runctl_core.retry import RetryPolicy
from runctl_runpod.client import KEY_HINT, RunpodApi, deploy_input, make_client
from runctl_runpod.models import API_KEY_ENV, DeployRequest, GpuType, LowestPrice, Pod, RunpodSettings
from runctl_runpod.ssh import PodSsh, SshTarget, SshUnavailable, generate_key_pair

PROVIDER = "runpod"
LOG_CHUNK = 1 << 20
MANIFEST = ".runctl-manifest.json"
INIT_SCRIPT = Path(__file__).with_name("scripts") / "init_sshd.sh"
CLOUDS = ("SECURE", "COMMUNITY", "ALL")
STOCK = {"high": "high", "medium": "medium", "low": "low", "none": "none"}


# ------------------------------------------------------------------------------------------- helpers


def _settings(ctx: ProviderContext) -> RunpodSettings:
    return RunpodSettings.model_validate(ctx.settings)


def _client(ctx: ProviderContext) -> RunpodApi:
    s = _settings(ctx)
    retry = RetryPolicy(attempts=s.retries, base_delay=s.retry_base_delay, max_delay=8.0, budget=60.0)
    return make_client(s.api_url, s.request_timeout, retry)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _tokens(text: str) -> set[str]:
    return set(_norm(text).split()) - {"nvidia", "geforce"}


def match_gpus(name: str, catalogue: list[GpuType]) -> list[GpuType]:
    """GPU types a friendly name means: an exact id/display name wins; otherwise every type whose name
    contains all the words (``A100`` -> A100 PCIe, A100 SXM; ``RTX 4090`` -> RTX 4090)."""
    wanted = _norm(name)
    exact = [g for g in catalogue if wanted in (_norm(g.id), _norm(g.display_name))]
    if exact:
        return exact
    words = _tokens(name)
    if not words:
        return []
    return [g for g in catalogue if words <= (_tokens(g.display_name) | _tokens(g.id))]


def split_instance_type(value: str) -> tuple[str | None, str]:
    """``community:NVIDIA GeForce RTX 4090`` -> ("COMMUNITY", "NVIDIA GeForce RTX 4090")."""
    head, sep, tail = value.partition(":")
    if sep and head.upper() in CLOUDS:
        return head.upper(), tail.strip()
    return None, value.strip()


def _lowest(gpu: GpuType, cloud: str) -> tuple[float | None, float | None, str]:
    """(on-demand, spot, stock) per GPU for one cloud; ALL takes the cheaper of the two."""
    if cloud == "ALL":
        options = [_lowest(gpu, c) for c in ("SECURE", "COMMUNITY")]
        priced = [o for o in options if o[0] is not None] or options
        return min(priced, key=lambda o: o[0] if o[0] is not None else float("inf"))
    lp: LowestPrice | None = gpu.secure if cloud == "SECURE" else gpu.community
    flat = gpu.secure_price if cloud == "SECURE" else gpu.community_price
    flat_spot = gpu.secure_spot_price if cloud == "SECURE" else gpu.community_spot_price
    on_demand = (lp.uninterruptable_price if lp else None) or flat or None
    spot = (lp.minimum_bid_price if lp else None) or flat_spot or None
    stock = STOCK.get(((lp.stock_status if lp else None) or "").lower(), "unknown")
    if stock == "unknown" and lp is not None and on_demand is None:
        stock = "none"
    return on_demand, spot, stock


def _times(value: float | None, count: int) -> float | None:
    return None if value is None else round(value * count, 4)


# ------------------------------------------------------------------------------------------- pod records


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

    @staticmethod
    def path(state_dir: Path, pod_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", pod_id)
        return state_dir / "pods" / f"{safe}.json"

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


# ------------------------------------------------------------------------------------------- pods -> runctl


def _pod_state(pod: Pod | None) -> tuple[InstanceState, str]:
    if pod is None:
        return InstanceState.TERMINATED, "the pod no longer exists"
    status = (pod.desired_status or "").upper()
    if status == "RUNNING":
        if pod.runtime is None:
            return InstanceState.PENDING, "starting the container"
        return InstanceState.RUNNING, ""
    if status in ("CREATED", "RESTARTING"):
        return InstanceState.PENDING, status.lower()
    if status in ("EXITED", "PAUSED"):
        return InstanceState.STOPPED, f"pod {status.lower()}"
    if status == "DEAD":
        return InstanceState.STOPPED, "pod dead"
    if status == "TERMINATED":
        return InstanceState.TERMINATED, "terminated"
    return InstanceState.UNKNOWN, f"desiredStatus {pod.desired_status}"


def _tags_from_env(env: dict[str, str]) -> dict[str, str]:
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


def _instance_from_pod(pod: Pod, record: PodRecord | None, base: Instance | None = None) -> Instance:
    state, message = _pod_state(pod)
    env = pod.env_dict()
    spot = record.spot if record else env.get("RUNCTL_SPOT") == "1"
    if spot and state is InstanceState.STOPPED:
        message = "the spot pod was stopped (outbid or reclaimed by the market)"
    details: dict[str, Any] = {"name": pod.name, "image": pod.image_name, "desired_status": pod.desired_status}
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
        gpu=(pod.machine.gpu_display_name if pod.machine else None),
        gpu_count=pod.gpu_count or 0,
        spot=spot,
        instance_type=f"{record.cloud_type.lower()}:{record.gpu_type_id}" if record else None,
        created_at=_parse_time(env.get("RUNCTL_CREATED")),
        tags=_tags_from_env(env),
        **update,
    )


def _job_status(job_id: str, record: dict[str, Any], previous: JobStatus | None = None) -> JobStatus:
    state = record.get("state", "lost")
    if state == "lost" and str(record.get("message", "")).startswith("no job record") and previous is not None:
        # the launcher has not written the record yet: still pending
        return previous
    return JobStatus(
        job_id=job_id,
        state=JobState(state) if state in JobState._value2member_map_ else JobState.LOST,
        exit_code=record.get("exit_code"),
        started_at=_parse_time(record.get("started_at")),
        ended_at=_parse_time(record.get("ended_at")),
        message=str(record.get("message", "")),
    )


# ------------------------------------------------------------------------------------------- the provider


class RunpodProvider:
    """RunPod GPU pods: GraphQL for the pod's life, SSH for code, jobs, logs and checkpoints."""

    # ----------------------------------------------------------------------------- declarations

    @hookimpl
    def settings_schema(self) -> type[RunpodSettings]:
        return RunpodSettings

    @hookimpl
    def capabilities(self, ctx: ProviderContext) -> Capabilities:
        s = _settings(ctx)
        return Capabilities(
            spot=Capability(
                supported=True,
                reason="spot pods (podRentInterruptable) may be refused: RunPod dropped them from its docs in 2026",
            ),
            stop=Capability(
                supported=False, reason="runctl terminates RunPod pods; a stopped pod still bills its volume"
            ),
            max_runtime=Capability(
                supported=False,
                reason="a RunPod pod cannot end itself reliably; runctl terminates it (use --timeout for the job)",
            ),
            poll_interval=s.poll_interval,
            ready_timeout=s.ready_timeout,
        )

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        if not os.environ.get(API_KEY_ENV):
            return CredentialStatus(found=False, message=f"{API_KEY_ENV} is not set", hint=KEY_HINT)
        source = f"environment {API_KEY_ENV}"
        if not probe:
            return CredentialStatus(found=True, source=source)
        try:
            identity = _client(ctx).identity()
        except AuthError as exc:
            return CredentialStatus(found=True, accepted=False, source=source, message=exc.message, hint=KEY_HINT)
        return CredentialStatus(
            found=True, accepted=True, source=source, message="accepted by the RunPod API", identity=identity
        )

    # ----------------------------------------------------------------------------- prices

    def _resolve(self, api: RunpodApi, name: str) -> list[GpuType]:
        catalogue = api.gpu_types()
        found = match_gpus(name, catalogue)
        if not found:
            known = ", ".join(sorted({g.display_name or g.id for g in catalogue})[:40])
            raise UsageError(f"RunPod has no GPU called {name!r}", f"known GPUs: {known}")
        return found

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        if not os.environ.get(API_KEY_ENV):
            raise CredentialsError(f"RunPod's prices need an API key: {API_KEY_ENV} is not set", KEY_HINT)
        api = _client(ctx)
        count = query.gpu_count or 1
        clouds: tuple[str, ...] = ("SECURE", "COMMUNITY")
        if query.instance_type:
            cloud, name = split_instance_type(query.instance_type)
            if cloud and cloud != "ALL":
                clouds = (cloud,)
        else:
            name = query.gpu or ""
        try:
            candidates = self._resolve(api, name) if name else api.gpu_types()
        except UsageError:
            return []
        offers: list[Offer] = []
        for gpu in api.gpu_prices([g.id for g in candidates], count):
            if gpu.max_gpu_count is not None and count > gpu.max_gpu_count:
                continue
            for cloud in clouds:
                on_demand, spot, stock = _lowest(gpu, cloud)
                if on_demand is None and spot is None:
                    continue
                if query.spot and spot is None:
                    continue
                offers.append(
                    Offer(
                        provider=PROVIDER,
                        instance_type=f"{cloud.lower()}:{gpu.id}",
                        gpu=gpu.display_name or gpu.id,
                        gpu_count=count,
                        on_demand_hourly=_times(on_demand, count),
                        spot_hourly=_times(spot, count),
                        availability=stock,
                        region=None,
                        source="RunPod API (gpuTypes, per GPU x count)",
                    )
                )
        return offers

    # ----------------------------------------------------------------------------- create

    def _choose_gpu(self, ctx: ProviderContext, api: RunpodApi, spec: InstanceSpec, cloud: str) -> tuple[GpuType, str]:
        if spec.instance_type:
            forced, name = split_instance_type(spec.instance_type)
            cloud = forced or cloud
        elif spec.gpu:
            name = spec.gpu
        else:
            raise UsageError(
                "RunPod rents GPU pods: say which GPU",
                'pass --gpu (e.g. --gpu "RTX 4090"); `runctl --provider runpod price` lists them',
            )
        candidates = self._resolve(api, name)
        priced = api.gpu_prices([g.id for g in candidates], spec.gpu_count)
        if not priced:
            raise CapacityError(f"RunPod returned no price for {name!r}", "try another GPU")

        def rank(gpu: GpuType) -> tuple[int, float]:
            on_demand, spot, stock = _lowest(gpu, cloud)
            value = spot if spec.spot else on_demand
            return (
                0 if stock in ("high", "medium", "low", "unknown") and value is not None else 1,
                value if value is not None else float("inf"),
            )

        chosen = min(priced, key=rank)
        if len(priced) > 1:
            ctx.report(f"{name!r} matches {len(priced)} RunPod GPUs; using {chosen.display_name} ({chosen.id})")
        return chosen, cloud

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        s = _settings(ctx)
        api = _client(ctx)  # raises CredentialsError before anything paid is requested
        existing = self._find_by_intent(api, spec.intent_id)
        if existing is not None:  # this intent already created a pod (a retried create): reuse it
            return _instance_from_pod(existing, PodRecord.load(ctx.state_dir, existing.id))
        gpu, cloud = self._choose_gpu(ctx, api, spec, s.cloud_type)
        on_demand, min_bid, _stock = _lowest(gpu, cloud)
        count = spec.gpu_count
        if gpu.max_gpu_count is not None and count > gpu.max_gpu_count:
            raise UsageError(
                f"RunPod offers at most {gpu.max_gpu_count} x {gpu.display_name} per pod", "lower --gpu-count"
            )

        key_path = ctx.state_dir / "keys" / f"{spec.intent_id}.key"
        public_key = generate_key_pair(key_path, comment=f"runctl-{spec.intent_id}")
        request = self._deploy_request(s, spec, gpu, cloud, public_key)

        pod: Pod | None = None
        spot = spec.spot
        if spec.spot:
            bid = s.spot_bid or (spec.max_price / count if spec.max_price else None) or min_bid
            refusal: RunctlError | None = None
            if bid is None:
                refusal = CapacityError(f"RunPod shows no spot price for {gpu.display_name} ({cloud.lower()} cloud)")
            elif min_bid is not None and bid < min_bid:
                refusal = CapacityError(
                    f"the spot bid ${bid:.3f}/GPU/h is below RunPod's minimum ${min_bid:.3f} for {gpu.display_name}"
                )
            else:
                request.env["RUNCTL_SPOT"] = "1"
                try:
                    pod = self._deploy(ctx, api, request, spec, bid)
                except (AuthError, QuotaError, CredentialsError):
                    raise
                except ProviderError as exc:  # capacity, or spot pods no longer offered at all
                    refusal = exc
            if pod is None:
                assert refusal is not None
                request.env.pop("RUNCTL_SPOT", None)
                self._spot_fallback(ctx, spec, refusal, bid, on_demand)
                spot = False
        if pod is None:
            if spec.max_price and on_demand is not None and on_demand * count > spec.max_price:
                raise CapacityError(
                    f"{count} x {gpu.display_name} costs ${on_demand * count:.2f}/h on demand, "
                    f"over --max-price ${spec.max_price:.2f}/h",
                    "raise --max-price, pick another GPU, or try --spot",
                )
            pod = self._deploy(ctx, api, request, spec, None)

        record = PodRecord(
            pod_id=pod.id, key_path=str(key_path), spot=spot, gpu_type_id=gpu.id, gpu_count=count, cloud_type=cloud
        )
        record.save(ctx.state_dir)
        instance = _instance_from_pod(pod, record)
        price = (pod.cost_per_hr or None) or _times(min_bid if spot else on_demand, count)
        return instance.model_copy(
            update={
                "spot": spot,
                "gpu": gpu.display_name,
                "gpu_count": count,
                "hourly_price": price,
                "created_at": instance.created_at or _now(),
                "tags": {**instance.tags, **_tags_from_env(request.env)},
                "state": InstanceState.PENDING if instance.state is InstanceState.RUNNING else instance.state,
            }
        )

    def _deploy_request(
        self, s: RunpodSettings, spec: InstanceSpec, gpu: GpuType, cloud: str, public_key: str
    ) -> DeployRequest:
        image = spec.image or s.image
        env = {
            "PUBLIC_KEY": public_key,
            "RUNCTL_JOB_ID": spec.job_id or "",
            "RUNCTL_OWNER": spec.owner,
            "RUNCTL_INTENT": spec.intent_id,
            "RUNCTL_CREATED": _now().isoformat(timespec="seconds"),
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
            gpu_type_id=gpu.id,
            gpu_count=spec.gpu_count,
            cloud_type=cloud,
            container_disk_gb=s.container_disk_gb,
            volume_gb=spec.disk_gb or s.volume_gb,
            volume_mount_path=s.volume_mount_path,
            ports=",".join(ports),
            env=env,
            docker_args=docker_args,
            min_vcpu_count=s.min_vcpu_count,
            min_memory_gb=s.min_memory_gb,
            data_center_id=spec.region or s.data_center_id,
            allowed_cuda_versions=s.allowed_cuda_versions,
        )

    def _deploy(
        self, ctx: ProviderContext, api: RunpodApi, request: DeployRequest, spec: InstanceSpec, bid: float | None
    ) -> Pod:
        """Create the pod. A creation is never retried blindly: after a transient failure, look for a pod
        carrying this intent first (the request may have gone through), and retry only if there is none."""
        for attempt in (1, 2):
            try:
                return api.deploy_spot(request, bid) if bid is not None else api.deploy_on_demand(request)
            except TransientError:
                found = self._find_by_intent(api, spec.intent_id)
                if found is not None:
                    return found
                if attempt == 2:
                    raise
                ctx.report("RunPod did not answer the creation; no pod was made, trying once more")
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_by_intent(self, api: RunpodApi, intent_id: str) -> Pod | None:
        for pod in api.list_pods():
            if pod.env_dict().get("RUNCTL_INTENT") == intent_id and (pod.desired_status or "") != "TERMINATED":
                return pod
        return None

    def _spot_fallback(
        self, ctx: ProviderContext, spec: InstanceSpec, refusal: RunctlError, bid: float | None, on_demand: float | None
    ) -> None:
        count = spec.gpu_count
        reason = refusal.message
        if spec.on_demand_fallback == "never":
            raise CapacityError(
                f"spot unavailable on RunPod: {reason}",
                "RunPod may no longer offer spot (interruptible) pods; use --on-demand, or --on-demand-fallback always",
            )
        spot_text = f"${bid * count:.2f}/h" if bid else "n/a"
        od_text = f"${on_demand * count:.2f}/h" if on_demand else "unknown"
        ratio = f" ({on_demand / bid:.1f}x the spot bid)" if bid and on_demand else ""
        question = f"spot unavailable ({reason}); on-demand costs {od_text} instead of {spot_text}{ratio}. Use it?"
        if spec.on_demand_fallback == "ask" and not ctx.confirm(question):
            raise CapacityError(f"spot unavailable on RunPod: {reason}", "rerun with --on-demand")
        ctx.warn(f"spot unavailable ({reason}); falling back to on-demand at {od_text} (spot {spot_text}){ratio}")

    # ----------------------------------------------------------------------------- SSH plumbing

    def _record(self, ctx: ProviderContext, instance: Instance) -> PodRecord:
        record = PodRecord.load(ctx.state_dir, instance.id)
        if record is None:
            key = instance.details.get("ssh_key") or ""
            if not key:
                raise ProviderError(
                    f"runctl has no SSH key for pod {instance.id}",
                    "only pods runctl created in this RUNCTL_HOME can be reached; terminate it with "
                    f"`runctl --provider runpod terminate {instance.id}`",
                )
            record = PodRecord(pod_id=instance.id, key_path=str(key), spot=instance.spot)
        return record

    def _ssh(self, ctx: ProviderContext, record: PodRecord, endpoint: tuple[str, int]) -> PodSsh:
        s = _settings(ctx)
        if list(endpoint) != record.ssh:
            record.ssh = list(endpoint)
            record.save(ctx.state_dir)

        def pin(host_key: str) -> None:
            record.host_key = host_key
            record.save(ctx.state_dir)

        target = SshTarget(endpoint[0], endpoint[1], s.ssh_user, Path(record.key_path), record.host_key)
        return PodSsh(target, connect_timeout=s.ssh_connect_timeout, on_host_key=pin)

    def _live(self, ctx: ProviderContext, instance: Instance) -> tuple[Pod, PodRecord, PodSsh]:
        """The pod (which must be running with SSH mapped), its record and an SSH handle; else NotFoundError."""
        pod = _client(ctx).get_pod(instance.id)
        state, message = _pod_state(pod)
        if pod is None or state is not InstanceState.RUNNING:
            raise NotFoundError(
                f"pod {instance.id} is not running ({message})",
                "create a new one (`runctl create`) or check `runctl status`",
            )
        endpoint = pod.ssh_endpoint()
        if endpoint is None:
            raise ProviderError(
                f"pod {instance.id} exposes no public SSH port",
                "the pod needs ports including 22/tcp and a public IP (supportPublicIp)",
            )
        record = self._record(ctx, instance)
        return pod, record, self._ssh(ctx, record, endpoint)

    def _cached_ssh(self, ctx: ProviderContext, instance: Instance) -> tuple[PodRecord, PodSsh] | None:
        """SSH to the pod at its last known address without asking the API; None if never seen."""
        record = PodRecord.load(ctx.state_dir, instance.id)
        if record is None or len(record.ssh) != 2:
            return None
        return record, self._ssh(ctx, record, (str(record.ssh[0]), int(record.ssh[1])))

    def _base(self, ctx: ProviderContext, record: PodRecord, ssh: PodSsh) -> str:
        if record.base:
            return record.base
        remote = _settings(ctx).remote_dir
        result = ssh.run(f"mkdir -p {shlex.quote(remote)} && cd {shlex.quote(remote)} && pwd", timeout=60)
        base = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.exit_status != 0 or not base.startswith("/"):
            raise ProviderError(
                f"could not create {remote} on the pod: {result.stderr.strip()[-300:]}",
                "check the remote_dir setting of [providers.runpod]",
            )
        record.base = base
        record.save(ctx.state_dir)
        return base

    def _runner_cmd(self, ctx: ProviderContext, base: str, *args: str) -> str:
        python = _settings(ctx).python
        return " ".join(shlex.quote(a) for a in (python, posixpath.join(base, "runner.py"), *args))

    def _job_record(self, ctx: ProviderContext, ssh: PodSsh, base: str, job_id: str) -> dict[str, Any]:
        job_dir = posixpath.join(base, "jobs", job_id)
        result = ssh.run(self._runner_cmd(ctx, base, "status", "--job-dir", job_dir), timeout=60)
        if result.exit_status != 0:  # e.g. the container was stopped under the command: worth another look
            raise SshUnavailable(
                f"the job runner on the pod failed (exit {result.exit_status}): {result.stderr.strip()[-300:]}"
            )
        try:
            record: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ProviderError(f"the job runner on the pod printed no status: {result.stdout[-200:]!r}") from None
        return record

    # ----------------------------------------------------------------------------- lifecycle

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        pod = _client(ctx).get_pod(instance.id)
        if pod is None:
            return instance.model_copy(
                update={"state": InstanceState.TERMINATED, "message": "the pod no longer exists"}
            )
        record = PodRecord.load(ctx.state_dir, instance.id)
        current = _instance_from_pod(pod, record, instance)
        if current.state is not InstanceState.RUNNING:
            return current
        endpoint = pod.ssh_endpoint()
        if endpoint is None:
            return current.model_copy(
                update={"state": InstanceState.PENDING, "message": "waiting for the pod's public SSH port"}
            )
        try:
            ssh = self._ssh(ctx, self._record(ctx, instance), endpoint)
            result = ssh.run("true", timeout=30)
        except SshUnavailable as exc:
            return current.model_copy(
                update={"state": InstanceState.PENDING, "message": f"waiting for SSH: {exc.message}"}
            )
        if result.exit_status != 0:
            return current.model_copy(update={"state": InstanceState.PENDING, "message": "SSH answers, shell fails"})
        return current

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        pod = _client(ctx).get_pod(instance.id)
        record = PodRecord.load(ctx.state_dir, instance.id)
        if pod is None:
            current = instance.model_copy(
                update={"state": InstanceState.TERMINATED, "message": "the pod no longer exists"}
            )
        else:
            current = _instance_from_pod(pod, record, instance)
        if job is None:
            return StatusReport(instance=current)
        spot = record.spot if record else instance.spot
        if current.state is InstanceState.RUNNING and pod is not None and pod.ssh_endpoint():
            endpoint = pod.ssh_endpoint()
            assert endpoint is not None
            try:
                rec = self._record(ctx, instance)
                ssh = self._ssh(ctx, rec, endpoint)
                return StatusReport(
                    instance=current,
                    job=_job_status(job.job_id, self._job_record(ctx, ssh, self._base(ctx, rec, ssh), job.job_id), job),
                )
            except SshUnavailable as exc:
                return StatusReport(instance=current, job=job.model_copy(update={"message": exc.message}))
        if job.state.terminal:
            return StatusReport(instance=current, job=job)
        if spot and current.state is InstanceState.STOPPED:
            new = job.model_copy(
                update={
                    "state": JobState.INTERRUPTED,
                    "ended_at": _now(),
                    "message": "the spot pod was stopped by the market (preempted)",
                }
            )
        elif current.state in (InstanceState.TERMINATED, InstanceState.STOPPED):
            new = job.model_copy(
                update={
                    "state": JobState.LOST,
                    "ended_at": _now(),
                    "message": f"the pod is {current.state.value}: {current.message}",
                }
            )
        else:
            new = job
        return StatusReport(instance=current, job=new)

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        _client(ctx).terminate_pod(instance.id)  # idempotent: "pod not found to terminate" is success
        cached = self._cached_ssh(ctx, instance)
        if cached is not None:
            cached[1].close()
        record = PodRecord.load(ctx.state_dir, instance.id)
        if record is not None:  # the per-pod key is useless now: remove it
            Path(record.key_path).unlink(missing_ok=True)
        details = {**instance.details, "desired_status": "TERMINATED"}
        return instance.model_copy(
            update={"state": InstanceState.TERMINATED, "message": "terminated", "details": details}
        )

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        prefix = _settings(ctx).name_prefix
        found = []
        for pod in _client(ctx).list_pods():
            env = pod.env_dict()
            if not (pod.name or "").startswith(prefix) or "RUNCTL_OWNER" not in env:
                continue  # never report pods runctl did not create
            found.append(_instance_from_pod(pod, PodRecord.load(ctx.state_dir, pod.id)))
        return found

    # ----------------------------------------------------------------------------- code and jobs

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        from runctl_core.files import changed_files

        _pod, record, ssh = self._live(ctx, instance)
        base = self._base(ctx, record, ssh)
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

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        from runctl_core.remote import runner_source

        s = _settings(ctx)
        _pod, record, ssh = self._live(ctx, instance)
        base = self._base(ctx, record, ssh)
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
        if job.terminate_on_exit:
            args += ["--shutdown-after", "--shutdown-cmd", 'runpodctl remove pod "$RUNPOD_POD_ID"']
        args += ["--", job.script, *job.args]
        runner = self._runner_cmd(ctx, base, *args)
        launch = "\n".join(
            [
                "#!/bin/sh",
                "# written by runctl: record the job as pending, then become its supervisor (own session)",
                f"cd {shlex.quote(project)} || exit 1",
                f"J={shlex.quote(job_dir)}",
                'printf \'{"state": "pending", "supervisor_pid": %d, "submitted_at": "%s"}\' "$$" '
                f'{shlex.quote(_now().isoformat())} > "$J/job.json.pending"',
                'ln "$J/job.json.pending" "$J/job.json" 2>/dev/null',
                'rm -f "$J/job.json.pending"',
                f"exec setsid {runner}",
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
            return _job_status(job.job_id, self._job_record(ctx, ssh, base, job.job_id), pending)
        except SshUnavailable:  # started; the pod stopped answering right after (e.g. preempted): status will tell
            return pending

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
        cached = self._cached_ssh(ctx, instance)
        try:
            if cached is None:
                _pod, record, ssh = self._live(ctx, instance)
            else:
                record, ssh = cached
            base = self._base(ctx, record, ssh)
            info = self._job_record(ctx, ssh, base, job.job_id)
        except (SshUnavailable, NotFoundError):
            pod = _client(ctx).get_pod(instance.id)
            if _pod_state(pod)[0] in (InstanceState.RUNNING, InstanceState.PENDING):
                raise
            return LogChunk(data="", offset=offset, next_offset=offset, complete=True)  # the pod and its log are gone
        size = int(info.get("log_size") or 0)
        terminal = info.get("state") in ("succeeded", "failed", "cancelled", "interrupted", "lost")
        data = b""
        if size > offset:
            data = ssh.read(posixpath.join(base, "jobs", job.job_id, "log"), offset, min(LOG_CHUNK, size - offset))
        at_end = offset + len(data) >= size
        text_bytes = data
        while text_bytes and not at_end:  # never split a UTF-8 character between chunks
            try:
                text_bytes.decode("utf-8")
                break
            except UnicodeDecodeError:
                text_bytes = text_bytes[:-1]
        next_offset = offset + len(text_bytes)
        return LogChunk(
            data=text_bytes.decode("utf-8", errors="replace"),
            offset=offset,
            next_offset=next_offset,
            complete=terminal and next_offset >= size,
        )

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        try:
            _pod, record, ssh = self._live(ctx, instance)
        except NotFoundError:
            return job
        base = self._base(ctx, record, ssh)
        job_dir = posixpath.join(base, "jobs", job.job_id)
        grace = str(_settings(ctx).grace_period)
        result = ssh.run(
            self._runner_cmd(ctx, base, "stop", "--job-dir", job_dir, "--grace", grace),
            timeout=_settings(ctx).grace_period + 60,
        )
        try:
            return _job_status(job.job_id, json.loads(result.stdout.strip().splitlines()[-1]), job)
        except (ValueError, IndexError):
            raise ProviderError(f"could not stop job {job.job_id}: {result.stderr.strip()[-300:]}") from None

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        try:
            _pod, record, ssh = self._live(ctx, instance)
        except NotFoundError:
            return []  # checkpoints lived on the pod; what `collect` brought back is known to the core
        directory = posixpath.join(self._base(ctx, record, ssh), "jobs", job.job_id, "checkpoints")
        return [
            Checkpoint(
                name=f.path,
                size=f.size,
                modified_at=datetime.fromtimestamp(f.mtime, timezone.utc),
                location=f"pod:{instance.id}:{posixpath.join(directory, f.path)}",
            )
            for f in ssh.walk(directory)
        ]

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        try:
            _pod, record, ssh = self._live(ctx, instance)
        except NotFoundError as exc:  # e.g. a preempted spot pod: report the job's state, not a failed collect
            ctx.warn(f"checkpoints of {job.job_id} could not be collected: {exc.message}")
            return Collected(directory=dest, files=[])
        directory = posixpath.join(self._base(ctx, record, ssh), "jobs", job.job_id, "checkpoints")
        files = ssh.walk(directory)
        targets = [(posixpath.join(directory, f.path), dest / f.path) for f in files]
        ssh.get_files(targets)
        return Collected(directory=dest, files=[local for _, local in targets])

    # ----------------------------------------------------------------------------- dry run

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        s = _settings(ctx)
        graphql = (s.api_url or os.environ.get("RUNPOD_API_BASE_URL") or "https://api.runpod.io").rstrip("/")
        api = f"{graphql}/graphql"
        calls: list[PlannedCall] = []
        remote = s.remote_dir
        target = request.instance_id or "<pod>"
        for step in request.steps:
            if step == "create" and request.instance is not None:
                spec = request.instance
                name = spec.instance_type or spec.gpu or "<--gpu required>"
                calls.append(
                    PlannedCall(
                        step=step, api=api, operation="gpuTypes", params={"resolve": name, "gpuCount": spec.gpu_count}
                    )
                )
                fake = GpuType(id=f"<gpuTypeId of {name!r}>", displayName=name)
                dreq = self._deploy_request(
                    s,
                    spec,
                    fake,
                    split_instance_type(name)[0] or s.cloud_type,
                    "<public key of a key pair generated for this pod>",
                )
                params = deploy_input(dreq, None)
                params["cloudType"] = str(params["cloudType"])
                if spec.spot:
                    params["bidPerGpu"] = s.spot_bid or (
                        spec.max_price / spec.gpu_count if spec.max_price else "<minimumBidPrice>"
                    )
                operation = "podRentInterruptable" if spec.spot else "podFindAndDeployOnDemand"
                calls.append(PlannedCall(step=step, api=api, operation=operation, params=params, paid=True))
            elif step == "create":
                calls.append(PlannedCall(step=step, api=api, operation="podFindAndDeployOnDemand", paid=True))
            elif step == "wait":
                calls.append(PlannedCall(step=step, api=api, operation="pod", params={"podId": target}))
                calls.append(PlannedCall(step=step, api="ssh", operation="true", params={"user": s.ssh_user}))
            elif step == "sync":
                calls.append(
                    PlannedCall(
                        step=step,
                        api="ssh/sftp",
                        operation="upload changed files",
                        params={
                            "to": f"{remote}/project",
                            "files": request.project_files,
                            "bytes": request.project_bytes,
                            "manifest": f"{remote}/{MANIFEST}",
                        },
                    )
                )
            elif step == "train" and request.job is not None:
                job = request.job
                calls.append(
                    PlannedCall(
                        step=step,
                        api="ssh",
                        operation="nohup setsid python3 runner.py supervise",
                        params={
                            "job_dir": f"{remote}/jobs/{job.job_id}",
                            "script": job.script,
                            "args": job.args,
                            "timeout": job.timeout,
                            "uv": s.use_uv,
                        },
                    )
                )
            elif step == "collect":
                calls.append(
                    PlannedCall(
                        step=step,
                        api="sftp",
                        operation="download checkpoints",
                        params={"from": f"{remote}/jobs/<job>/checkpoints"},
                    )
                )
            elif step == "terminate":
                calls.append(PlannedCall(step=step, api=api, operation="podTerminate", params={"podId": target}))
            else:
                calls.append(PlannedCall(step=step, api=api, operation=step))
        return calls

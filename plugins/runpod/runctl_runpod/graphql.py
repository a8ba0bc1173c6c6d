"""RunPod's GraphQL API (``$RUNPOD_API_BASE_URL/graphql``): deprecated by RunPod, retired in early 2027.

Selected with ``[providers.runpod] api = "graphql"``; the only API that rents spot (interruptible) pods
(``podRentInterruptable``). Errors: RunPod answers client errors with HTTP 200 and an ``errors`` array; they
are mapped onto runctl's error types by :func:`classify`. Idempotent requests are retried here on throttling
and 5xx; creations are not.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from runctl_core.errors import (
    AuthError,
    CapacityError,
    NotFoundError,
    ProviderError,
    QuotaError,
    RunctlError,
    TransientError,
    UsageError,
)
from runctl_core.retry import RetryPolicy, call_with_retries
from runctl_runpod.client import BALANCE_HINT, KEY_HINT, CandidateRefused, retry_after, transport_error
from runctl_runpod.models import DeployRequest, GpuType, Pod, Record, StockFilter

POD_FIELDS = (
    "id name desiredStatus costPerHr gpuCount imageName env machine { gpuDisplayName } "
    "runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }"
)
PRICE_FIELDS = "minimumBidPrice uninterruptablePrice stockStatus"
# desiredStatus (+ whether the container runs) in REST v2's vocabulary
STATUS = {
    "CREATED": "PROVISIONING",
    "RESTARTING": "STARTING",
    "EXITED": "EXITED",
    "PAUSED": "EXITED",
    "DEAD": "ERROR",
    "TERMINATED": "TERMINATED",
}


class Enum(str):
    """A GraphQL enum value: written bare (``SECURE``), not quoted."""


def literal(value: Any) -> str:
    """``value`` as a GraphQL input literal. Strings use JSON escapes, which GraphQL's string grammar accepts."""
    if value is None:
        return "null"
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a GraphQL literal")


def deploy_input(request: DeployRequest, bid_per_gpu: float | None = None) -> dict[str, Any]:
    """The ``input`` of podFindAndDeployOnDemand / podRentInterruptable for ``request``."""
    fields: dict[str, Any] = {
        "name": request.name,
        "imageName": request.image,
        "gpuTypeId": request.gpu_type_id,
        "gpuCount": request.gpu_count,
        "cloudType": Enum(request.cloud_type),
        "containerDiskInGb": request.container_disk_gb,
        "volumeInGb": request.volume_gb,
        "volumeMountPath": request.volume_mount_path,
        "ports": ",".join(request.ports),
        "startSsh": request.start_ssh,
        "supportPublicIp": request.support_public_ip,
        "env": [{"key": k, "value": v} for k, v in request.env.items()],
    }
    if request.docker_args:
        fields["dockerArgs"] = request.docker_args
    if request.min_vcpu_count:
        fields["minVcpuCount"] = request.min_vcpu_count
    if request.min_memory_gb:
        fields["minMemoryInGb"] = request.min_memory_gb
    if request.data_center_ids:
        fields["dataCenterId"] = request.data_center_ids[0]
    if request.allowed_cuda_versions:
        fields["allowedCudaVersions"] = request.allowed_cuda_versions
    if bid_per_gpu is not None:
        fields["bidPerGpu"] = round(bid_per_gpu, 4)
    return fields


NOT_FOUND_WORDS = ("not found", "does not exist", "no pod")
AUTH_WORDS = ("unauthorized", "unauthenticated", "api key", "forbidden", "permission")
QUOTA_WORDS = ("balance", "quota", "limit reached", "spend limit", "insufficient funds")
TRANSIENT_WORDS = ("rate limit", "too many requests", "try again later", "temporarily", "timeout", "internal server")
CAPACITY_WORDS = (
    "no instances available",
    "not enough",
    "out of stock",
    "no available",
    "insufficient capacity",
    "bid",
    "could not find any pods",
    "not available",
)


def classify(message: str, operation: str) -> RunctlError:
    """The runctl error for a message in RunPod's ``errors`` array (HTTP 200)."""
    text = message.lower()
    what = f"RunPod refused {operation}: {message}"
    if "no longer any instances available" in text:
        return CandidateRefused(what)
    if any(w in text for w in AUTH_WORDS):
        return AuthError(what, KEY_HINT)
    if any(w in text for w in NOT_FOUND_WORDS):
        return NotFoundError(what, "the pod no longer exists; `runctl resources list` shows what runctl knows")
    if any(w in text for w in QUOTA_WORDS):
        return QuotaError(what, BALANCE_HINT)
    if any(w in text for w in TRANSIENT_WORDS):
        return TransientError(what, "RunPod is busy; try again in a minute")
    if any(w in text for w in CAPACITY_WORDS):
        return CandidateRefused(what)
    return ProviderError(what, "run with -v for details; check https://status.runpod.io")


class _Port(Record):
    ip: str | None = None
    is_ip_public: bool | None = Field(default=None, alias="isIpPublic")
    private_port: int | None = Field(default=None, alias="privatePort")
    public_port: int | None = Field(default=None, alias="publicPort")


class _Runtime(Record):
    ports: list[_Port] | None = None


class _Machine(Record):
    gpu_display_name: str | None = Field(default=None, alias="gpuDisplayName")


class _Pod(Record):
    id: str
    name: str | None = None
    desired_status: str | None = Field(default=None, alias="desiredStatus")
    cost_per_hr: float | None = Field(default=None, alias="costPerHr")
    gpu_count: int | None = Field(default=None, alias="gpuCount")
    image_name: str | None = Field(default=None, alias="imageName")
    env: list[str] | None = None
    machine: _Machine | None = None
    runtime: _Runtime | None = None

    def neutral(self) -> Pod:
        desired = (self.desired_status or "").upper()
        if desired == "RUNNING":
            status = "RUNNING" if self.runtime is not None else "STARTING"
        else:
            status = STATUS.get(desired, desired or "PROVISIONING")
        host = port = None
        for p in (self.runtime.ports or []) if self.runtime else []:
            if p.private_port == 22 and p.is_ip_public and p.ip and p.public_port:
                host, port = p.ip, p.public_port
        env = dict(item.partition("=")[::2] for item in self.env or [])
        return Pod(
            id=self.id,
            name=self.name or "",
            status=status,
            cost_per_hr=self.cost_per_hr,
            gpu_count=self.gpu_count or 0,
            gpu_name=self.machine.gpu_display_name if self.machine else None,
            image=self.image_name,
            env=env,
            ssh_host=host,
            ssh_port=port,
        )


class GraphQLClient:
    """:class:`runctl_runpod.client.RunpodApi` over RunPod's GraphQL endpoint, with httpx."""

    kind = "graphql"
    spot_reason = ""

    def __init__(self, api_key: str, base_url: str, *, timeout: float = 30.0, retry: RetryPolicy | None = None) -> None:
        import httpx

        self.base_url = base_url
        self.url = base_url + "/graphql"
        self._retry = retry or RetryPolicy(attempts=4, base_delay=0.5, max_delay=8.0, budget=30.0)
        self._http = httpx.Client(
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "runctl-runpod/0.2",
            },
        )

    def close(self) -> None:
        self._http.close()

    def execute(self, document: str, operation: str, *, idempotent: bool) -> dict[str, Any]:
        """POST one GraphQL document; return its ``data``. Retries only when ``idempotent``."""
        if idempotent:
            return call_with_retries(lambda: self._post(document, operation), self._retry)
        return self._post(document, operation)

    def _post(self, document: str, operation: str) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.post(self.url, json={"query": document})
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.url, operation) from None
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"RunPod rejected the API key (HTTP {status}) during {operation}", KEY_HINT)
        if status == 429:
            raise TransientError(
                f"RunPod is rate limiting requests (HTTP 429) during {operation}",
                "wait a minute; RunPod limits the GraphQL API's request rate",
                retry_after=retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise TransientError(f"RunPod API error (HTTP {status}) during {operation}", "https://status.runpod.io")
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"RunPod answered {operation} with HTTP {status} and no JSON") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            message = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            raise classify(message, operation)
        if status >= 400 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise ProviderError(f"RunPod answered {operation} with HTTP {status} and no data")
        data: dict[str, Any] = body["data"]
        return data

    def identity(self) -> str:
        data = self.execute("query Myself { myself { id } }", "myself", idempotent=True)
        return str((data.get("myself") or {}).get("id") or "")

    def gpu_types(self) -> list[GpuType]:
        data = self.execute(
            "query GpuTypes { gpuTypes { id displayName memoryInGb maxGpuCount } }", "gpuTypes", idempotent=True
        )
        return [GpuType.model_validate(item) for item in data.get("gpuTypes") or []]

    def gpu_prices(self, ids: list[str], stock: StockFilter) -> list[GpuType]:
        if not ids:
            return []
        base = {
            "gpuCount": stock.gpu_count,
            "minVcpuCount": stock.min_vcpu_count,
            "minMemoryInGb": stock.min_memory_gb,
            "dataCenterId": stock.data_center_ids[0] if stock.data_center_ids else None,
        }
        secure, community = literal({**base, "secureCloud": True}), literal({**base, "secureCloud": False})
        document = (
            f"query GpuPrices {{ gpuTypes(input: {{ids: {literal(ids)}}}) {{ id displayName memoryInGb maxGpuCount "
            "securePrice communityPrice secureSpotPrice communitySpotPrice "
            f"secure: lowestPrice(input: {secure}) {{ {PRICE_FIELDS} }} "
            f"community: lowestPrice(input: {community}) {{ {PRICE_FIELDS} }} }} }}"
        )
        data = self.execute(document, "gpuTypes", idempotent=True)
        return [GpuType.model_validate(item) for item in data.get("gpuTypes") or []]

    def data_centers(self, regions: list[str]) -> list[str]:
        raise UsageError(
            f"RunPod's GraphQL API cannot choose a data centre by region ({', '.join(regions)})",
            'pass a data centre id (e.g. --region US-KS-2), or use api = "rest"',
        )

    def create_pod(self, request: DeployRequest, bid_per_gpu: float | None) -> Pod:
        field = "podRentInterruptable" if bid_per_gpu is not None else "podFindAndDeployOnDemand"
        document = (
            f"mutation Deploy {{ {field}(input: {literal(deploy_input(request, bid_per_gpu))}) {{ {POD_FIELDS} }} }}"
        )
        item = self.execute(document, field, idempotent=False).get(field)
        if not item:
            raise CandidateRefused(f"RunPod returned no pod from {field}")
        return _Pod.model_validate(item).neutral()

    def get_pod(self, pod_id: str) -> Pod | None:
        document = f"query Pod {{ pod(input: {{podId: {literal(pod_id)}}}) {{ {POD_FIELDS} }} }}"
        try:
            data = self.execute(document, "pod", idempotent=True)
        except NotFoundError:
            return None
        item = data.get("pod")
        return _Pod.model_validate(item).neutral() if item else None

    def list_pods(self) -> list[Pod]:
        data = self.execute(f"query Pods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}", "myself.pods", idempotent=True)
        return [_Pod.model_validate(item).neutral() for item in (data.get("myself") or {}).get("pods") or []]

    def stop_pod(self, pod_id: str) -> None:
        document = f"mutation Stop {{ podStop(input: {{podId: {literal(pod_id)}}}) {{ id desiredStatus }} }}"
        self.execute(document, "podStop", idempotent=True)

    def terminate_pod(self, pod_id: str) -> None:
        document = f"mutation Terminate {{ podTerminate(input: {{podId: {literal(pod_id)}}}) }}"
        try:
            self.execute(document, "podTerminate", idempotent=True)
        except NotFoundError:  # "pod not found to terminate": already gone, which is what we want
            return

    def pod_logs(self, pod_id: str, tail: int) -> list[str]:
        return []  # the GraphQL API has no log endpoint


__all__ = ["CapacityError", "GraphQLClient", "classify", "deploy_input", "literal"]

"""Every call runctl makes to RunPod's API, behind one typed interface.

:class:`RunpodApi` is what the rest of the plugin uses; :class:`GraphQLClient` implements it over RunPod's
GraphQL endpoint (``$RUNPOD_API_BASE_URL/graphql``, ``Authorization: Bearer $RUNPOD_API_KEY``) with httpx.
RunPod has announced the GraphQL API's retirement in favour of REST v2 (``POST /v2/pods``, ``GET
/v2/pods/{id}``, ``POST /v2/pods/{id}/action``, ``DELETE /v2/pods/{id}``, ``GET /v2/catalog/gpus``); a REST
client implementing the same protocol can take over the on-demand operations without any change elsewhere
(REST v2 has no spot pods: its ``deploy_spot`` would raise :class:`CapabilityError`).

Errors: RunPod answers client errors with HTTP 200 and an ``errors`` array; they are mapped onto runctl's
error types here (:func:`classify`). Idempotent requests (queries, stop, terminate) are retried inside the
client on throttling and 5xx; creations are not. The API key goes only into the Authorization header: never
into a URL, a message or a log.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from runctl_core.errors import (
    AuthError,
    CapacityError,
    NotFoundError,
    ProviderError,
    QuotaError,
    RunctlError,
    TransientError,
)
from runctl_core.retry import RetryPolicy, call_with_retries
from runctl_runpod.models import API_BASE_ENV, API_KEY_ENV, DEFAULT_API_BASE, DeployRequest, GpuType, Pod

KEY_HINT = (
    f"check {API_KEY_ENV}: create an API key at https://www.runpod.io/console/user/settings "
    f"and export {API_KEY_ENV}=... (runctl never prints it)"
)

POD_FIELDS = (
    "id name desiredStatus costPerHr gpuCount imageName uptimeSeconds env machine { gpuDisplayName } "
    "runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }"
)
PRICE_FIELDS = "minimumBidPrice uninterruptablePrice stockStatus"


class RunpodApi(Protocol):
    """The operations runctl needs from RunPod. Implementations raise only runctl's error types."""

    def identity(self) -> str:
        """The account id the key belongs to (a cheap read-only call)."""
        ...

    def gpu_types(self) -> list[GpuType]:
        """The GPU catalogue: ids, display names, memory, max count (no prices)."""
        ...

    def gpu_prices(self, ids: list[str], gpu_count: int) -> list[GpuType]:
        """The given GPU types with per-GPU prices and stock for secure and community cloud."""
        ...

    def deploy_on_demand(self, request: DeployRequest) -> Pod:
        """Create an on-demand pod (paid)."""
        ...

    def deploy_spot(self, request: DeployRequest, bid_per_gpu: float) -> Pod:
        """Create a spot (interruptible) pod bidding ``bid_per_gpu`` $/h per GPU (paid)."""
        ...

    def get_pod(self, pod_id: str) -> Pod | None:
        """The pod, or None when it does not exist (any more)."""
        ...

    def list_pods(self) -> list[Pod]:
        """Every pod of the account."""
        ...

    def stop_pod(self, pod_id: str) -> None:
        """Stop the pod (keeps its volume)."""
        ...

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate the pod; no error when it is already gone."""
        ...


# --------------------------------------------------------------------------------------- GraphQL literals


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
        "ports": request.ports,
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
    if request.data_center_id:
        fields["dataCenterId"] = request.data_center_id
    if request.allowed_cuda_versions:
        fields["allowedCudaVersions"] = request.allowed_cuda_versions
    if bid_per_gpu is not None:
        fields["bidPerGpu"] = round(bid_per_gpu, 4)
    return fields


# --------------------------------------------------------------------------------------- errors


CAPACITY_WORDS = (
    "no longer any instances available",
    "no instances available",
    "not enough",
    "out of stock",
    "no available",
    "insufficient capacity",
    "bid",
    "could not find any pods",
)
NOT_FOUND_WORDS = ("not found", "does not exist", "no pod")
AUTH_WORDS = ("unauthorized", "unauthenticated", "api key", "forbidden", "permission")
QUOTA_WORDS = ("balance", "quota", "limit reached", "spend limit", "insufficient funds")
TRANSIENT_WORDS = ("rate limit", "too many requests", "try again later", "temporarily", "timeout", "internal server")


def classify(message: str, operation: str) -> RunctlError:
    """The runctl error for a message in RunPod's ``errors`` array (HTTP 200)."""
    text = message.lower()
    what = f"RunPod refused {operation}: {message}"
    if "no longer any instances available" in text:
        return CapacityError(
            what, "try another GPU (`runctl price --gpu ...` shows stock), another cloud_type, or later"
        )
    if any(w in text for w in AUTH_WORDS):
        return AuthError(what, KEY_HINT)
    if any(w in text for w in NOT_FOUND_WORDS):
        return NotFoundError(what, "the pod no longer exists; `runctl resources list` shows what runctl knows")
    if any(w in text for w in QUOTA_WORDS):
        return QuotaError(
            what, "check your RunPod balance and spend limit at https://www.runpod.io/console/user/billing"
        )
    if any(w in text for w in TRANSIENT_WORDS):
        return TransientError(what, "RunPod is busy; try again in a minute")
    if any(w in text for w in CAPACITY_WORDS):
        return CapacityError(
            what, "try another GPU (`runctl price --gpu ...` shows stock), another cloud_type, or later"
        )
    return ProviderError(what, "run with -v for details; check https://status.runpod.io")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------- client


class GraphQLClient:
    """:class:`RunpodApi` over RunPod's GraphQL endpoint, with httpx (imported here, at first use)."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        import httpx

        if not api_key:
            from runctl_core.errors import CredentialsError

            raise CredentialsError(f"{API_KEY_ENV} is not set", KEY_HINT)
        base = (base_url or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE).rstrip("/")
        self.url = base + "/graphql"
        self._retry = retry or RetryPolicy(attempts=4, base_delay=0.5, max_delay=8.0, budget=30.0)
        self._http = httpx.Client(
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "runctl-runpod/0.1",
            },
        )

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------- transport

    def execute(self, document: str, operation: str, *, idempotent: bool) -> dict[str, Any]:
        """POST one GraphQL document; return its ``data``. Retries only when ``idempotent``."""
        if idempotent:
            return call_with_retries(lambda: self._post(document, operation), self._retry)
        return self._post(document, operation)

    def _post(self, document: str, operation: str) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.post(self.url, json={"query": document})
        except httpx.TimeoutException as exc:
            raise TransientError(f"RunPod API timed out during {operation} ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransientError(
                f"could not reach the RunPod API at {self.url} during {operation}: {type(exc).__name__}",
                "check your network connection",
            ) from None
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"RunPod rejected the API key (HTTP {status}) during {operation}", KEY_HINT)
        if status == 429:
            raise TransientError(
                f"RunPod is rate limiting requests (HTTP 429) during {operation}",
                "wait a minute; RunPod limits the GraphQL API's request rate",
                retry_after=_retry_after(response.headers.get("Retry-After")),
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

    # ------------------------------------------------------------------------- operations

    def identity(self) -> str:
        data = self.execute("query Myself { myself { id } }", "myself", idempotent=True)
        return str((data.get("myself") or {}).get("id") or "")

    def gpu_types(self) -> list[GpuType]:
        data = self.execute(
            "query GpuTypes { gpuTypes { id displayName memoryInGb maxGpuCount } }", "gpuTypes", idempotent=True
        )
        return [GpuType.model_validate(item) for item in data.get("gpuTypes") or []]

    def gpu_prices(self, ids: list[str], gpu_count: int) -> list[GpuType]:
        if not ids:
            return []
        count = literal(gpu_count)
        document = (
            f"query GpuPrices {{ gpuTypes(input: {{ids: {literal(ids)}}}) {{ id displayName memoryInGb maxGpuCount "
            "securePrice communityPrice secureSpotPrice communitySpotPrice "
            f"secure: lowestPrice(input: {{gpuCount: {count}, secureCloud: true}}) {{ {PRICE_FIELDS} }} "
            f"community: lowestPrice(input: {{gpuCount: {count}, secureCloud: false}}) {{ {PRICE_FIELDS} }} }} }}"
        )
        data = self.execute(document, "gpuTypes", idempotent=True)
        return [GpuType.model_validate(item) for item in data.get("gpuTypes") or []]

    def deploy_on_demand(self, request: DeployRequest) -> Pod:
        arguments = literal(deploy_input(request))
        document = f"mutation Deploy {{ podFindAndDeployOnDemand(input: {arguments}) {{ {POD_FIELDS} }} }}"
        data = self.execute(document, "podFindAndDeployOnDemand", idempotent=False)
        return self._pod(data.get("podFindAndDeployOnDemand"), "podFindAndDeployOnDemand")

    def deploy_spot(self, request: DeployRequest, bid_per_gpu: float) -> Pod:
        document = (
            "mutation RentSpot { podRentInterruptable(input: "
            f"{literal(deploy_input(request, bid_per_gpu))}) {{ {POD_FIELDS} }} }}"
        )
        data = self.execute(document, "podRentInterruptable", idempotent=False)
        return self._pod(data.get("podRentInterruptable"), "podRentInterruptable")

    def get_pod(self, pod_id: str) -> Pod | None:
        document = f"query Pod {{ pod(input: {{podId: {literal(pod_id)}}}) {{ {POD_FIELDS} }} }}"
        try:
            data = self.execute(document, "pod", idempotent=True)
        except NotFoundError:
            return None
        item = data.get("pod")
        return Pod.model_validate(item) if item else None

    def list_pods(self) -> list[Pod]:
        data = self.execute(f"query Pods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}", "myself.pods", idempotent=True)
        return [Pod.model_validate(item) for item in (data.get("myself") or {}).get("pods") or []]

    def stop_pod(self, pod_id: str) -> None:
        document = f"mutation Stop {{ podStop(input: {{podId: {literal(pod_id)}}}) {{ id desiredStatus }} }}"
        self.execute(document, "podStop", idempotent=True)

    def terminate_pod(self, pod_id: str) -> None:
        document = f"mutation Terminate {{ podTerminate(input: {{podId: {literal(pod_id)}}}) }}"
        try:
            self.execute(document, "podTerminate", idempotent=True)
        except NotFoundError:  # "pod not found to terminate": already gone, which is what we want
            return

    @staticmethod
    def _pod(item: Any, operation: str) -> Pod:
        if not item:
            raise CapacityError(
                f"RunPod returned no pod from {operation}",
                "no machine matched; try another GPU, cloud_type or later",
            )
        return Pod.model_validate(item)


def make_client(settings_api_url: str | None, timeout: float, retry: RetryPolicy) -> RunpodApi:
    """The client runctl uses, from the environment's key (never from a config file)."""
    return GraphQLClient(os.environ.get(API_KEY_ENV, ""), settings_api_url, timeout=timeout, retry=retry)

"""Every call runctl makes to RunPod's API goes through :class:`RunpodApi`; :func:`make_client` picks the
implementation from ``[providers.runpod] api``:

* ``"rest"`` (default): :class:`runctl_runpod.rest.RestClient`, RunPod's REST API v2
  (``https://api.runpod.io/v2/...``), the API RunPod tells new integrations to use;
* ``"graphql"``: :class:`runctl_runpod.graphql.GraphQLClient`, deprecated by RunPod ("will be retired in early
  2027", docs: sdks/graphql/configurations), kept selectable because only it rents spot (interruptible) pods.

Both take and return the records of :mod:`runctl_runpod.models` and raise only runctl's error types, so the
choice is invisible to the rest of the plugin. The API key goes only into the ``Authorization`` header.
"""

from __future__ import annotations

import os
from typing import Protocol

from runctl_core.errors import CapacityError, CredentialsError, TransientError
from runctl_core.retry import RetryPolicy
from runctl_runpod.models import DeployRequest, GpuType, Pod, StockFilter
from runctl_runpod.settings import API_BASE_ENV, API_KEY_ENV, DEFAULT_API_BASE, RunpodSettings

KEY_HINT = (
    f"check {API_KEY_ENV}: create an API key at https://www.runpod.io/console/user/settings "
    f"and export {API_KEY_ENV}=... (runctl never prints it)"
)
BALANCE_HINT = "add funds or raise your spend limit at https://www.runpod.io/console/user/billing"
CAPACITY_HINT = "try another GPU (`runctl --provider runpod price --gpu ...` shows stock), cloud_type, region, or later"


class CandidateRefused(CapacityError):
    """RunPod refused to place the pod on this candidate (GPU type x cloud x data centre); another may work.

    ``kind`` is ``"capacity"`` (REST 400 / GraphQL "no longer any instances available") or ``"forbidden"``
    (REST 403: the account cannot use this pool)."""

    code = "capacity"

    def __init__(self, message: str, hint: str = CAPACITY_HINT, *, kind: str = "capacity") -> None:
        super().__init__(message, hint)
        self.kind = kind


class RunpodApi(Protocol):
    """The operations runctl needs from RunPod. Implementations raise only runctl's error types."""

    kind: str  # "rest" or "graphql"
    base_url: str
    spot_reason: str  # empty when the API rents spot pods; else why not

    def identity(self) -> str:
        """Something that shows the key was accepted (the account id, or the number of pods)."""
        ...

    def gpu_types(self) -> list[GpuType]:
        """The GPU catalogue: ids, display names, memory, max count (no stock)."""
        ...

    def gpu_prices(self, ids: list[str], stock: StockFilter) -> list[GpuType]:
        """The given GPU types with per-GPU prices and stock in each cloud, under ``stock``'s filters."""
        ...

    def data_centers(self, regions: list[str]) -> list[str]:
        """Ids of the data centres in these regions (``EUROPE``, ``NORTH_AMERICA``...)."""
        ...

    def create_pod(self, request: DeployRequest, bid_per_gpu: float | None) -> Pod:
        """Create a pod (paid); a spot pod when ``bid_per_gpu`` is given. One try: never retried here.
        Raises :class:`CandidateRefused` when another candidate may work, :class:`QuotaError` on balance,
        :class:`UsageError` for a request the API calls invalid, :class:`TransientError` when the answer
        is unknown (the pod may exist: look for it by its intent before trying again)."""
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

    def pod_logs(self, pod_id: str, tail: int) -> list[str]:
        """The last ``tail`` lines of the pod's container and system log (REST only; GraphQL: [])."""
        ...

    def close(self) -> None: ...


def retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def transport_error(exc: Exception, url: str, operation: str) -> TransientError:
    """The error for an HTTP request that got no answer (timeout, connection refused)."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"RunPod API timed out during {operation} ({type(exc).__name__})")
    return TransientError(
        f"could not reach the RunPod API at {url} during {operation}: {type(exc).__name__}",
        "check your network connection",
    )


def make_client(s: RunpodSettings) -> RunpodApi:
    """The client the settings ask for, with the environment's key (never from a config file)."""
    key = os.environ.get(API_KEY_ENV, "")
    if not key:
        raise CredentialsError(f"{API_KEY_ENV} is not set", KEY_HINT)
    base = (s.api_url or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE).rstrip("/")
    retry = RetryPolicy(attempts=s.retries, base_delay=s.retry_base_delay, max_delay=8.0, budget=60.0)
    if s.api == "graphql":
        from runctl_runpod.graphql import GraphQLClient

        return GraphQLClient(key, base, timeout=s.request_timeout, retry=retry)
    from runctl_runpod.rest import RestClient

    return RestClient(key, base, timeout=s.request_timeout, retry=retry)

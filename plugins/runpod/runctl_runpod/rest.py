"""RunPod's REST API v2 (``https://api.runpod.io/v2/...``, ``Authorization: Bearer``), with httpx: the default.

Operations and answers follow RunPod's published OpenAPI document (api-reference-v2). Errors are
``application/problem+json`` bodies (``title``, ``status``, ``detail``, ``errors``). ``createPod`` is mapped
by the failure table in its description: 422 -> a usage error (never retried); 400 -> this candidate could not
be placed (try the next); 402 -> insufficient balance (stop); 403 -> the account cannot use this pool (skip
it); 429 -> back off by ``Retry-After``; 5xx -> transient (the caller checks whether the pod was made before
trying the same candidate again). Reads are retried here on 429/5xx; creations never are.

REST v2 has no interruptible (spot) pods: :meth:`RestClient.create_pod` refuses a bid.
"""

from __future__ import annotations

import json
from typing import Any

from runctl_core.errors import (
    AuthError,
    CapabilityError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
    UsageError,
)
from runctl_core.retry import RetryPolicy, call_with_retries
from runctl_runpod.client import BALANCE_HINT, KEY_HINT, CandidateRefused, retry_after, transport_error
from runctl_runpod.models import DeployRequest, GpuType, LowestPrice, Pod, StockFilter

SPOT_REASON = (
    'RunPod\'s REST API v2 has no interruptible (spot) pods; set [providers.runpod] api = "graphql" to rent '
    "them through the deprecated GraphQL API until its retirement (early 2027)"
)
STOCK = {"HIGH": "High", "MEDIUM": "Medium", "LOW": "Low", "NONE": "None"}


def create_body(request: DeployRequest) -> dict[str, Any]:
    """The ``CreatePodRequest`` for ``request``."""
    if request.min_vcpu_count or request.min_memory_gb:
        raise UsageError(
            "RunPod's REST API v2 cannot place a pod by min_vcpu_count / min_memory_gb",
            'remove them from [providers.runpod], or use api = "graphql" while it lasts',
        )
    if request.cloud_type not in ("SECURE", "COMMUNITY"):
        raise UsageError(f"REST v2 creates a pod in one cloud, not {request.cloud_type}")
    gpu: dict[str, Any] = {"id": request.gpu_type_id, "count": request.gpu_count}
    if request.allowed_cuda_versions:
        gpu["allowedCudaVersions"] = request.allowed_cuda_versions
    body: dict[str, Any] = {
        "name": request.name,
        "image": request.image,
        "gpu": gpu,
        "cloud": request.cloud_type,
        "disk": request.container_disk_gb,
        "ports": request.ports,
        "env": request.env,
        "startSsh": request.start_ssh,
    }
    if request.volume_gb:
        if request.volume_gb < 10:
            raise UsageError(
                f"RunPod's pod volume is at least 10 GB (asked: {request.volume_gb})",
                "set volume_gb = 0 (no volume) or >= 10, or --disk-gb 10",
            )
        body["mounts"] = {"persistent": {"size": request.volume_gb, "path": request.volume_mount_path}}
    if request.data_center_ids:
        body["dataCenterIds"] = request.data_center_ids
    if request.docker_args:
        body["args"] = request.docker_args
    return body


def pod_from(item: dict[str, Any]) -> Pod:
    direct = (item.get("ssh") or {}).get("direct") or {}
    gpu = item.get("gpu") or {}
    return Pod(
        id=str(item["id"]),
        name=str(item.get("name") or ""),
        status=str(item.get("status") or "PROVISIONING"),
        cost_per_hr=item.get("cost"),
        gpu_count=int(gpu.get("count") or 0),
        gpu_name=gpu.get("id"),
        image=item.get("image"),
        cloud=item.get("cloud"),
        env={str(k): str(v) for k, v in (item.get("env") or {}).items()},
        ssh_host=direct.get("host"),
        ssh_port=direct.get("port"),
    )


class RestClient:
    """:class:`runctl_runpod.client.RunpodApi` over REST v2."""

    kind = "rest"
    spot_reason = SPOT_REASON

    def __init__(self, api_key: str, base_url: str, *, timeout: float = 30.0, retry: RetryPolicy | None = None) -> None:
        import httpx

        self.base_url = base_url
        self._retry = retry or RetryPolicy(attempts=4, base_delay=0.5, max_delay=8.0, budget=30.0)
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": "runctl-runpod/0.2",
            },
        )

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ HTTP

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        idempotent: bool = True,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        def once() -> Any:
            import httpx

            try:
                response = self._http.request(method, path, params=params, json=body)
            except httpx.HTTPError as exc:
                raise transport_error(exc, self.base_url + path, operation) from None
            if response.status_code in ok:
                return response.json() if response.content else None
            raise self._error(response, operation)

        return call_with_retries(once, self._retry) if idempotent else once()

    def _error(self, response: Any, operation: str) -> Exception:
        status = response.status_code
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        detail = (
            str(problem.get("detail") or problem.get("title") or f"HTTP {status}") if isinstance(problem, dict) else ""
        )
        violations = problem.get("errors") if isinstance(problem, dict) else None
        what = f"RunPod refused {operation} (HTTP {status}): {detail}"
        creating = operation == "createPod"
        if status == 401:
            return AuthError(f"RunPod rejected the API key (HTTP 401) during {operation}", KEY_HINT)
        if status == 402:
            return QuotaError(f"RunPod: insufficient balance for {operation}: {detail}", BALANCE_HINT)
        if status == 403:
            if creating:
                return CandidateRefused(
                    what, "this account cannot use that pool; runctl tries the next", kind="forbidden"
                )
            return AuthError(what, "the API key lacks permission for this; " + KEY_HINT)
        if status == 404:
            return NotFoundError(what, "the pod no longer exists; `runctl resources list` shows what runctl knows")
        if status == 422:
            listed = "; ".join(str(v) for v in violations) if isinstance(violations, list) else ""
            return UsageError(
                f"RunPod says the {operation} request is invalid: {detail}" + (f" ({listed})" if listed else ""),
                "check the [providers.runpod] settings (image, ports, disk sizes, CUDA versions)",
            )
        if status == 400 and creating:
            return CandidateRefused(what)
        if status == 429:
            return TransientError(
                f"RunPod is rate limiting requests (HTTP 429) during {operation}",
                "wait a minute and try again",
                retry_after=retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            return TransientError(f"RunPod API error (HTTP {status}) during {operation}", "https://status.runpod.io")
        return ProviderError(what, "run with -v for details; check https://status.runpod.io")

    # ------------------------------------------------------------------------------------------ catalogue

    def identity(self) -> str:
        pods = self._call("GET", "/v2/pods", "listPods")
        return f"REST v2 key with {len(pods.get('pods') or [])} pod(s)"

    def gpu_types(self) -> list[GpuType]:
        data = self._call("GET", "/v2/catalog/gpus", "listGpuTypes")
        return [
            GpuType(
                id=g["id"],
                display_name=g.get("name") or g["id"],
                memory_gb=g.get("memory"),
                max_gpu_count=max((g.get("maxCount") or {}).values() or [0]) or None,
            )
            for g in data.get("gpus") or []
        ]

    def gpu_prices(self, ids: list[str], stock: StockFilter) -> list[GpuType]:
        if not ids:
            return []
        found: dict[str, GpuType] = {}
        for cloud in ("SECURE", "COMMUNITY"):
            params = {"include": "AVAILABILITY", "product": "POD", "count": str(stock.gpu_count), "cloud": cloud}
            if stock.cuda_versions:
                params["cudaVersions"] = ",".join(stock.cuda_versions)
            data = self._call("GET", "/v2/catalog/gpus", "listGpuTypes", params=params)
            for g in data.get("gpus") or []:
                if g["id"] not in ids:
                    continue
                gpu = found.setdefault(
                    g["id"],
                    GpuType(
                        id=g["id"],
                        display_name=g.get("name") or g["id"],
                        memory_gb=g.get("memory"),
                        max_gpu_count=max((g.get("maxCount") or {}).values() or [0]) or None,
                    ),
                )
                key = cloud.lower()
                offered = bool(g.get(key)) and stock.gpu_count <= int((g.get("maxCount") or {}).get(key) or 0)
                price = float((g.get("price") or {}).get(key) or 0)
                availability = str(g.get("availability") or "NONE")
                if stock.data_center_ids:  # stock in the data centres the pod may be placed in
                    levels = [d["availability"] for d in g.get("dataCenters") or [] if d["id"] in stock.data_center_ids]
                    order = ["NONE", "LOW", "MEDIUM", "HIGH"]
                    availability = max(levels, key=order.index) if levels else "NONE"
                lowest = LowestPrice(
                    uninterruptable_price=price if offered and price > 0 else None,
                    stock_status=STOCK.get(availability) if offered else None,
                )
                setattr(gpu, key, lowest)
        return [found[i] for i in ids if i in found]

    def data_centers(self, regions: list[str]) -> list[str]:
        data = self._call("GET", "/v2/catalog/datacenters", "listDataCenters", params={"regions": ",".join(regions)})
        return [str(d["id"]) for d in data.get("dataCenters") or []]

    # ------------------------------------------------------------------------------------------ pods

    def create_pod(self, request: DeployRequest, bid_per_gpu: float | None) -> Pod:
        if bid_per_gpu is not None:
            raise CapabilityError(f"cannot rent a spot pod: {SPOT_REASON}")
        item = self._call("POST", "/v2/pods", "createPod", idempotent=False, body=create_body(request), ok=(201,))
        return pod_from(item)

    def get_pod(self, pod_id: str) -> Pod | None:
        try:
            return pod_from(self._call("GET", f"/v2/pods/{pod_id}", "getPod"))
        except NotFoundError:
            return None

    def list_pods(self) -> list[Pod]:
        return [pod_from(item) for item in self._call("GET", "/v2/pods", "listPods").get("pods") or []]

    def stop_pod(self, pod_id: str) -> None:
        self._call("POST", f"/v2/pods/{pod_id}/action", "podAction", body={"action": "stop"}, ok=(200, 204))

    def terminate_pod(self, pod_id: str) -> None:
        try:
            self._call("DELETE", f"/v2/pods/{pod_id}", "deletePod", ok=(204,))
        except NotFoundError:  # already gone, which is what we want
            return

    def pod_logs(self, pod_id: str, tail: int) -> list[str]:
        """The backfill of ``GET /v2/pods/{id}/logs`` (Server-Sent Events, ``data: {"source", "line", "ts"}``):
        the stream stays open for new lines, so reading stops once it is quiet for a second."""
        import httpx

        lines: list[str] = []
        timeout = httpx.Timeout(10.0, read=1.0)
        try:
            with self._http.stream(
                "GET",
                f"/v2/pods/{pod_id}/logs",
                params={"tail": str(min(tail, 5000))},
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response, "getPodLogs")
                for raw in response.iter_lines():
                    if raw.startswith("data:"):
                        try:
                            event = json.loads(raw[5:].strip())
                        except ValueError:
                            continue
                        lines.append(f"[{event.get('source', '')}] {event.get('line', '')}")
                        if len(lines) >= tail:
                            break
        except httpx.ReadTimeout:
            pass  # the backfill is over; the stream only waits for new lines now
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.base_url, "getPodLogs") from None
        return lines

"""The REST v2 side of the RunPod stand-in. Every request and every response is validated with openapi-core
against RunPod's published OpenAPI document; a violation is recorded in ``StandIn.violations`` (and an invalid
request is answered 422, as RunPod does). Behaviour cited from the document's operation descriptions:

* createPod: 201 with the pod in PROVISIONING; "does not search for capacity, and it does not fall back to a
  different GPU"; the failure table 422 / 400 (rule or "no capacity", only a human-readable detail) / 402 /
  403 / 429 (``Retry-After`` seconds) / 5xx; "a create can still fail for capacity on a GPU the catalog just
  reported as available" (``StandIn.refuse``); ``allowedCudaVersions`` matched exactly, else capacity.
* getPod/listPods: PROVISIONING -> STARTING -> RUNNING; ``ssh.direct`` null until the running pod has its
  ``22/tcp`` mapped; ``runtime`` null when not RUNNING; ``cost`` 0.0 when EXITED.
* deletePod: 204, then 404 for that id; podAction ``stop`` -> EXITED (200 with the pod), ``terminate`` -> 204.
* listGpuTypes: ``include=AVAILABILITY`` requires ``product`` and vice versa (400); ``count``/``cloud``/
  ``cudaVersions`` valid only with it (400); ``dataCenters`` omitted when unavailable everywhere.
* getPodLogs: Server-Sent Events ``id: <ts>`` / ``data: {"ts","source","line"}``, the stream held open.
* Keys: each pod's own RUNPOD_API_KEY may read, act on and delete only that pod (403 otherwise).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from runpod_standin import FakePod, StandIn

# a verbatim copy of RunPod's published REST v2 OpenAPI document (docs.runpod.io, api-reference-v2)
SPEC = Path(__file__).with_name("runpod_openapi_v2.json")
PROBLEM = "application/problem+json"
LEVEL = {"High": "HIGH", "Medium": "MEDIUM", "Low": "LOW"}


def _text(data: bytes) -> str:
    return data.decode("utf-8")


@lru_cache(maxsize=1)
def openapi() -> Any:
    from openapi_core import Config, OpenAPI

    return OpenAPI.from_file_path(
        str(SPEC), config=Config(extra_media_type_deserializers={PROBLEM: json.loads, "text/event-stream": _text})
    )


def problem(status: int, detail: str, errors: list[str] | None = None) -> tuple[int, Any]:
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        402: "Payment Required",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        422: "Unprocessable Entity",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }
    body: dict[str, Any] = {"title": titles.get(status, "Error"), "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return status, body


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RestFront:
    def __init__(self, standin: StandIn) -> None:
        self.s = standin

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str, dict[str, str]]:
        from openapi_core.testing import MockRequest, MockResponse
        from openapi_core.validation.request.exceptions import SecurityValidationError

        s = self.s
        url = urlsplit(raw_path)
        args = dict(parse_qsl(url.query, keep_blank_values=True))
        lower = {k.lower(): v for k, v in headers.items()}
        request = MockRequest(
            "https://api.runpod.io",
            method.lower(),
            url.path,
            args=args,
            data=body or None,
            headers={"Authorization": lower.get("authorization", "")},
            content_type=lower.get("content-type", "application/json").split(";")[0],
        )
        operation = self.operation(method, url.path)
        with s.lock:
            s.requests.append(
                {
                    "fields": [operation],
                    "method": method,
                    "path": url.path,
                    "args": args,
                    "body": json.loads(body) if body else None,
                    "auth": "pod" if s.pod_for_key(lower.get("authorization", "")) else "user",
                }
            )
        s.record("api", operation)
        try:
            openapi().validate_request(request)
        except SecurityValidationError:
            status, payload = problem(401, "missing bearer token")
        except Exception as exc:  # the request breaks the published contract: RunPod answers 422
            s.violations.append(f"request {method} {url.path}: {exc}")
            status, payload = problem(422, "Request validation failed.", [str(exc)[:500]])
        else:
            status, payload = self.dispatch(method, url.path, args, lower.get("authorization", ""), body, operation)
        extra: dict[str, str] = {"Retry-After": "0"} if status == 429 else {}
        if status == 200 and operation == "getPodLogs":
            data, ctype = str(payload).encode(), "text/event-stream"
            extra = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        elif payload is None:
            data, ctype = b"", ""
        else:
            data, ctype = json.dumps(payload).encode(), PROBLEM if status >= 400 else "application/json"
        try:
            openapi().validate_response(
                request, MockResponse(data, status_code=status, content_type=ctype or None, headers=extra)
            )
        except Exception as exc:
            s.violations.append(f"response {status} to {method} {url.path}: {exc}")
        return status, data, ctype, extra

    @staticmethod
    def operation(method: str, path: str) -> str:
        parts = path.strip("/").split("/")
        table = {("GET", 2): "listPods", ("POST", 2): "createPod", ("GET", 3): "getPod", ("DELETE", 3): "deletePod"}
        if parts[:2] == ["v2", "pods"]:
            if len(parts) == 4:
                return {"logs": "getPodLogs", "action": "podAction"}.get(parts[3], "unknown")
            return table.get((method, len(parts)), "unknown")
        if parts[:2] == ["v2", "catalog"] and len(parts) == 3:
            return {"gpus": "listGpuTypes", "datacenters": "listDataCenters"}.get(parts[2], "unknown")
        return "unknown"

    # ------------------------------------------------------------------------------------------ dispatch

    def dispatch(
        self, method: str, path: str, args: dict[str, str], auth: str, body: bytes, operation: str
    ) -> tuple[int, Any]:
        s = self.s
        parts = path.strip("/").split("/")
        pod_id = parts[2] if len(parts) > 2 and parts[1] == "pods" else None
        scoped = s.pod_for_key(auth)
        if auth != f"Bearer {s.api_key}":
            if scoped is None:
                return problem(401, "invalid bearer token")
            if pod_id != scoped.id or operation not in ("getPod", "deletePod", "podAction"):
                return problem(403, "access denied")
        fault = s.take_fault([operation])
        if fault is not None and fault.kind != "lost_response":
            codes = {
                "capacity": 400,
                "400": 400,
                "401": 401,
                "402": 402,
                "403": 403,
                "422": 422,
                "429": 429,
                "500": 500,
            }
            code = codes[fault.kind]
            from runpod_standin import CAPACITY_MESSAGE

            detail = {
                400: CAPACITY_MESSAGE,
                402: "insufficient balance",
                403: "access denied",
                422: "Request validation failed.",
                429: "rate limit exceeded for the minute window",
            }
            return problem(code, detail.get(code, "upstream failure"))
        handler = getattr(self, operation, None)
        if handler is None:
            return problem(404, "resource not found")
        status, payload = handler(pod_id=pod_id, args=args, body=json.loads(body) if body else None)
        if fault is not None:  # lost_response: carried out, the answer lost on the way
            return problem(502, "bad gateway")
        return status, payload

    def pod(self, pod_id: str | None) -> FakePod | None:
        with self.s.lock:
            return self.s.pods.get(pod_id or "")

    def view(self, pod: FakePod, count_poll: bool = True) -> dict[str, Any]:
        booted = self.s.booted(pod, count_poll)
        status = pod.status
        if status == "RUNNING" and not booted:
            status = "PROVISIONING" if pod.polls == 0 else "STARTING"
        actions = {"RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"], "TERMINATED": []}.get(
            status, ["stop", "terminate"]
        )
        direct = None
        runtime = None
        if status == "RUNNING":
            ports = [{"private": 8888, "public": 60141, "type": "http", "ip": "100.65.0.7"}]
            if pod.ssh_port and "22/tcp" in pod.ports.split(","):
                direct = {
                    "host": "127.0.0.1",
                    "port": pod.ssh_port,
                    "username": "root",
                    "command": f"ssh root@127.0.0.1 -p {pod.ssh_port}",
                }
                ports.insert(0, {"private": 22, "public": pod.ssh_port, "type": "tcp", "ip": "127.0.0.1"})
            uptime = int((datetime.now(timezone.utc) - pod.created).total_seconds())
            runtime = {"uptime": uptime, "ports": ports}
        proxy = {
            "host": "ssh.runpod.io",
            "port": 22,
            "username": f"{pod.id}-64411eb2",
            "command": f"ssh {pod.id}-64411eb2@ssh.runpod.io",
        }
        return {
            "id": pod.id,
            "name": pod.name,
            "image": pod.image,
            "args": pod.docker_args,
            "disk": pod.disk,
            "ports": [p for p in pod.ports.split(",") if p],
            "env": pod.env,
            "registry": None,
            "status": status,
            "actions": actions,
            "mounts": ({"persistent": {"size": pod.volume, "path": pod.volume_path}} if pod.volume >= 10 else {}),
            "gpu": {"id": pod.gpu_type_id, "count": pod.gpu_count},
            "cloud": pod.cloud,
            "dataCenterId": pod.data_center,
            "cudaVersion": "12.4",
            "ssh": {"proxy": proxy, "direct": direct},
            "template": None,
            "cost": pod.cost_per_hr if status not in ("EXITED", "TERMINATED") else 0.0,
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": runtime,
            "createdAt": iso(pod.created),
            "startedAt": iso(pod.created) if status == "RUNNING" else None,
        }

    # ------------------------------------------------------------------------------------------ operations

    def listPods(self, **_: Any) -> tuple[int, Any]:
        with self.s.lock:
            return 200, {"pods": [self.view(p, count_poll=False) for p in self.s.pods.values()]}

    def getPod(self, pod_id: str | None, **_: Any) -> tuple[int, Any]:
        pod = self.pod(pod_id)
        return (200, self.view(pod)) if pod else problem(404, "pod not found")

    def deletePod(self, pod_id: str | None, **_: Any) -> tuple[int, Any]:
        return (204, None) if pod_id and self.s.terminate(pod_id) else problem(404, "pod not found")

    def podAction(self, pod_id: str | None, body: dict[str, Any] | None, **_: Any) -> tuple[int, Any]:
        action = (body or {}).get("action")
        pod = self.pod(pod_id)
        if pod is None:
            return problem(404, "pod not found")
        if action == "terminate":
            self.s.terminate(pod.id)
            return 204, None
        if action == "stop":
            self.s.stop_pod(pod.id)
            return 200, self.view(pod, count_poll=False)
        return problem(409, f"action {action} is not valid for a {pod.status} pod")

    def getPodLogs(self, pod_id: str | None, args: dict[str, str], **_: Any) -> tuple[int, Any]:
        pod = self.pod(pod_id)
        if pod is None:
            return problem(404, "pod not found")
        tail = int(args.get("tail", "100"))
        lines = pod.log[-tail:] if tail else []
        stamp = iso(pod.created)
        return 200, "".join(
            f"id: {stamp}/{i:012d}\ndata: {json.dumps({'ts': stamp, 'source': src, 'line': line})}\n\n"
            for i, (src, line) in enumerate(lines)
        )

    def createPod(self, body: dict[str, Any] | None, **_: Any) -> tuple[int, Any]:
        from runpod_standin import CAPACITY_MESSAGE, CUDA_VERSIONS, PlacementError

        body = body or {}
        if ("gpu" in body) == ("cpu" in body):
            return problem(400, "exactly one of gpu or cpu must be set")
        gpu = body["gpu"]
        wanted_cuda = gpu.get("allowedCudaVersions") or []
        if wanted_cuda and not set(wanted_cuda) & set(CUDA_VERSIONS):
            return problem(400, CAPACITY_MESSAGE)
        persistent = (body.get("mounts") or {}).get("persistent") or {}
        data = {
            "gpuTypeId": gpu["id"],
            "gpuCount": gpu.get("count", 1),
            "cloudType": body.get("cloud", "SECURE"),
            "env": body.get("env") or {},
            "ports": ",".join(body.get("ports") or []),
            "name": body["name"],
            "imageName": body.get("image"),
            "dockerArgs": body.get("args") or "",
            "dataCenterIds": body.get("dataCenterIds") or [],
            "containerDiskInGb": body.get("disk", 20),
            "volumeInGb": persistent.get("size", 0),
            "volumeMountPath": persistent.get("path", "/workspace"),
        }
        try:
            pod = self.s.create_pod(data, None)
        except PlacementError as exc:
            return problem(exc.status, exc.detail)
        return 201, self.view(pod, count_poll=False)

    def listGpuTypes(self, args: dict[str, str], **_: Any) -> tuple[int, Any]:
        from runpod_standin import CATALOGUE, CUDA_VERSIONS, DATACENTERS

        include = "AVAILABILITY" in args.get("include", "")
        if include != ("product" in args) or (not include and {"count", "cloud", "cudaVersions"} & set(args)):
            return problem(400, "include=AVAILABILITY and product go together; count/cloud/cudaVersions need them")
        count = int(args.get("count", "1"))
        cloud = args.get("cloud", "SECURE")
        cuda = [v for v in args.get("cudaVersions", "").split(",") if v]
        gpus = []
        for gpu_id, name, mem, max_count, sec, com, *_rest, dcs in CATALOGUE:
            item: dict[str, Any] = {
                "id": gpu_id,
                "name": name,
                "pool": None,
                "manufacturer": "NVIDIA",
                "memory": mem,
                "secure": sec is not None,
                "community": com is not None,
                "price": {"secure": sec or 0.0, "community": com or 0.0},
                "maxCount": {"secure": max_count if sec else 0, "community": max_count if com else 0},
            }
            if include:
                gpu = self.s.gpu(gpu_id)
                assert gpu is not None
                lowest = self.s.prices(gpu, cloud == "SECURE", count)
                versions = [v for v in CUDA_VERSIONS if not cuda or v in cuda]
                level = LEVEL.get(lowest["stockStatus"] or "", "NONE") if versions else "NONE"
                item["availability"] = level
                if level != "NONE":
                    item["dataCenters"] = [{"id": d, "name": DATACENTERS[d][0], "availability": level} for d in dcs]
                item["cudaVersions"] = [{"version": v, "available": level != "NONE"} for v in versions]
            gpus.append(item)
        return 200, {"gpus": gpus}

    def listDataCenters(self, args: dict[str, str], **_: Any) -> tuple[int, Any]:
        from runpod_standin import DATACENTERS

        regions = [r for r in args.get("regions", "").split(",") if r]
        return 200, {
            "dataCenters": [
                {
                    "id": dc,
                    "name": name,
                    "region": region,
                    "globalNetwork": False,
                    "networkVolumeTypes": ["STANDARD"],
                    "compliance": [],
                }
                for dc, (name, region) in DATACENTERS.items()
                if not regions or region in regions
            ]
        }

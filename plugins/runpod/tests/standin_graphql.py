"""The GraphQL side of the RunPod stand-in (deprecated API, kept for ``api = "graphql"``): every document is
validated with graphql-core against ``runpod_schema.graphql`` (invalid documents get HTTP 400 with GraphQL
errors, as RunPod answers), then executed against the shared pod state."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, OperationDefinitionNode, build_schema, execute_sync, parse, validate

if TYPE_CHECKING:
    from runpod_standin import FakePod, StandIn

SCHEMA_PATH = Path(__file__).with_name("runpod_schema.graphql")


class GraphQLFront:
    def __init__(self, standin: StandIn) -> None:
        self.s = standin
        self.schema = build_schema(SCHEMA_PATH.read_text())

    def handle(self, auth: str, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        from runpod_standin import CAPACITY_MESSAGE

        s = self.s
        pod_scoped = s.pod_for_key(auth)
        if auth != f"Bearer {s.api_key}" and pod_scoped is None:
            return 401, {"errors": [{"message": "Unauthorized"}]}, {}
        try:
            request = json.loads(body)
            document = parse(request["query"])
        except (ValueError, KeyError, TypeError, GraphQLError) as exc:
            return 400, {"errors": [{"message": f"Syntax Error: {exc}"}]}, {}
        fields = [
            sel.name.value
            for definition in document.definitions
            if isinstance(definition, OperationDefinitionNode)
            for sel in definition.selection_set.selections
            if hasattr(sel, "name")
        ]
        with s.lock:
            s.requests.append({"fields": fields, "query": request["query"], "auth": "pod" if pod_scoped else "user"})
        for name in fields:
            s.record("api", name)
        if pod_scoped is not None and (fields != ["podTerminate"] or pod_scoped.id not in request["query"]):
            return 200, {"data": None, "errors": [{"message": "permission denied for this pod key"}]}, {}
        fault = s.take_fault(fields)
        if fault is not None:
            if fault.kind == "429":
                return 429, {"errors": [{"message": "Too Many Requests"}]}, {"Retry-After": "0"}
            if fault.kind == "500":
                return 500, {"errors": [{"message": "Internal Server Error"}]}, {}
            if fault.kind == "401":
                return 401, {"errors": [{"message": "Unauthorized"}]}, {}
            if fault.kind == "capacity":
                return 200, {"data": {f: None for f in fields}, "errors": [{"message": CAPACITY_MESSAGE}]}, {}
        errors = validate(self.schema, document)
        if errors:
            return (
                400,
                {
                    "errors": [
                        {"message": e.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for e in errors
                    ]
                },
                {},
            )
        root = _Root(s)
        if fault is not None and fault.kind == "lost_response":  # the request is carried out, the answer lost
            execute_sync(self.schema, document, root_value=root, variable_values=request.get("variables"))
            return 502, {"errors": [{"message": "Bad Gateway"}]}, {}
        result = execute_sync(
            self.schema,
            document,
            root_value=root,
            variable_values=request.get("variables"),
            operation_name=request.get("operationName"),
        )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        return 200, payload, {}


def pod_view(s: StandIn, pod: FakePod, count_poll: bool = True) -> dict[str, Any]:
    runtime = None
    if s.booted(pod, count_poll):
        ports = []
        if pod.ssh_port:
            ports.append(
                {"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": pod.ssh_port, "type": "tcp"}
            )
        ports.append(
            {"ip": "100.65.0.7", "isIpPublic": False, "privatePort": 8888, "publicPort": 60141, "type": "http"}
        )
        uptime = int((datetime.now(timezone.utc) - pod.created).total_seconds())
        runtime = {"uptimeInSeconds": uptime, "ports": ports, "gpus": [], "container": None}
    return {
        "id": pod.id,
        "name": pod.name,
        "desiredStatus": pod.status,
        "costPerHr": pod.cost_per_hr,
        "gpuCount": pod.gpu_count,
        "imageName": pod.image,
        "dockerArgs": pod.docker_args,
        "env": [f"{k}={v}" for k, v in pod.env.items()],
        "ports": pod.ports,
        "uptimeSeconds": 0,
        "machineId": "m-" + pod.id[:6],
        "machine": {"podHostId": f"{pod.id}-1", "gpuDisplayName": pod.gpu_display},
        "runtime": runtime,
    }


class _Root:
    """Root resolvers (graphql-core's default resolver calls these methods with ``info`` and the arguments)."""

    def __init__(self, standin: StandIn) -> None:
        self.s = standin

    def myself(self, info: Any) -> dict[str, Any]:
        def pods(_info: Any) -> list[dict[str, Any]]:
            with self.s.lock:
                return [pod_view(self.s, p, count_poll=False) for p in self.s.pods.values()]

        return {"id": "user-standin", "email": "standin@example.invalid", "pods": pods}

    def pod(self, info: Any, input: dict[str, Any] | None = None) -> dict[str, Any] | None:
        with self.s.lock:
            pod = self.s.pods.get((input or {}).get("podId", ""))
            return pod_view(self.s, pod) if pod else None

    def gpuTypes(self, info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from runpod_standin import CATALOGUE

        wanted = None
        if input:
            wanted = set(input.get("ids") or []) | ({input["id"]} if input.get("id") else set())
        out = []
        for gpu in CATALOGUE:
            if wanted is not None and gpu[0] not in wanted:
                continue
            gpu_id, name, mem, max_count, sec, com, sec_spot, com_spot, _stock, _dcs = gpu

            def lowest(_info: Any, input: dict[str, Any] | None = None, gpu: tuple[Any, ...] = gpu) -> dict[str, Any]:
                args = input or {}
                return self.s.prices(gpu, args.get("secureCloud"), args.get("gpuCount") or 1, args.get("dataCenterId"))

            out.append(
                {
                    "id": gpu_id,
                    "displayName": name,
                    "manufacturer": "Nvidia",
                    "memoryInGb": mem,
                    "maxGpuCount": max_count,
                    "secureCloud": sec is not None,
                    "communityCloud": com is not None,
                    "securePrice": sec,
                    "communityPrice": com,
                    "secureSpotPrice": sec_spot,
                    "communitySpotPrice": com_spot,
                    "lowestPrice": lowest,
                }
            )
        return out

    def _create(self, data: dict[str, Any], bid: float | None) -> dict[str, Any]:
        from runpod_standin import PlacementError

        converted = dict(data)
        converted["env"] = {item["key"]: item["value"] for item in data.get("env") or []}
        if data.get("dataCenterId"):
            converted["dataCenterIds"] = [data["dataCenterId"]]
        try:
            pod = self.s.create_pod(converted, bid)
        except PlacementError as exc:
            raise GraphQLError(exc.detail) from None
        return pod_view(self.s, pod, count_poll=False)

    def podFindAndDeployOnDemand(self, info: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._create(input or {}, None)

    def podRentInterruptable(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self._create(input, float(input["bidPerGpu"]))

    def podStop(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self.s.stop_pod(input["podId"])
        if pod is None:
            raise GraphQLError("pod not found")
        return pod_view(self.s, pod, count_poll=False)

    def podResume(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        raise GraphQLError("podResume is not implemented by the stand-in")

    def podTerminate(self, info: Any, input: dict[str, Any]) -> None:
        if not self.s.terminate(input["podId"]):
            raise GraphQLError("pod not found to terminate")
        return None

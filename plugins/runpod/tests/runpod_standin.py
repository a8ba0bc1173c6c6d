"""A local stand-in for RunPod: the GraphQL API (validated against runpod_schema.graphql with graphql-core) and,
for each pod, an SSH server (asyncssh) whose commands and SFTP run in a per-pod sandbox directory.

Only 127.0.0.1 is used. Faults can be injected per root field: HTTP 429/500/401, RunPod's capacity error, a
refused spot market; a pod can be preempted (stopped by the market) from the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import string
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncssh
from graphql import GraphQLError, OperationDefinitionNode, build_schema, execute_sync, parse, validate

SCHEMA_PATH = Path(__file__).with_name("runpod_schema.graphql")
CAPACITY_MESSAGE = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
SPOT_GONE_MESSAGE = "Interruptible (spot) pods are not available for this account."

# id, displayName, memory, max count, secure, community, secure spot, community spot, stock
CATALOGUE = [
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 8, 0.69, 0.34, 0.35, 0.22, "High"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 8, 1.64, 1.19, 0.82, 0.60, "Medium"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 8, 1.89, None, 1.05, None, "Low"),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 8, 2.99, 2.69, 1.75, 1.40, "High"),
    ("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20, 8, 0.26, 0.20, 0.13, 0.10, "High"),
    ("NVIDIA RTX A6000", "RTX A6000", 48, 8, 0.49, 0.33, 0.25, 0.17, "High"),
]


@dataclass
class FakePod:
    id: str
    name: str
    image: str
    gpu_type_id: str
    gpu_display: str
    gpu_count: int
    cloud: str
    cost_per_hr: float
    spot: bool
    env: dict[str, str]
    docker_args: str
    ports: str
    sandbox: Path
    status: str = "RUNNING"
    polls: int = 0
    ssh_port: int | None = None
    acceptor: Any = None
    procs: set[int] = field(default_factory=set)
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class Fault:
    kind: str  # "429", "500", "401", "capacity", "lost_response" (carried out, then HTTP 502)
    field: str  # root field name, or "*"
    times: int


class StandIn:
    """RunPod on 127.0.0.1. ``url`` is the API base (the client appends /graphql)."""

    def __init__(self, root: Path, api_key: str, boot_polls: int = 1) -> None:
        self.root = root
        self.api_key = api_key
        self.boot_polls = boot_polls
        self.schema = build_schema(SCHEMA_PATH.read_text())
        self.lock = threading.RLock()
        self.pods: dict[str, FakePod] = {}
        self.terminated: dict[str, FakePod] = {}
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.spot_enabled = True
        self.stock: dict[str, str | None] = {}
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.http: ThreadingHTTPServer | None = None
        self.url = ""

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> StandIn:
        self.loop_thread.start()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload, headers = standin.handle(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        return self

    def stop(self) -> None:
        with self.lock:
            for pod in list(self.pods.values()):
                self._kill(pod)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(5)

    # ----------------------------------------------------------------------------- test controls

    def inject(self, kind: str, field: str = "*", times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(kind, field, times))

    def preempt(self, pod_id: str) -> None:
        """The spot market takes the pod back: the container is killed, the pod is EXITED."""
        with self.lock:
            pod = self.pods[pod_id]
            self._kill(pod)
            pod.status = "EXITED"

    def operations(self) -> list[str]:
        return [name for request in self.requests for name in request["fields"]]

    # ----------------------------------------------------------------------------- HTTP

    def handle(self, path: str, auth: str, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path.split("?")[0] != "/graphql":
            return 404, {"errors": [{"message": "not found"}]}, {}
        if auth != f"Bearer {self.api_key}":
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
        with self.lock:
            self.requests.append({"fields": fields, "query": request["query"]})
            fault = self._take_fault(fields)
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
        if fault is not None and fault.kind == "lost_response":  # the request is carried out, the answer lost
            execute_sync(self.schema, document, root_value=_Root(self), variable_values=request.get("variables"))
            return 502, {"errors": [{"message": "Bad Gateway"}]}, {}
        result = execute_sync(
            self.schema,
            document,
            root_value=_Root(self),
            variable_values=request.get("variables"),
            operation_name=request.get("operationName"),
        )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        return 200, payload, {}

    def _take_fault(self, fields: list[str]) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and (fault.field == "*" or fault.field in fields):
                fault.times -= 1
                return fault
        return None

    # ----------------------------------------------------------------------------- pods

    def gpu(self, gpu_id: str) -> tuple[Any, ...] | None:
        return next((g for g in CATALOGUE if g[0] == gpu_id), None)

    def prices(self, gpu: tuple[Any, ...], secure: bool | None, count: int) -> dict[str, Any]:
        gpu_id, _name, _mem, max_count, sec, com, sec_spot, com_spot, stock = gpu
        stock = self.stock.get(gpu_id, stock)
        if count > max_count:
            return {"minimumBidPrice": None, "uninterruptablePrice": None, "stockStatus": None}
        if secure is True:
            od, spot = sec, sec_spot
        elif secure is False:
            od, spot = com, com_spot
        else:
            od = min(p for p in (sec, com) if p is not None)
            spot = min(p for p in (sec_spot, com_spot) if p is not None)
        if od is None:
            stock = None
        return {
            "minimumBidPrice": spot,
            "uninterruptablePrice": od,
            "stockStatus": stock,
            "availableGpuCounts": list(range(1, max_count + 1)),
            "gpuTypeId": gpu_id,
        }

    def create_pod(self, data: dict[str, Any], bid: float | None) -> FakePod:
        gpu = self.gpu(data.get("gpuTypeId") or "")
        count = data.get("gpuCount") or 1
        cloud = data.get("cloudType") or "ALL"
        if gpu is None:
            raise GraphQLError(CAPACITY_MESSAGE)
        secure = {"SECURE": True, "COMMUNITY": False}.get(cloud)
        price = self.prices(gpu, secure, count)
        if price["uninterruptablePrice"] is None or price["stockStatus"] in (None, "None"):
            raise GraphQLError(CAPACITY_MESSAGE)
        if bid is not None:
            if not self.spot_enabled:
                raise GraphQLError(SPOT_GONE_MESSAGE)
            if price["minimumBidPrice"] is None or bid < price["minimumBidPrice"]:
                raise GraphQLError(f"Your bid of {bid} is below the minimum bid price for this GPU.")
        env = {item["key"]: item["value"] for item in data.get("env") or []}
        pod_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=14))
        sandbox = self.root / "pods" / pod_id
        sandbox.mkdir(parents=True)
        pod = FakePod(
            id=pod_id,
            name=data.get("name") or pod_id,
            image=data.get("imageName") or "",
            gpu_type_id=gpu[0],
            gpu_display=gpu[1],
            gpu_count=count,
            cloud=cloud,
            cost_per_hr=round((bid if bid is not None else price["uninterruptablePrice"]) * count, 4),
            spot=bid is not None,
            env=env,
            docker_args=data.get("dockerArgs") or "",
            ports=data.get("ports") or "",
            sandbox=sandbox,
        )
        if "22/tcp" in pod.ports.split(",") and env.get("PUBLIC_KEY"):
            asyncio.run_coroutine_threadsafe(self._start_ssh(pod), self.loop).result(10)
        with self.lock:
            self.pods[pod_id] = pod
        return pod

    def pod_view(self, pod: FakePod, count_poll: bool = True) -> dict[str, Any]:
        if count_poll:
            pod.polls += 1
        runtime = None
        if pod.status == "RUNNING" and pod.polls > self.boot_polls:
            ports = []
            if pod.ssh_port:
                ports.append(
                    {
                        "ip": "127.0.0.1",
                        "isIpPublic": True,
                        "privatePort": 22,
                        "publicPort": pod.ssh_port,
                        "type": "tcp",
                    }
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

    def terminate(self, pod_id: str) -> None:
        with self.lock:
            pod = self.pods.pop(pod_id, None)
            if pod is None:
                raise GraphQLError("pod not found to terminate")
            self._kill(pod)
            pod.status = "TERMINATED"
            self.terminated[pod_id] = pod

    def _kill(self, pod: FakePod) -> None:
        """The container dies: every process of the pod is killed and its SSH port closes."""
        for job_json in pod.sandbox.rglob("job.json"):
            try:
                record = json.loads(job_json.read_text())
            except (OSError, ValueError):
                continue
            for key in ("pgid",):
                if record.get(key):
                    _signal_group(int(record[key]))
            if record.get("supervisor_pid"):
                _signal_pid(int(record["supervisor_pid"]))
        for pid in list(pod.procs):
            _signal_group(pid)
        if pod.acceptor is not None:
            acceptor, pod.acceptor = pod.acceptor, None
            pod.ssh_port = None

            async def close() -> None:
                acceptor.close()
                await acceptor.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)

    # ----------------------------------------------------------------------------- SSH

    async def _start_ssh(self, pod: FakePod) -> None:
        standin = self
        authorized = asyncssh.import_authorized_keys(pod.env["PUBLIC_KEY"] + "\n")

        async def process_factory(process: asyncssh.SSHServerProcess) -> None:
            command = process.command
            if not command:
                process.stderr.write("interactive shells are not offered by the stand-in\n")
                process.exit(1)
                return
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(pod.sandbox),
                "LANG": "C.UTF-8",
                "RUNPOD_POD_ID": pod.id,
                **pod.env,
            }
            proc = await asyncio.create_subprocess_shell(
                command,
                cwd=pod.sandbox,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            pod.procs.add(proc.pid)
            try:
                out, err = await proc.communicate()
            finally:
                pod.procs.discard(proc.pid)
            process.stdout.write(out.decode("utf-8", "replace"))
            process.stderr.write(err.decode("utf-8", "replace"))
            process.exit(proc.returncode or 0)

        pod.acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[standin.host_key],
            authorized_client_keys=authorized,
            process_factory=process_factory,
            sftp_factory=True,
            allow_scp=False,
            password_auth=False,
            kbdint_auth=False,
        )
        pod.ssh_port = pod.acceptor.get_port()


def _signal_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Root:
    """Root resolvers (graphql-core's default resolver calls these methods with ``info`` and the arguments)."""

    def __init__(self, standin: StandIn) -> None:
        self.s = standin

    # queries
    def myself(self, info: Any) -> dict[str, Any]:
        def pods(_info: Any) -> list[dict[str, Any]]:
            with self.s.lock:
                return [self.s.pod_view(p, count_poll=False) for p in self.s.pods.values()]

        return {"id": "user-standin", "email": "standin@example.invalid", "pods": pods}

    def pod(self, info: Any, input: dict[str, Any] | None = None) -> dict[str, Any] | None:
        with self.s.lock:
            pod = self.s.pods.get((input or {}).get("podId", ""))
            return self.s.pod_view(pod) if pod else None

    def gpuTypes(self, info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        wanted = None
        if input:
            wanted = set(input.get("ids") or []) | ({input["id"]} if input.get("id") else set())
        out = []
        for gpu in CATALOGUE:
            if wanted is not None and gpu[0] not in wanted:
                continue
            gpu_id, name, mem, max_count, sec, com, sec_spot, com_spot, _stock = gpu

            def lowest(_info: Any, input: dict[str, Any] | None = None, gpu: tuple[Any, ...] = gpu) -> dict[str, Any]:
                args = input or {}
                return self.s.prices(gpu, args.get("secureCloud"), args.get("gpuCount") or 1)

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

    # mutations
    def podFindAndDeployOnDemand(self, info: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        pod = self.s.create_pod(input or {}, None)
        return self.s.pod_view(pod, count_poll=False)

    def podRentInterruptable(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self.s.create_pod(input, float(input["bidPerGpu"]))
        return self.s.pod_view(pod, count_poll=False)

    def podStop(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        with self.s.lock:
            pod = self.s.pods.get(input["podId"])
            if pod is None:
                raise GraphQLError("pod not found")
            self.s._kill(pod)
            pod.status = "EXITED"
            return self.s.pod_view(pod, count_poll=False)

    def podResume(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        raise GraphQLError("podResume is not implemented by the stand-in")

    def podTerminate(self, info: Any, input: dict[str, Any]) -> None:
        self.s.terminate(input["podId"])
        return None

"""A local stand-in for RunPod: its two APIs and, for each pod, an SSH server.

* REST v2 (``/v2/...``, :mod:`standin_rest`): every request and every response is validated with openapi-core
  against RunPod's published OpenAPI document (shared/reference/runpod/api-reference-v2_openapi.json); a
  violation is recorded in ``violations`` (the ``standin`` fixture fails the test on any).
* GraphQL (``/graphql``, :mod:`standin_graphql`): every document validated with graphql-core against
  ``runpod_schema.graphql``.
* Pods (shared by both): state, the documented statuses (PROVISIONING -> STARTING -> RUNNING -> EXITED /
  TERMINATED), and an asyncssh server per pod whose exec sessions and SFTP run in a per-pod sandbox directory.
  As on RunPod, SSH sessions do NOT get the container's environment: RunPod's images write the RUNPOD_*
  variables to /etc/rp_environment and source it only from ~/.bashrc (runpod/containers start.sh,
  ``export_env_vars``: ``printenv | grep -E '^RUNPOD_|^PATH=|^_='``), so a non-interactive command sees
  neither RUNPOD_POD_ID nor the pod-scoped RUNPOD_API_KEY. The stand-in writes that file at
  ``<sandbox>/etc/rp_environment``. The pod's ``python3`` is the machine's bare one (a PATH of system
  directories: no uv, no runctl virtualenv).

Only 127.0.0.1 is used. Faults are injected per operation (REST operationId or GraphQL root field).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncssh

CAPACITY_MESSAGE = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
SPOT_GONE_MESSAGE = "Interruptible (spot) pods are not available for this account."
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# how this test machine reaches the package index (mirror, proxy, CA bundle): a real pod reaches PyPI directly;
# here its sessions get the same network settings as the machine running the tests, and nothing else
NETWORK = {
    k: v
    for k, v in os.environ.items()
    if k.startswith(("PIP_", "UV_", "SSL_CERT_"))
    or k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    or k.lower() in ("http_proxy", "https_proxy", "no_proxy")
}

# id, displayName, memory, max count, secure, community, secure spot, community spot, stock, data centres
CATALOGUE = [
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 8, 0.69, 0.34, 0.35, 0.22, "High", ["US-KS-2", "EU-RO-1"]),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 8, 1.64, 1.19, 0.82, 0.60, "Medium", ["US-KS-2"]),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 8, 1.89, None, 1.05, None, "Low", ["EU-RO-1"]),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 8, 2.99, 2.69, 1.75, 1.40, "High", ["US-TX-3"]),
    ("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20, 8, 0.26, 0.20, 0.13, 0.10, "High", ["US-KS-2"]),
    ("NVIDIA RTX A6000", "RTX A6000", 48, 8, 0.49, 0.33, 0.25, 0.17, "High", ["EU-RO-1", "US-TX-3"]),
]
DATACENTERS = {
    "US-KS-2": ("US Kansas 2", "NORTH_AMERICA"),
    "US-TX-3": ("US Texas 3", "NORTH_AMERICA"),
    "EU-RO-1": ("EU Romania 1", "EUROPE"),
}
CUDA_VERSIONS = ["12.4", "12.8"]


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
    pod_key: str = ""
    data_center: str = "US-KS-2"
    disk: int = 20
    volume: int = 20
    volume_path: str = "/workspace"
    status: str = "RUNNING"
    polls: int = 0
    ssh_port: int | None = None
    acceptor: Any = None
    procs: set[int] = field(default_factory=set)
    conns: list[Any] = field(default_factory=list)  # open SSH connections: they die with the container
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    log: list[tuple[str, str]] = field(default_factory=list)  # (source, line) of the pod's own log


@dataclass
class Fault:
    kind: str  # "429", "500", "401", "400", "402", "403", "422", "capacity", "lost_response"
    field: str  # operationId / root field name, or "*"
    times: int


class StandIn:
    """RunPod on 127.0.0.1. ``url`` is the API base (``/v2/...`` and ``/graphql``)."""

    def __init__(self, root: Path, api_key: str, boot_polls: int = 1) -> None:
        from standin_graphql import GraphQLFront
        from standin_rest import RestFront

        self.root = root
        self.api_key = api_key
        self.boot_polls = boot_polls
        self.lock = threading.RLock()
        self.pods: dict[str, FakePod] = {}
        self.terminated: dict[str, FakePod] = {}
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.events: list[tuple[float, str, str]] = []  # (time, "api"|"ssh"|"sftp", what): round trips
        self.violations: list[str] = []  # requests or responses that break the published API contract
        self.spot_enabled = True
        self.stock: dict[str, str | None] = {}
        self.refuse: dict[str, int] = {}  # gpu id -> HTTP status its creations get (a create refused after
        # the catalogue said "available", as RunPod's createPod docs warn)
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.http: ThreadingHTTPServer | None = None
        self.url = ""
        self.graphql = GraphQLFront(self)
        self.rest = RestFront(self)

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> StandIn:
        self.loop_thread.start()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/graphql"):
                    status, payload, headers = standin.graphql.handle(self.headers.get("Authorization", ""), body)
                    data, ctype = json.dumps(payload).encode(), "application/json"
                else:
                    status, data, ctype, headers = standin.rest.handle(
                        self.command, self.path, dict(self.headers), body
                    )
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for key, value in headers.items():
                    self.send_header(key, value)
                if ctype == "text/event-stream":  # SSE: the stream stays open for new lines (as RunPod's does)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    time.sleep(1.5)
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

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
        for pid in _processes_inside(self.root):  # whatever a pod left behind, even after its terminate
            _signal_pid(pid)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(5)

    # ----------------------------------------------------------------------------- test controls

    def inject(self, kind: str, field: str = "*", times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(kind, field, times))

    def take_fault(self, names: list[str]) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.field == "*" or fault.field in names):
                    fault.times -= 1
                    return fault
        return None

    def preempt(self, pod_id: str) -> None:
        """The spot market takes the pod back: the container is killed, the pod is EXITED."""
        with self.lock:
            pod = self.pods[pod_id]
            self._kill(pod)
            pod.status = "EXITED"

    def operations(self) -> list[str]:
        return [name for request in self.requests for name in request["fields"]]

    def record(self, kind: str, what: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), kind, what))

    # ----------------------------------------------------------------------------- pods

    def gpu(self, gpu_id: str) -> tuple[Any, ...] | None:
        return next((g for g in CATALOGUE if g[0] == gpu_id), None)

    def prices(self, gpu: tuple[Any, ...], secure: bool | None, count: int, dc: str | None = None) -> dict[str, Any]:
        """lowestPrice of one GPU type. A combination RunPod cannot place answers stockStatus null and a price
        of 0 (how RunPod's lowestPrice reports it; issue 11 of this project, read from RunPod's answers)."""
        gpu_id, _name, _mem, max_count, sec, com, sec_spot, com_spot, stock, dcs = gpu
        stock = self.stock.get(gpu_id, stock)
        if secure is True:
            od, spot = sec, sec_spot
        elif secure is False:
            od, spot = com, com_spot
        else:
            od = min(p for p in (sec, com) if p is not None)
            spot = min(p for p in (sec_spot, com_spot) if p is not None)
        if count > max_count or od is None or (dc and dc not in dcs) or stock in (None, "None"):
            return {"minimumBidPrice": 0, "uninterruptablePrice": 0, "stockStatus": None}
        return {
            "minimumBidPrice": spot,
            "uninterruptablePrice": od,
            "stockStatus": stock,
            "availableGpuCounts": list(range(1, max_count + 1)),
            "gpuTypeId": gpu_id,
        }

    def create_pod(self, data: dict[str, Any], bid: float | None) -> FakePod:
        """Create a pod from GraphQL-shaped input (the REST front converts its body). Raises PlacementError."""
        gpu = self.gpu(data.get("gpuTypeId") or "")
        count = data.get("gpuCount") or 1
        cloud = data.get("cloudType") or "ALL"
        if gpu is None:
            raise PlacementError(400, CAPACITY_MESSAGE)
        refused = self.refuse.get(f"{gpu[0]}@{cloud}") or self.refuse.get(gpu[0])  # by GPU, or GPU@CLOUD
        if refused:
            raise PlacementError(refused, {403: "access denied"}.get(refused, CAPACITY_MESSAGE))
        secure = {"SECURE": True, "COMMUNITY": False}.get(cloud)
        dcs = data.get("dataCenterIds") or []
        placed = [d for d in gpu[9] if not dcs or d in dcs]
        price = self.prices(gpu, secure, count)
        if not placed or price["stockStatus"] is None:
            raise PlacementError(400, CAPACITY_MESSAGE)
        if bid is not None:
            if not self.spot_enabled:
                raise PlacementError(400, SPOT_GONE_MESSAGE)
            if not price["minimumBidPrice"] or bid < price["minimumBidPrice"]:
                raise PlacementError(400, f"Your bid of {bid} is below the minimum bid price for this GPU.")
        env = dict(data.get("env") or {})
        pod_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=14))
        sandbox = self.root / "pods" / pod_id
        (sandbox / "etc").mkdir(parents=True)
        pod = FakePod(
            id=pod_id,
            name=data.get("name") or pod_id,
            image=data.get("imageName") or "",
            gpu_type_id=gpu[0],
            gpu_display=gpu[1],
            gpu_count=count,
            cloud=cloud if cloud != "ALL" else "SECURE",
            cost_per_hr=round((bid if bid is not None else price["uninterruptablePrice"]) * count, 4),
            spot=bid is not None,
            env=env,
            docker_args=data.get("dockerArgs") or "",
            ports=data.get("ports") or "",
            sandbox=sandbox,
            pod_key="rpa_POD_" + "".join(random.choices(string.ascii_uppercase, k=20)),
            data_center=placed[0],
            disk=data.get("containerDiskInGb") or 20,
            volume=data.get("volumeInGb") or 0,
            volume_path=data.get("volumeMountPath") or "/workspace",
        )
        container_env = {
            "RUNPOD_POD_ID": pod.id,
            "RUNPOD_API_KEY": pod.pod_key,
            "RUNPOD_DC_ID": pod.data_center,
            "PATH": BARE_PATH,
        }
        (sandbox / "etc" / "rp_environment").write_text(
            "".join(f'export {k}="{v}"\n' for k, v in container_env.items())
        )
        pod.log = [("system", f"pulling image {pod.image}"), ("container", "start.sh: starting sshd")]
        if "22/tcp" in pod.ports.split(",") and env.get("PUBLIC_KEY"):
            asyncio.run_coroutine_threadsafe(self._start_ssh(pod), self.loop).result(10)
        with self.lock:
            self.pods[pod_id] = pod
        return pod

    def booted(self, pod: FakePod, count_poll: bool) -> bool:
        if count_poll:
            pod.polls += 1
        return pod.status == "RUNNING" and pod.polls > self.boot_polls

    def pod_for_key(self, auth: str) -> FakePod | None:
        """The pod whose pod-scoped key this is (RunPod gives each pod its own key in RUNPOD_API_KEY)."""
        with self.lock:
            return next(
                (p for p in [*self.pods.values(), *self.terminated.values()] if auth == f"Bearer {p.pod_key}"), None
            )

    def terminate(self, pod_id: str) -> bool:
        with self.lock:
            pod = self.pods.pop(pod_id, None)
            if pod is None:
                return False
            self._kill(pod)
            pod.status = "TERMINATED"
            self.terminated[pod_id] = pod
            return True

    def stop_pod(self, pod_id: str) -> FakePod | None:
        with self.lock:
            pod = self.pods.get(pod_id)
            if pod is not None:
                self._kill(pod)
                pod.status = "EXITED"
            return pod

    def _kill(self, pod: FakePod) -> None:
        """The container dies: every process of the pod is killed and its SSH port closes."""
        for job_json in pod.sandbox.rglob("job.json"):
            try:
                record = json.loads(job_json.read_text())
            except (OSError, ValueError):
                continue
            if record.get("pgid"):
                _signal_group(int(record["pgid"]))
            if record.get("supervisor_pid"):
                _signal_pid(int(record["supervisor_pid"]))
        for pid in list(pod.procs):
            _signal_group(pid)
        for pid in _processes_inside(pod.sandbox):  # detached ones too (the max_runtime timer): a container's
            _signal_pid(pid)  # death takes every process in it
        for conn in list(pod.conns):
            self.loop.call_soon_threadsafe(conn.abort)
        pod.conns.clear()
        if pod.acceptor is not None:
            acceptor, pod.acceptor = pod.acceptor, None
            pod.ssh_port = None

            async def close() -> None:
                acceptor.close()  # also drops the pod's open connections, as a dying container does
                try:
                    await asyncio.wait_for(acceptor.wait_closed(), 3)
                except asyncio.TimeoutError:
                    pass

            if threading.current_thread() is not self.loop_thread:
                asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)

    # ----------------------------------------------------------------------------- SSH

    async def _start_ssh(self, pod: FakePod) -> None:
        standin = self
        authorized = asyncssh.import_authorized_keys(pod.env["PUBLIC_KEY"] + "\n")

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: Any) -> None:
                pod.conns.append(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                pass

        class Sftp(asyncssh.SFTPServer):
            def __init__(self, chan: Any) -> None:
                standin.record("sftp", pod.id)
                super().__init__(chan)

        async def process_factory(process: asyncssh.SSHServerProcess) -> None:
            command = process.command
            if not command:
                process.stderr.write(b"interactive shells are not offered by the stand-in\n")
                process.exit(1)
                return
            standin.record("ssh", command[:20000])
            # a non-interactive session: sshd's own environment, not the container's (see the module docstring)
            env = {"PATH": BARE_PATH, "HOME": str(pod.sandbox), "LANG": "C.UTF-8", "USER": "root", **NETWORK}
            proc = await asyncio.create_subprocess_shell(
                command,
                cwd=pod.sandbox,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            pod.procs.add(proc.pid)

            async def feed() -> None:  # the client's stdin, streamed as sshd does, closed at the client's EOF
                assert proc.stdin is not None
                try:
                    while data := await process.stdin.read(1 << 16):
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            feeder = asyncio.ensure_future(feed())
            try:
                assert proc.stdout is not None and proc.stderr is not None
                out, err, _ = await asyncio.gather(proc.stdout.read(), proc.stderr.read(), proc.wait())
            finally:
                feeder.cancel()
                pod.procs.discard(proc.pid)
            process.stdout.write(out)
            process.stderr.write(err)
            process.exit(proc.returncode or 0)

        pod.acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[standin.host_key],
            authorized_client_keys=authorized,
            server_factory=Server,
            process_factory=process_factory,
            sftp_factory=Sftp,
            allow_scp=False,
            password_auth=False,
            kbdint_auth=False,
            encoding=None,
        )
        pod.ssh_port = pod.acceptor.get_port()


class PlacementError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _processes_inside(sandbox: Path) -> list[int]:
    """Processes whose working directory is in the pod's sandbox (what runs "in the container")."""
    root = str(sandbox.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(int(entry.name))
    return found


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

"""A local stand-in for Lyceum Cloud's execution API (FastAPI, so 422s are shaped exactly as FastAPI shapes them).

It implements the endpoints runctl-lyceum calls with the shapes Lyceum's CLI reads, checks the bearer key, validates
request bodies (unknown fields refused; a Python execution's timeout 1..600 as Lyceum's API reference gives it --
its CLI sends a fixed 60, lyceum-cli 1.2.2 execution/python.py build_payload; an image execution's timeout has no
stated maximum -- execution/docker.py takes any --timeout, notebook.py passes 7200 -- unless
``image_timeout_max`` models the other reading of notebook.py's "max: 600"), and really runs what it is sent: the
``code`` is written as ``file_name`` next to the ``import_files`` in a sandbox directory and run with this Python
(image executions run ``docker_run_cmd`` with python3 -> this Python). Output is streamed as server-sent events
(replayed from the start to each connection), status is kept, abort/stop kill the process group.

Storage: the account's bucket lives in a moto S3 server; executions see it as a directory (``mount_dir``) that the
stand-in keeps in step with the bucket the way an s3fs mount does (bucket -> directory before each execution,
directory -> bucket while it runs and before it is reported ended).

Undocumented behaviour, each a switch so tests cover both readings: ``import_subdir`` (``import_files`` land in a
subdirectory, not next to the code), ``python_in_thread`` (the code runs off the interpreter's main thread, as a
kernel may run it), ``system_error_objects`` (``system_errors`` as objects, not strings).

Logins (``login(expires_in)``): what ``lyceum auth login`` stores - a JWT access token (``exp`` claim) and a refresh
token. The bearer may be the API key or an unexpired access token. ``POST /auth/refresh`` with
``{"refresh_token"}`` answers ``{"access_token", "refresh_token"}`` (rotated: the old one stops working) or 401
``{"detail"}`` - the request and the fields the CLI sends and reads (lyceum-cli 1.2.2, lyceum/shared/config.py,
refresh_access_token). Undocumented, so assumed: an expired access token is answered 401 like a wrong key, and
refresh tokens rotate (the CLI saves a new one when the answer has it).

Faults: ``fail(method, path_regex, status, times, ...)`` answers matching requests with an error;
``system_failure_next`` ends the next execution after its first output as ``failed_system``;
``drop_stream_after`` cuts the first stream connection of an execution after that many events.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

PREFIX = "/api/v2/external"
API_KEY = "lk_test_S3cr3tK3yValue0123456789abcdef"  # a dummy key; tests check it never leaks
TERMINAL = {"completed", "failed_user", "failed_system", "failed", "timeout", "cancelled", "aborted"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(exp: float) -> str:
    """A signed JWT (HS256, the stand-in's own secret) with ``exp``; clients read it without verifying."""
    import hashlib
    import hmac

    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": "standin-user", "exp": int(exp), "jti": uuid.uuid4().hex}).encode())
    signature = hmac.new(b"standin-secret", f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _jwt_exp(token: str) -> float:
    import base64

    part = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["exp"])


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(root: int) -> list[int]:
    """The processes below ``root`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class StreamingStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    nbcode: int = 0
    execution_type: str = "cpu"
    timeout: int = Field(default=60, ge=1, le=600)
    file_name: str | None = None
    requirements_content: str | None = None
    requirements: str | None = None
    prior_imports: list[str] | None = None
    import_files: str | None = None
    kernel_state: str | None = None
    run_name: str | None = None
    labels: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docker_image_ref: str
    docker_run_cmd: list[str]
    docker_run_env: str | None = None
    timeout: int = Field(default=300, ge=1)
    execution_type: str = "cpu"
    file_name: str | None = None
    enable_s3_mount: bool = True
    s3_mount_path: str = "/mnt/s3"
    graceful_timeout: int | None = None
    user_callback_urls: list[str] | None = None
    job_type: str | None = None
    run_name: str | None = None
    labels: list[str] | None = None
    metadata: dict[str, str] | None = None


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int = 1
    detail: Any = "injected fault"
    headers: dict[str, str] = field(default_factory=dict)
    echo_auth: bool = False


@dataclass
class Execution:
    id: str
    kind: str
    body: dict[str, Any]
    hardware_profile: str
    token: str
    status: str = "pending"
    output: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=_now)
    job_start: str | None = None
    job_end: str | None = None
    return_code: int | None = None
    system_errors: list[Any] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    ended_by: str | None = None  # "abort", "stop", "timeout", "system"
    stream_connections: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    started_mono: float = 0.0


class StandIn:
    def __init__(
        self,
        *,
        api_key: str,
        work_dir: Path,
        mount_dir: Path,
        s3_endpoint: str,
        bucket: str,
        machine_types: dict[str, float] | None = None,
        available: list[str] | None = None,
        max_body: int = 50 * 2**20,
        graceful_timeout: float = 2.0,
    ) -> None:
        self.api_key = api_key
        self.work_dir = work_dir
        self.mount_dir = mount_dir
        self.s3_endpoint = s3_endpoint
        self.bucket = bucket
        self.machine_types = machine_types or {
            "cpu": 0.1,
            "gpu.t4": 0.3,
            "gpu.l40s": 1.29,
            "gpu.a100": 2.49,
            "gpu.a100.80gb": 2.99,
            "gpu.h100": 3.99,
        }
        self.available = available if available is not None else []
        self.max_body = max_body
        self.graceful_timeout = graceful_timeout
        self.executions: dict[str, Execution] = {}
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.system_failure_next = False
        self.drop_stream_after: int | None = None
        self.image_timeout_max: int | None = None
        self.access_tokens: dict[str, float] = {}  # JWT access token -> exp (epoch seconds)
        self.refresh_tokens: set[str] = set()  # valid refresh tokens
        self.refreshed_lifetime = 3600.0  # seconds an access token from /auth/refresh lives
        self.import_subdir: str | None = None
        self.python_in_thread = False
        self.system_error_objects = False
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced: dict[str, tuple[int, int]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = self._build()

    # -------------------------------------------------------------------------------- control

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + PREFIX

    def login(self, expires_in: float) -> tuple[str, str]:
        """An access token expiring ``expires_in`` seconds from now (negative: already expired) and a refresh
        token, as ``lyceum auth login`` receives them."""
        access = _jwt(time.time() + expires_in)
        refresh = f"rt_{uuid.uuid4().hex}"
        with self._lock:
            self.access_tokens[access] = _jwt_exp(access)
            self.refresh_tokens.add(refresh)
        return access, refresh

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        detail: Any = "injected fault",
        headers: dict[str, str] | None = None,
        echo_auth: bool = False,
    ) -> None:
        self.faults.append(Fault(method, re.compile(path), status, times, detail, headers or {}, echo_auth))

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        for ex in list(self.executions.values()):
            self._kill(ex, signal.SIGKILL)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def wait_terminal(self, execution_id: str, timeout: float = 30.0) -> Execution:
        ex = self.executions[execution_id]
        deadline = time.monotonic() + timeout
        with ex.cond:
            while ex.status not in TERMINAL and time.monotonic() < deadline:
                ex.cond.wait(0.05)
        return ex

    def text(self, execution_id: str) -> str:
        return "".join(self.executions[execution_id].output)

    # -------------------------------------------------------------------------------- storage (moto S3)

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def sync_from_bucket(self) -> None:
        with self._sync_lock:
            s3 = self.s3()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for obj in page.get("Contents", []):
                    target = self.mount_dir / obj["Key"]
                    if obj["Key"] in self._synced and target.exists():
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(self.bucket, obj["Key"], str(target))
                    st = target.stat()
                    self._synced[obj["Key"]] = (st.st_size, st.st_mtime_ns)

    def sync_to_bucket(self) -> None:
        with self._sync_lock:
            s3 = self.s3()
            present: dict[str, tuple[int, int]] = {}
            for path in self.mount_dir.rglob("*"):
                if path.is_file():
                    st = path.stat()
                    present[path.relative_to(self.mount_dir).as_posix()] = (st.st_size, st.st_mtime_ns)
            for key, sig in present.items():
                if self._synced.get(key) != sig:
                    s3.upload_file(str(self.mount_dir / key), self.bucket, key)
                    self._synced[key] = sig
            for key in set(self._synced) - set(present):
                s3.delete_object(Bucket=self.bucket, Key=key)
                del self._synced[key]

    # -------------------------------------------------------------------------------- executions

    def _kill(self, ex: Execution, sig: int) -> None:
        if ex.proc is not None and ex.proc.poll() is None:
            # SIGKILL ends the execution's container: every process in it, also those in their own session
            # (runctl's bootstrap starts the script with start_new_session); SIGTERM goes to the main process group
            victims = _descendants(ex.proc.pid) if sig == signal.SIGKILL else []
            try:
                os.killpg(ex.proc.pid, sig)
            except OSError:
                pass
            for pid in victims:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, sig)
                    except OSError:
                        pass

    def _launch(self, ex: Execution) -> None:
        sandbox = self.work_dir / ex.id
        sandbox.mkdir(parents=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(sandbox), "LANG": "C.UTF-8"}
        if ex.kind == "python":
            name = ex.body.get("file_name") or "main.py"
            code_dir = sandbox / "code" if self.import_subdir else sandbox
            code_dir.mkdir(parents=True, exist_ok=True)
            (code_dir / name).write_text(ex.body["code"], encoding="utf-8")
            files_dir = sandbox / self.import_subdir if self.import_subdir else sandbox
            for rel, content in json.loads(ex.body.get("import_files") or "{}").items():
                target = files_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
            path = str(code_dir / name)
            if self.python_in_thread:
                # run the code in a worker thread, its exit status carried back to the process
                runner = (
                    "import runpy, sys, threading\n"
                    "box = [0]\n"
                    "def go():\n"
                    "    try:\n"
                    f"        runpy.run_path({path!r}, run_name='__main__')\n"
                    "    except SystemExit as exc:\n"
                    "        box[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)\n"
                    "t = threading.Thread(target=go); t.start(); t.join(); sys.exit(box[0])\n"
                )
                command = [sys.executable, "-c", runner]
            else:
                command = [sys.executable, path]
        else:
            command = [sys.executable if part in ("python3", "python") else part for part in ex.body["docker_run_cmd"]]
            for line in (ex.body.get("docker_run_env") or "").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    env[key] = value
        threading.Thread(target=self._run, args=(ex, command, sandbox, env), daemon=True).start()

    def _append(self, ex: Execution, text: str) -> None:
        with ex.cond:
            ex.output.append(text)
            ex.cond.notify_all()

    def _set(self, ex: Execution, status: str) -> None:
        with ex.cond:
            ex.status = status
            ex.cond.notify_all()

    def _run(self, ex: Execution, command: list[str], sandbox: Path, env: dict[str, str]) -> None:
        self.sync_from_bucket()
        system_failure = self.system_failure_next
        self.system_failure_next = False
        ex.proc = subprocess.Popen(
            command,
            cwd=sandbox,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ex.job_start = _now()
        ex.started_mono = time.monotonic()
        self._set(ex, "running")
        timeout = float(ex.body.get("timeout", 60))
        stop_sync = threading.Event()

        def mirror() -> None:
            while not stop_sync.wait(0.1):
                self.sync_to_bucket()

        threading.Thread(target=mirror, daemon=True).start()
        reader = threading.Thread(target=self._read, args=(ex,), daemon=True)
        reader.start()
        while ex.proc.poll() is None:
            if system_failure and ex.output:
                ex.ended_by = "system"
                message = "node lost (injected by the stand-in)"
                ex.system_errors.append(
                    {"code": "node_lost", "message": message} if self.system_error_objects else message
                )
                self._kill(ex, signal.SIGKILL)
            elif time.monotonic() - ex.started_mono > timeout and ex.ended_by is None:
                ex.ended_by = "timeout"
                self._kill(ex, signal.SIGKILL)
            time.sleep(0.02)
        reader.join(5)
        stop_sync.set()
        if ex.ended_by != "abort":  # a hard abort gives the mount no time to flush
            self.sync_to_bucket()
        rc = ex.proc.returncode
        ex.return_code = rc if rc >= 0 else 128 - rc
        ex.job_end = _now()
        status = {"abort": "aborted", "stop": "completed", "timeout": "timeout", "system": "failed_system"}.get(
            ex.ended_by or "", "completed" if rc == 0 else "failed_user"
        )
        if ex.ended_by in ("abort", "system"):
            ex.return_code = None
        self._set(ex, status)

    def _read(self, ex: Execution) -> None:
        assert ex.proc is not None and ex.proc.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = ex.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            text = decoder.decode(data)
            if text:
                self._append(ex, text)
        rest = decoder.decode(b"", final=True)
        if rest:
            self._append(ex, rest)

    def _record(self, ex: Execution) -> dict[str, Any]:
        duration = 0.0
        if ex.job_start:
            end = datetime.fromisoformat(ex.job_end) if ex.job_end else datetime.now(timezone.utc)
            duration = (end - datetime.fromisoformat(ex.job_start)).total_seconds()
        return {
            "execution_id": ex.id,
            "status": ex.status,
            "file_name": ex.body.get("file_name"),
            "hardware_profile": ex.hardware_profile,
            "execution_type": ex.kind,
            "return_code": ex.return_code,
            "billed": round(self.machine_types.get(ex.hardware_profile, 0) * duration / 3600, 6),
            "created_at": ex.created_at,
            "job_start": ex.job_start,
            "job_end": ex.job_end,
            "system_errors": ex.system_errors,
            "run_name": ex.body.get("run_name"),
            "labels": ex.body.get("labels"),
            "metadata": ex.body.get("metadata"),
        }

    # -------------------------------------------------------------------------------- the app

    def _build(self) -> FastAPI:
        app = FastAPI()
        standin = self

        @app.middleware("http")
        async def faults_and_limits(request: Request, call_next: Any) -> Any:
            auth = request.headers.get("authorization")
            standin.requests.append({"method": request.method, "path": request.url.path, "auth": auth is not None})
            for fault in list(standin.faults):
                if fault.method == request.method and fault.path.search(request.url.path) and fault.times > 0:
                    fault.times -= 1
                    detail = f"{fault.detail} (got {auth})" if fault.echo_auth else fault.detail
                    return JSONResponse({"detail": detail}, status_code=fault.status, headers=fault.headers)
            length = int(request.headers.get("content-length") or 0)
            if length > standin.max_body:
                return JSONResponse({"detail": "Request body too large"}, status_code=413)
            return await call_next(request)

        def authorised(request: Request) -> None:
            header = request.headers.get("authorization") or ""
            if header == f"Bearer {standin.api_key}":
                return
            exp = standin.access_tokens.get(header.removeprefix("Bearer "))
            if exp is None or exp <= time.time():
                raise HTTPException(status_code=401, detail="Invalid or missing API key")

        @app.post(PREFIX + "/auth/refresh")
        def refresh(body: RefreshBody) -> Any:
            with standin._lock:
                if body.refresh_token not in standin.refresh_tokens:
                    return JSONResponse({"detail": "Invalid refresh token"}, status_code=401)
                standin.refresh_tokens.discard(body.refresh_token)
                access, rotated = _jwt(time.time() + standin.refreshed_lifetime), f"rt_{uuid.uuid4().hex}"
                standin.access_tokens[access] = _jwt_exp(access)
                standin.refresh_tokens.add(rotated)
            return {"access_token": access, "refresh_token": rotated, "token_type": "bearer"}

        auth = [Depends(authorised)]

        def find(execution_id: str) -> Execution:
            ex = standin.executions.get(execution_id)
            if ex is None:
                raise HTTPException(status_code=404, detail="Execution not found")
            return ex

        def check_profile(profile: str) -> None:
            if profile not in standin.machine_types:
                raise HTTPException(status_code=400, detail=f"Unknown execution_type '{profile}'")

        def started(ex: Execution) -> dict[str, Any]:
            with standin._lock:
                standin.executions[ex.id] = ex
            standin._launch(ex)
            return {
                "execution_id": ex.id,
                "status": "pending",
                "streaming_url": f"{standin.root}/stream/{ex.id}?token={ex.token}",
            }

        @app.get(PREFIX + "/machine-types", dependencies=auth)
        def machine_types() -> dict[str, Any]:
            return {
                "machine_types": [
                    {"hardware_profile": k, "price_per_hour": v} for k, v in standin.machine_types.items()
                ]
            }

        @app.get(PREFIX + "/user/quotas/available-hardware", dependencies=auth)
        def available() -> dict[str, Any]:
            return {"available_hardware_profiles": standin.available}

        @app.get(PREFIX + "/user/org", dependencies=auth)
        def org() -> dict[str, Any]:
            return {
                "org_id": "org-1",
                "slug": "standin-org",
                "name": "Stand-in",
                "is_personal": True,
                "is_key_scoped": False,
            }

        @app.post(PREFIX + "/execution/streaming/start", dependencies=auth)
        def start_python(body: StreamingStart) -> dict[str, Any]:
            check_profile(body.execution_type)
            if body.import_files is not None:
                try:
                    files = json.loads(body.import_files)
                    ok = isinstance(files, dict) and all(isinstance(v, str) for v in files.values())
                except ValueError:
                    ok = False
                if not ok:
                    raise HTTPException(
                        status_code=422,
                        detail=[
                            {
                                "type": "value_error",
                                "loc": ["body", "import_files"],
                                "msg": "Value error, import_files must be a JSON object of path -> content",
                                "input": body.import_files[:100],
                            }
                        ],
                    )
            ex = Execution(
                id=str(uuid.uuid4()),
                kind="python",
                body=body.model_dump(),
                hardware_profile=body.execution_type,
                token=uuid.uuid4().hex,
            )
            return started(ex)

        @app.post(PREFIX + "/execution/image/start", dependencies=auth)
        def start_image(body: ImageStart) -> dict[str, Any]:
            check_profile(body.execution_type)
            limit = standin.image_timeout_max
            if limit is not None and body.timeout > limit:
                raise HTTPException(
                    status_code=422,
                    detail=[
                        {
                            "type": "less_than_equal",
                            "loc": ["body", "timeout"],
                            "msg": f"Input should be less than or equal to {limit}",
                            "input": body.timeout,
                        }
                    ],
                )
            ex = Execution(
                id=str(uuid.uuid4()),
                kind="image",
                body=body.model_dump(),
                hardware_profile=body.execution_type,
                token=uuid.uuid4().hex,
            )
            return started(ex)

        @app.get(PREFIX + "/execution/streaming/{execution_id}/status", dependencies=auth)
        def status(execution_id: str) -> dict[str, Any]:
            ex = find(execution_id)
            return {"status": ex.status, "errors": ex.system_errors or None}

        @app.get(PREFIX + "/execution/{execution_id}", dependencies=auth)
        def record(execution_id: str) -> dict[str, Any]:
            return standin._record(find(execution_id))

        @app.get(PREFIX + "/logs/execution/{execution_id}", dependencies=auth)
        def logs(execution_id: str, limit: int = 1000, hours: int = 24) -> dict[str, Any]:
            ex = find(execution_id)
            lines = "".join(ex.output).splitlines()[:limit]
            return {"logs": [{"timestamp": ex.created_at, "message": line} for line in lines], "total": len(lines)}

        @app.post(PREFIX + "/workloads/abort/{execution_id}", dependencies=auth)
        def abort(execution_id: str) -> dict[str, Any]:
            ex = find(execution_id)
            if ex.status in TERMINAL:
                return {"message": "Execution already finished"}
            ex.ended_by = ex.ended_by or "abort"
            standin._kill(ex, signal.SIGKILL)
            return {"message": "Execution aborted"}

        @app.post(PREFIX + "/workloads/stop/{execution_id}", dependencies=auth)
        def stop(execution_id: str) -> dict[str, Any]:
            ex = find(execution_id)
            if ex.status in TERMINAL:
                return {"message": "Execution already finished"}
            ex.ended_by = ex.ended_by or "stop"
            standin._kill(ex, signal.SIGTERM)
            threading.Timer(standin.graceful_timeout, standin._kill, args=(ex, signal.SIGKILL)).start()
            return {"message": "Execution stopped"}

        @app.get(PREFIX + "/workloads/list", dependencies=auth)
        def workloads() -> list[dict[str, Any]]:
            return [
                {k: v for k, v in standin._record(ex).items() if k not in ("system_errors",)}
                for ex in standin.executions.values()
                if ex.status not in TERMINAL
            ]

        @app.post(PREFIX + "/storage/credentials", dependencies=auth)
        def credentials() -> dict[str, Any]:
            return {
                "access_key": "testing",
                "secret_key": "testing",
                "session_token": "standin-session",
                "endpoint": standin.s3_endpoint,
                "bucket_name": standin.bucket,
                "region": "us-east-1",
            }

        @app.api_route("/stream/{execution_id}", methods=["GET", "POST"])
        def stream(execution_id: str, token: str = "") -> Any:
            ex = standin.executions.get(execution_id)
            if ex is None or token != ex.token:
                return JSONResponse({"detail": "Stream not found"}, status_code=404)
            ex.stream_connections += 1
            drop = standin.drop_stream_after if ex.stream_connections == 1 else None
            return StreamingResponse(standin._events(ex, drop), media_type="text/event-stream")

        return app

    def _events(self, ex: Execution, drop_after: int | None) -> Any:
        index = 0
        sent = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with ex.cond:
                chunks = ex.output[index:]
                done = ex.status in TERMINAL
                if not chunks and not done:
                    ex.cond.wait(0.05)
                    continue
            for chunk in chunks:
                yield f"data: {json.dumps({'output': {'content': chunk}})}\n\n"
                index += 1
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    return
            if done and index >= len(ex.output):
                result = {"returnCode": ex.return_code, "error": "; ".join(map(str, ex.system_errors)) or None}
                yield f"data: {json.dumps({'jobFinished': {'job': {'result': result}}})}\n\n"
                return

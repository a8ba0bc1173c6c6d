"""SSH and SFTP to a pod, with asyncssh (imported at first use), from synchronous hook code.

One background thread runs an asyncio loop; connections are cached per (host, port, key) so polling a pod does
not pay a handshake each time. The pod's host key is trusted on first use and pinned after that (the caller
stores it with the pod's record). Failures to reach the pod raise :class:`SshUnavailable` (a
:class:`TransientError`); a command that runs and fails is returned, not raised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import posixpath
import stat
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runctl_core.errors import ProviderError, TransientError

T = TypeVar("T")


class SshUnavailable(TransientError):
    """The pod did not answer over SSH (not started yet, gone, or the network failed)."""

    code = "ssh_unavailable"


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key_path: Path
    host_key: str | None = None  # pinned OpenSSH public host key, after the first connection


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the walked directory, POSIX
    size: int
    mtime: float


class _Loop:
    """A daemon thread running one asyncio loop for every SSH connection of the process."""

    _lock = threading.Lock()
    _instance: _Loop | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="runctl-runpod-ssh", daemon=True)
        self.thread.start()
        self.connections: dict[tuple[str, int, str], Any] = {}

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Loop()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise SshUnavailable(f"SSH operation took longer than {timeout:g}s") from None
        except BaseException:
            future.cancel()
            raise


class PodSsh:
    """SSH/SFTP operations on one pod."""

    def __init__(
        self,
        target: SshTarget,
        *,
        connect_timeout: float = 15.0,
        on_host_key: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.on_host_key = on_host_key
        self._host_key = target.host_key
        self._loop = _Loop.get()

    @property
    def _cache_key(self) -> tuple[str, int, str]:
        return (self.target.host, self.target.port, str(self.target.key_path))

    # ------------------------------------------------------------------------- connection

    async def _connection(self) -> Any:
        import asyncssh

        cached = self._loop.connections.get(self._cache_key)
        if cached is not None and not cached.is_closed():
            return cached
        if not self.target.key_path.is_file():
            raise ProviderError(
                f"the SSH key for this pod is missing ({self.target.key_path})",
                "runctl keeps one key pair per pod in its state directory; the pod cannot be reached without it",
            )
        if self._host_key:
            known_hosts: Any = ([asyncssh.import_public_key(self._host_key)], [], [])
        else:
            known_hosts = None  # first contact with a new pod: trust on first use, then pin
        try:
            conn = await asyncssh.connect(
                self.target.host,
                self.target.port,
                username=self.target.user,
                client_keys=[str(self.target.key_path)],
                known_hosts=known_hosts,
                connect_timeout=self.connect_timeout,
                keepalive_interval=30,
                agent_path=None,
                config=None,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise ProviderError(
                f"the pod's SSH host key changed ({self.target.host}:{self.target.port}): {exc}",
                "the pod was replaced or the connection is intercepted; terminate it and create a new one",
            ) from None
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise SshUnavailable(
                f"no SSH answer from {self.target.host}:{self.target.port} ({type(exc).__name__}: {exc})"
            ) from None
        if not self._host_key:
            server_key = conn.get_server_host_key()
            if server_key is not None:
                self._host_key = server_key.export_public_key().decode().strip()
                if self.on_host_key is not None:
                    self.on_host_key(self._host_key)
        self._loop.connections[self._cache_key] = conn
        return conn

    async def _with_retry(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``operation(conn)``; when a cached connection turns out dead, reconnect once."""
        import asyncssh

        for attempt in (1, 2):
            conn = await self._connection()
            try:
                return await operation(conn)
            except (
                asyncssh.ConnectionLost,
                asyncssh.DisconnectError,
                asyncssh.ChannelOpenError,  # a cached connection whose pod died: channels can no longer open
                BrokenPipeError,
                ConnectionError,
            ) as exc:
                self._loop.connections.pop(self._cache_key, None)
                if attempt == 2:
                    raise SshUnavailable(f"SSH connection to the pod was lost ({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, coro_factory: Callable[[Any], Awaitable[T]], timeout: float) -> T:
        import asyncssh

        async def main() -> T:
            try:
                return await self._with_retry(coro_factory)
            except asyncssh.SFTPError as exc:
                raise ProviderError(f"SFTP on the pod failed: {exc.reason}") from None
            except asyncssh.Error as exc:  # any other SSH-level failure: the pod is not reachable right now
                raise SshUnavailable(f"SSH to the pod failed ({type(exc).__name__}: {exc})") from None

        return self._loop.run(main(), timeout + self.connect_timeout)

    def close(self) -> None:
        conn = self._loop.connections.pop(self._cache_key, None)
        if conn is not None:
            self._loop.loop.call_soon_threadsafe(conn.close)

    # ------------------------------------------------------------------------- commands

    def run(self, command: str, *, timeout: float = 120.0, check: bool = False) -> CommandResult:
        async def op(conn: Any) -> CommandResult:
            result = await conn.run(command, check=False, timeout=timeout)
            status = result.exit_status if result.exit_status is not None else 255
            return CommandResult(status, _text(result.stdout), _text(result.stderr))

        result = self._run(op, timeout)
        if check and result.exit_status != 0:
            raise ProviderError(
                f"command on the pod failed with exit code {result.exit_status}: {result.stderr.strip()[-500:]}"
            )
        return result

    def exec_bytes(self, command: str, stdin: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
        """Run ``command`` feeding it ``stdin``; return (exit status, stdout, stderr) as bytes."""

        async def op(conn: Any) -> tuple[int, bytes, bytes]:
            result = await conn.run(command, check=False, timeout=timeout, input=stdin or b"", encoding=None)
            status = result.exit_status if result.exit_status is not None else 255
            return status, bytes(result.stdout or b""), bytes(result.stderr or b"")

        return self._run(op, timeout)

    def put_atomic(self, source: bytes | Path, path: str, mode: int, timeout: float = 3600.0) -> None:
        """Write ``source`` to ``path`` through a temporary name, then rename: it appears whole or not at all."""
        import asyncssh

        tmp = f"{path}.runctl-tmp"

        async def op(conn: Any) -> None:
            async with conn.start_sftp_client() as sftp:
                await sftp.makedirs(posixpath.dirname(path), exist_ok=True)
                if isinstance(source, bytes):
                    async with sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=mode)) as fh:
                        await fh.write(source)
                else:
                    await sftp.put(str(source), tmp)
                await sftp.chmod(tmp, mode)
                await sftp.posix_rename(tmp, path)

        self._run(op, timeout)

    def get_file(self, path: str, dest: Path, timeout: float = 3600.0) -> None:
        """Download one file; a missing one raises FileNotFoundError."""

        async def op(conn: Any) -> None:
            async with conn.start_sftp_client() as sftp:
                try:
                    await sftp.get(path, str(dest), preserve=True)
                except Exception as exc:
                    if _is_no_such_file(exc):
                        raise FileNotFoundError(path) from None
                    raise

        self._run(op, timeout)

    # ------------------------------------------------------------------------- files

    def read(self, path: str, offset: int, length: int, timeout: float = 60.0, missing_ok: bool = True) -> bytes:
        """Up to ``length`` bytes of ``path`` from ``offset``; a missing file gives b"" (or FileNotFoundError)."""

        async def op(conn: Any) -> bytes:
            async with conn.start_sftp_client() as sftp:
                try:
                    async with sftp.open(path, "rb") as fh:
                        await fh.seek(offset)
                        data = await fh.read(length)
                        return bytes(data)
                except Exception as exc:
                    if _is_no_such_file(exc):
                        if missing_ok:
                            return b""
                        raise FileNotFoundError(path) from None
                    raise

        return self._run(op, timeout)

    def walk(self, directory: str, timeout: float = 300.0) -> list[RemoteFile]:
        """Every regular file below ``directory`` (empty when it does not exist)."""

        async def op(conn: Any) -> list[RemoteFile]:
            found: list[RemoteFile] = []
            async with conn.start_sftp_client() as sftp:
                if not await sftp.isdir(directory):
                    return found
                pending = [""]
                while pending:
                    rel_dir = pending.pop()
                    for entry in await sftp.readdir(posixpath.join(directory, rel_dir) if rel_dir else directory):
                        name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode()
                        if name in (".", ".."):
                            continue
                        rel = posixpath.join(rel_dir, name) if rel_dir else name
                        perms = entry.attrs.permissions or 0
                        if stat.S_ISDIR(perms):
                            pending.append(rel)
                        elif stat.S_ISREG(perms):
                            found.append(RemoteFile(rel, entry.attrs.size or 0, float(entry.attrs.mtime or 0)))
            return sorted(found, key=lambda f: f.path)

        return self._run(op, timeout)

    def get_files(self, items: list[tuple[str, Path]], timeout: float = 3600.0, concurrency: int = 8) -> None:
        """Download (remote path, local path) pairs, creating local directories."""

        async def op(conn: Any) -> None:
            async with conn.start_sftp_client() as sftp:
                gate = asyncio.Semaphore(concurrency)

                async def one(remote: str, local: Path) -> None:
                    async with gate:
                        local.parent.mkdir(parents=True, exist_ok=True)
                        await sftp.get(remote, str(local), preserve=True)

                await asyncio.gather(*(one(remote, local) for remote, local in items))

        if items:
            self._run(op, timeout)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _is_no_such_file(exc: BaseException) -> bool:
    import asyncssh

    return isinstance(exc, asyncssh.SFTPNoSuchFile) or (
        isinstance(exc, asyncssh.SFTPError) and exc.code == asyncssh.FX_NO_SUCH_FILE
    )


def generate_key_pair(private_path: Path, comment: str) -> str:
    """Write a new ed25519 private key to ``private_path`` (mode 0600, directory 0700); return the public key
    in OpenSSH format (what RunPod's images put into ``authorized_keys`` from the ``PUBLIC_KEY`` variable)."""
    import os

    import asyncssh

    private_path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(private_path.parent, 0o700)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key())
    os.chmod(private_path, 0o600)
    return str(key.export_public_key().decode().strip())

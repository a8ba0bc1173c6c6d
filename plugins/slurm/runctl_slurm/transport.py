"""How runctl reaches the cluster's login node: a :class:`runctl_core.remote.transport.Transport` over SSH
(asyncssh: keys, the agent and ``~/.ssh/config`` host aliases as OpenSSH reads them), or this machine's
:class:`~runctl_core.remote.transport.LocalTransport` when the setting ``host`` is absent.

Every transport call is one round trip to the login node; :class:`Counting` counts them so that the submit
path can be measured (``round_trips`` in the provider's metrics file, read by benchmarks/).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shlex
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runctl_core.errors import AuthError, TransientError
from runctl_core.remote.transport import CommandResult, LocalTransport, RemoteFile, Transport, shell_line

T = TypeVar("T")


class _Loop:
    """One asyncio loop on a daemon thread for the process's SSH connections (hooks are synchronous)."""

    _lock = threading.Lock()
    _instance: _Loop | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="runctl-slurm-ssh", daemon=True).start()
        self.connections: dict[str, Any] = {}

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Loop()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TransientError(f"{what} took longer than {timeout:g}s", "the login node may be overloaded") from None


class SshTransport:
    """Commands on the login node ``host`` (an ``~/.ssh/config`` alias, ``user@host`` or ``user@host:port``)."""

    def __init__(self, host: str, connect_timeout: float = 30.0) -> None:
        self.host = host
        self.connect_timeout = connect_timeout
        self._loop = _Loop.get()

    def _target(self) -> dict[str, Any]:
        user, _, rest = self.host.rpartition("@")
        name, _, port = rest.partition(":")
        target: dict[str, Any] = {"host": name}
        if user:
            target["username"] = user
        if port.isdigit():
            target["port"] = int(port)
        return target

    async def _connection(self) -> Any:
        import asyncssh

        cached = self._loop.connections.get(self.host)
        if cached is not None and not cached.is_closed():
            return cached
        try:
            conn = await asyncio.wait_for(asyncssh.connect(**self._target()), self.connect_timeout)
        except asyncssh.PermissionDenied as exc:
            raise AuthError(
                f"the login node {self.host} refused runctl's SSH keys ({exc.reason})",
                f"check that `ssh {self.host} true` works without a password (keys, agent, ~/.ssh/config)",
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            raise AuthError(
                f"the host key of {self.host} is not in your known_hosts",
                f"connect once with `ssh {self.host}` and accept the key, then retry",
            ) from None
        except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
            raise TransientError(
                f"could not reach the login node {self.host} over SSH: {exc or type(exc).__name__}",
                f"check the network and `ssh {self.host} true`",
            ) from None
        self._loop.connections[self.host] = conn
        return conn

    async def _run(self, command: str, stdin: bytes | None) -> CommandResult:
        import asyncssh

        conn = await self._connection()
        try:
            result = await conn.run(command, input=stdin or b"", encoding=None, check=False)
        except (OSError, asyncssh.Error) as exc:
            self._loop.connections.pop(self.host, None)
            raise TransientError(f"the SSH connection to {self.host} failed: {exc}", "try again") from None
        code = result.exit_status if result.exit_status is not None else 255
        return CommandResult(exit_code=code, stdout=result.stdout or b"", stderr=result.stderr or b"")

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        command = shell_line(argv, env, cwd)  # never secrets in env: a job's environment travels in a 0600 file
        return self._loop.run(self._run(command, stdin), timeout, f"`{argv[0]}` on {self.host}")

    # files: through the shell, so that one command is one round trip and nothing but sshd is needed

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        data = source if isinstance(source, bytes) else source.read_bytes()
        tmp = f"{path}.tmp.runctl"
        script = (
            f'mkdir -p "$(dirname {shlex.quote(path)})" && umask 077 && cat > {shlex.quote(tmp)} && '
            f"chmod {mode:o} {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(path)}"
        )
        _check(self.run(["sh", "-c", script], stdin=data, timeout=300), f"writing {path}")

    def get(self, path: str, dest: Path) -> None:
        result = self.run(["cat", path], timeout=300)
        if result.exit_code != 0:
            raise FileNotFoundError(path)
        dest.write_bytes(result.stdout)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        script = f"test -f {shlex.quote(path)} || exit 3; tail -c +{offset + 1} {shlex.quote(path)} | head -c {length}"
        result = self.run(["sh", "-c", script], timeout=120)
        if result.exit_code == 3:
            raise FileNotFoundError(path)
        return result.stdout

    def walk(self, path: str) -> list[RemoteFile]:
        where = shlex.quote(path)
        script = f"test -d {where} || exit 0; cd {where} && find . -type f -printf '%P\\t%s\\t%T@\\n'"
        result = self.run(["sh", "-c", script], timeout=120)
        found = []
        for line in result.text.splitlines():
            rel, size, mtime = line.rsplit("\t", 2)
            found.append(RemoteFile(rel, int(size), float(mtime)))
        return sorted(found, key=lambda f: f.path)

    def remove(self, path: str) -> None:
        self.run(["rm", "-rf", "--", path], timeout=300)


def _check(result: CommandResult, what: str) -> None:
    if result.exit_code != 0:
        raise TransientError(f"{what} on the login node failed: {result.error_text[-300:]}", "try again")


class Counting:
    """Wraps a transport and counts its calls (each is one sequential round trip to the login node)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.count = 0

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        self.count += 1
        return self.inner.run(argv, **kwargs)

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        self.count += 1
        self.inner.put(source, path, mode=mode)

    def get(self, path: str, dest: Path) -> None:
        self.count += 1
        self.inner.get(path, dest)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self.count += 1
        return self.inner.read_range(path, offset, length)

    def walk(self, path: str) -> list[RemoteFile]:
        self.count += 1
        return self.inner.walk(path)

    def remove(self, path: str) -> None:
        self.count += 1
        self.inner.remove(path)


def transport_for(host: str | None) -> Counting:
    return Counting(SshTransport(host) if host else LocalTransport())

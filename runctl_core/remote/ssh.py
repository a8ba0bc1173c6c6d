"""The :class:`~runctl_core.remote.transport.Transport` over SSH, for every provider whose machines run sshd (a
RunPod pod, a Slurm login node, a VM with a public address...). A provider writes only how to find the machine
(its address, user, key) and builds an :class:`SshTransport`; the core's remote-job layer does the rest.

Install: ``pip install 'runctl[ssh]'`` (asyncssh, imported only when a connection is first made).

* **One connection per machine per process**, reused by every call (an asyncio loop on one daemon thread runs
  them all: hooks are synchronous). A connection found dead when a call opens its channel is replaced once,
  transparently (the command never started); one that drops *during* a command raises
  :class:`~runctl_core.errors.TransientError` and the next call connects again. Nothing else is retried here:
  the core's retry layer decides (one retry layer per call path).
* **Every operation is one SSH command** (one channel; files travel on its stdin/stdout): the fewest round
  trips, and nothing needed on the machine but sshd, a POSIX shell, coreutils and GNU ``find`` (SFTP would
  take a subsystem start and one request per directory level, open, write, close, chmod and rename). ``put``
  writes a temporary file next to the target, checks its size (a connection lost mid-transfer gives the
  command a short EOF) and renames it over the target: the file appears whole or not at all.
* **Environment values never reach a command line**: when ``env`` is given, the command becomes
  ``sh -c '<prelude>' runctl-env ARGV...`` and the values are sent first on the channel's stdin as quoted
  ``export`` lines which the prelude reads (one byte at a time, as ``read`` does on a pipe) and evaluates before
  ``exec``-ing ARGV with the rest of stdin. So neither ``ps`` on the machine nor sshd's logs show them
  (OpenSSH's ``SetEnv``/``AcceptEnv`` would also hide them, but sshd drops every name its ``AcceptEnv`` does
  not list - by default all but ``LANG``/``LC_*`` on Debian). Names must be shell identifiers.
* **Host keys**, two policies (:class:`SshTarget` ``host_keys``):

  - ``"user"`` - the user's OpenSSH setup: ``~/.ssh/config`` (host aliases, ``User``, ``Port``,
    ``IdentityFile``, ``ProxyJump``), ``~/.ssh/known_hosts`` and the agent, as ``ssh HOST`` would. An unknown
    host key is refused (connect once with ``ssh`` to accept it). For machines the user already reaches
    (a Slurm login node).
  - ``"pinned"`` - runctl's own: only the target's key, no ssh config, no agent; the host key must equal
    ``host_key``. When ``host_key`` is None (first contact) the key offered is trusted and handed to
    ``on_host_key`` so the caller stores it; later connections refuse any other key. For machines runctl
    creates: their host keys are generated when they boot (so no known_hosts can list them beforehand), and
    their addresses are reused by other machines (so a known_hosts entry would soon be wrong).

* **Errors** (the Transport contract): the machine not answering, refusing the connection, a connection lost
  or a timeout -> :class:`TransientError` naming the machine, with a hint; the key refused -> ``AuthError``; a
  host key that is not the known one -> ``AuthError``; a missing key file -> ``PrerequisiteError``; a missing
  file for ``get``/``read_range`` -> :class:`FileNotFoundError`. This transport cannot tell a machine that is
  gone from one that does not answer: a provider's address lookup raises ``NotFoundError`` (e.g. RunPod asks
  its API). Messages name the program run, never its arguments, environment or stdin.

The remote user's login shell must be POSIX (sh, bash, dash, zsh): it parses each command line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import posixpath
import re
import shlex
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

from runctl_core.errors import AuthError, PrerequisiteError, ProviderError, TransientError
from runctl_core.remote.transport import CommandResult, RemoteFile, shell_line

T = TypeVar("T")
CHUNK = 1 << 16
MISSING = 44  # exit code of get/read_range scripts for a missing file
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# reads "N\n" then N lines of `export K='v'` from stdin, evaluates them, and runs "$@" with the rest of stdin
_ENV_PRELUDE = (
    'read -r n || exit 125; e=; while [ "$n" -gt 0 ]; do IFS= read -r l || exit 125; e="$e$l\n"; '
    'n=$((n-1)); done; eval "$e"; unset e l n; exec "$@"'
)
__all__ = ["SshTarget", "SshTransport", "close_all", "generate_key_pair"]


@dataclass(frozen=True)
class SshTarget:
    """Where a machine is and how to log in. ``host`` may be an ``~/.ssh/config`` alias (policy ``"user"``).
    ``key_file`` or ``private_key`` (unencrypted OpenSSH/PEM text, kept in memory, never shown) is the client
    key; with policy ``"user"`` both may be omitted (the agent and ``~/.ssh/id_*`` are used)."""

    host: str
    port: int | None = None
    user: str | None = None
    key_file: Path | None = None
    private_key: str | None = field(default=None, repr=False)
    host_keys: Literal["user", "pinned"] = "user"
    host_key: str | None = None  # policy "pinned": the machine's OpenSSH public host key, once known

    @classmethod
    def parse(cls, address: str, **options: Any) -> SshTarget:
        """``user@host:port``, ``user@host``, ``host`` or an ssh config alias."""
        user, _, rest = address.rpartition("@")
        host, _, port = rest.partition(":")
        return cls(host=host, port=int(port) if port.isdigit() else None, user=user or None, **options)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}" + (f":{self.port}" if self.port else "")

    def ssh_command(self) -> str:
        """The equivalent OpenSSH command, for hints."""
        port = f" -p {self.port}" if self.port else ""
        key = f" -i {self.key_file}" if self.key_file else ""
        return f"ssh{port}{key} {self.user + '@' if self.user else ''}{self.host}"

    def pool_key(self) -> tuple[object, ...]:
        secret = hashlib.sha256(self.private_key.encode()).hexdigest() if self.private_key else None
        return (self.host, self.port, self.user, str(self.key_file or ""), secret, self.host_keys)


class _Loop:
    """One asyncio loop on a daemon thread for every SSH connection of the process (a new one after a fork)."""

    _lock = threading.Lock()
    _instance: _Loop | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="runctl-ssh", daemon=True).start()
        self.connections: dict[tuple[object, ...], Any] = {}
        self.locks: dict[tuple[object, ...], asyncio.Lock] = {}

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = _Loop()
            return cls._instance

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: the channel is closed by the coroutine's cleanup
            raise


def close_all() -> None:
    """Close every cached SSH connection of this process."""
    loop = _Loop._instance
    if loop is not None and loop.pid == os.getpid():
        for conn in list(loop.connections.values()):
            loop.loop.call_soon_threadsafe(conn.close)
        loop.connections.clear()


class SshTransport:
    """:class:`~runctl_core.remote.transport.Transport` to one machine over SSH (see the module docstring).

    ``label`` names the machine in messages ("pod abc123", "the login node hpc"); ``connect_timeout`` bounds
    connecting (TCP, key exchange, authentication); ``file_timeout`` bounds each put/get/read_range/walk/remove;
    ``on_host_key`` receives the host key trusted at first contact (policy ``"pinned"``)."""

    def __init__(
        self,
        target: SshTarget,
        *,
        label: str | None = None,
        connect_timeout: float = 15.0,
        file_timeout: float = 3600.0,
        on_host_key: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.label = label or str(target)
        self.connect_timeout = connect_timeout
        self.file_timeout = file_timeout
        self.on_host_key = on_host_key

    # ------------------------------------------------------------------------------------------ Transport

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run ``argv`` (``env`` sent on stdin, never on the command line; see the module docstring)."""
        if env:
            for name in env:
                if not _NAME.match(name):
                    raise ValueError(f"environment variable name {name!r} is not a shell identifier")
            block = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
            header = f"{block.count(chr(10)) + 1}\n{block}\n".encode()
            command = shell_line(["sh", "-c", _ENV_PRELUDE, "runctl-env", *argv], None, cwd)
            data: list[bytes] = [header, stdin or b""]
        else:
            command, data = shell_line(argv, None, cwd), [stdin or b""]
        return self._call(self._exec(command, _chunks(data)), timeout, posixpath.basename(argv[0]))

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        q, folder = shlex.quote, posixpath.dirname(path) or "/"
        tmp = q(posixpath.join(folder, f".{posixpath.basename(path)}.runctl-tmp")) + ".$$"
        script = (
            f'mkdir -p {q(folder)} && (umask 077 && cat > {tmp}) && [ "$(wc -c < {tmp})" -eq {size} ] && '
            f"chmod {mode:o} {tmp} && mv -f {tmp} {q(path)} || {{ s=$?; rm -f {tmp}; exit $s; }}"
        )
        feed = _chunks([source]) if isinstance(source, bytes) else _file_chunks(source, size)
        result = self._call(self._exec(shell_line(["sh", "-c", script]), feed), self.file_timeout, "put")
        if result.exit_code != 0:
            raise ProviderError(
                f"could not write {path} on {self.label}: {result.error_text[-300:] or 'incomplete transfer'}",
                "check the free space and permissions there, then try again",
            )

    def get(self, path: str, dest: Path) -> None:
        q = shlex.quote
        script = f"[ -f {q(path)} ] || exit {MISSING}; exec cat -- {q(path)}"
        tmp = dest.with_name(f".{dest.name}.runctl-tmp")
        try:
            with tmp.open("wb") as out:
                command = shell_line(["sh", "-c", script])
                result = self._call(self._exec(command, _chunks([b""]), sink=out), self.file_timeout, "get")
            if result.exit_code == MISSING:
                raise FileNotFoundError(path)
            if result.exit_code != 0:
                raise ProviderError(f"could not read {path} on {self.label}: {result.error_text[-300:]}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        q = shlex.quote
        script = f"[ -f {q(path)} ] || exit {MISSING}; tail -c +{max(0, offset) + 1} {q(path)} | head -c {length}"
        result = self._shell(script, "read_range")
        if result.exit_code == MISSING:
            raise FileNotFoundError(path)
        if result.exit_code != 0:
            raise ProviderError(f"could not read {path} on {self.label}: {result.error_text[-300:]}")
        return result.stdout[: max(0, length)]

    def walk(self, path: str) -> list[RemoteFile]:
        q = shlex.quote(path)
        script = f"[ -d {q} ] || exit 0; cd {q} && find . -type f -printf '%s %T@ %P\\0'"
        result = self._shell(script, "walk")
        if result.exit_code != 0:
            raise ProviderError(
                f"could not list {path} on {self.label}: {result.error_text[-300:]}",
                "runctl needs GNU find on the machine (findutils)",
            )
        found = []
        for record in result.stdout.split(b"\0"):
            if record:
                size, mtime, rel = record.decode("utf-8", errors="surrogateescape").split(" ", 2)
                found.append(RemoteFile(rel, int(size), float(mtime)))
        return sorted(found, key=lambda f: f.path)

    def remove(self, path: str) -> None:
        if not path.startswith("/") or posixpath.normpath(path) == "/":
            raise ValueError(f"refusing to remove {path!r}: an absolute path below / is required")
        result = self._shell(f"rm -rf -- {shlex.quote(path)}", "remove")
        if result.exit_code != 0:
            raise ProviderError(f"could not remove {path} on {self.label}: {result.error_text[-300:]}")

    def close(self) -> None:
        """Close this machine's cached connection (the next call connects again)."""
        loop = _Loop._instance
        conn = loop.connections.pop(self.target.pool_key(), None) if loop is not None else None
        if loop is not None and conn is not None:
            loop.loop.call_soon_threadsafe(conn.close)

    # ------------------------------------------------------------------------------------------ internals

    def _shell(self, script: str, what: str) -> CommandResult:
        return self._call(self._exec(shell_line(["sh", "-c", script]), _chunks([b""])), self.file_timeout, what)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        try:
            return _Loop.get().call(bounded() if timeout else coro)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            raise TransientError(
                f"`{what}` did not finish within {timeout or 0:g}s on {self.label}",
                "the machine or the network may be overloaded; try again",
            ) from None

    async def _exec(self, command: str, feed: AsyncIterator[bytes], sink: BinaryIO | None = None) -> CommandResult:
        import asyncssh

        conn, fresh = await self._connection()
        try:
            process = await conn.create_process(command, encoding=None)
        except (asyncssh.Error, OSError):
            self._forget(conn)
            if fresh:
                raise self._lost("could not open a session") from None
            conn, _ = await self._connection()  # the cached connection had died: the command never started
            try:
                process = await conn.create_process(command, encoding=None)
            except (asyncssh.Error, OSError):
                self._forget(conn)
                raise self._lost("could not open a session") from None
        stderr = bytearray()
        stdout = bytearray()

        async def write() -> None:
            try:
                async for chunk in feed:
                    process.stdin.write(chunk)
                    await process.stdin.drain()
                process.stdin.write_eof()
            except (BrokenPipeError, ConnectionError, asyncssh.Error):
                pass  # the command exited without reading all its input, as with a local pipe

        async def read(stream: Any, into: bytearray, to: BinaryIO | None) -> None:
            while chunk := await stream.read(CHUNK):
                if to is not None:
                    to.write(chunk)
                else:
                    into.extend(chunk)

        try:
            await asyncio.gather(write(), read(process.stdout, stdout, sink), read(process.stderr, stderr, None))
            await process.wait_closed()
        except (asyncssh.Error, OSError):
            self._forget(conn)
            raise self._lost("the connection was lost during a command") from None
        finally:
            if not process.is_closing():
                process.close()  # timed out or interrupted: the channel goes, sshd hangs up on the command
        if process.exit_status is None and process.exit_signal is None:
            self._forget(conn)
            raise self._lost("the connection was lost during a command")
        code = process.returncode if process.returncode is not None else 255
        return CommandResult(exit_code=code, stdout=bytes(stdout), stderr=bytes(stderr))

    def _lost(self, what: str) -> TransientError:
        return TransientError(
            f"SSH to {self.label} failed: {what}",
            f"try again; if it persists check the machine and `{self.target.ssh_command()} true`",
        )

    def _forget(self, conn: Any) -> None:
        loop = _Loop.get()
        if loop.connections.get(self.target.pool_key()) is conn:
            del loop.connections[self.target.pool_key()]
        conn.abort()

    async def _connection(self) -> tuple[Any, bool]:
        """The cached connection (False) or a new one (True)."""
        loop = _Loop.get()
        key = self.target.pool_key()
        lock = loop.locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = loop.connections.get(key)
            if cached is not None and not cached.is_closed():
                return cached, False
            conn = await self._connect()
            loop.connections[key] = conn
            return conn, True

    async def _connect(self) -> Any:
        import asyncssh

        t = self.target
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout, "keepalive_interval": 30}
        if t.port:
            options["port"] = t.port
        if t.user:
            options["username"] = t.user
        keys: list[Any] = []
        if t.key_file is not None:
            if not t.key_file.is_file():
                raise PrerequisiteError(
                    f"the SSH key {t.key_file} for {self.label} is missing",
                    "the machine cannot be reached without it; restore the file or recreate the machine",
                )
            keys.append(str(t.key_file))
        if t.private_key:
            try:
                keys.append(asyncssh.import_private_key(t.private_key))
            except (ValueError, asyncssh.KeyImportError):
                raise PrerequisiteError(
                    f"the SSH key given for {self.label} is not an unencrypted OpenSSH or PEM private key",
                    "give an unencrypted key, or use a key file / the ssh agent",
                ) from None
        if keys:
            options["client_keys"] = keys
        if t.host_keys == "pinned":
            options.update(config=None, agent_path=None)
            options["known_hosts"] = ([asyncssh.import_public_key(t.host_key)], [], []) if t.host_key else None
        try:
            conn = await asyncssh.connect(t.host, **options)
        except asyncssh.PermissionDenied:
            raise AuthError(
                f"{self.label} refused runctl's SSH key",
                f"check that `{t.ssh_command()} true` works without a password (key, agent, ~/.ssh/config)",
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            if t.host_keys == "pinned":
                raise AuthError(
                    f"the SSH host key of {self.label} is not the one runctl saw first ({t})",
                    "the machine was replaced or the connection is intercepted; terminate it and create a new one",
                ) from None
            raise AuthError(
                f"the SSH host key of {self.label} is not in your known_hosts, or it changed",
                f"connect once with `{t.ssh_command()}` and check the key it shows, then retry",
            ) from None
        except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
            raise TransientError(
                f"could not reach {self.label} over SSH ({type(exc).__name__}: {exc})",
                f"check the network and that `{t.ssh_command()} true` works; then try again",
            ) from None
        if t.host_keys == "pinned" and not t.host_key:
            server_key = conn.get_server_host_key()
            if server_key is not None and self.on_host_key is not None:
                self.on_host_key(server_key.export_public_key().decode().strip())
        return conn


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        for start in range(0, len(part), CHUNK):
            yield part[start : start + CHUNK]


async def _file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` bytes of ``path`` (what ``put`` announced); a file that shrank fails the size check."""
    with path.open("rb") as fh:
        while size > 0 and (chunk := fh.read(min(CHUNK, size))):
            size -= len(chunk)
            yield chunk


def generate_key_pair(private_path: Path, comment: str) -> str:
    """Write a new ed25519 private key to ``private_path`` (mode 0600, directory 0700); return the public key in
    OpenSSH format (``ssh-ed25519 AAAA... comment``), e.g. for a machine's ``authorized_keys``."""
    import asyncssh

    private_path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(private_path.parent, 0o700)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key())
    os.chmod(private_path, 0o600)
    return str(key.export_public_key().decode().strip())

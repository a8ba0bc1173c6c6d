"""SSH connections for :mod:`runctl_core.remote.ssh`: where a machine is (:class:`SshTarget`), one connection per
machine per process (an asyncio loop on one daemon thread runs them all: hooks are synchronous), connecting with
one of two host-key policies, and the errors connecting can end in. asyncssh is imported only to connect.

Host keys (:class:`SshTarget` ``host_keys``):

- ``"user"`` - the user's OpenSSH setup: ``~/.ssh/config`` (host aliases, ``User``, ``Port``, ``IdentityFile``,
  ``ProxyJump``), ``~/.ssh/known_hosts`` and the agent, as ``ssh HOST`` would. An unknown host key is refused
  (connect once with ``ssh`` to accept it). For machines the user already reaches (a Slurm login node).
- ``"pinned"`` - runctl's own: only the target's key, no ssh config, no agent; the host key must equal
  ``host_key``. When ``host_key`` is None (first contact) the key offered is trusted and handed to
  ``on_host_key`` so the caller stores it; later connections refuse any other key. For machines runctl creates:
  their host keys are generated when they boot (so no known_hosts can list them beforehand), and their
  addresses are reused by other machines (so a known_hosts entry would soon be wrong).

Errors: not answering, refusing the connection or timing out -> ``TransientError`` naming the machine with the
equivalent ``ssh`` command as a hint; the client key refused -> ``AuthError``; a host key that is not the
expected one -> ``AuthError``; a missing or unreadable client key -> ``PrerequisiteError``. A private key given
in memory never appears in a ``repr``, a message or a hint.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from runctl_core.errors import AuthError, PrerequisiteError, TransientError

T = TypeVar("T")
KEEPALIVE = 15  # seconds between keepalives: a silently dead connection is noticed within 3 of them


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


class Loop:
    """One asyncio loop on a daemon thread for every SSH connection of the process (a new one after a fork)."""

    _lock = threading.Lock()
    _instance: Loop | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="runctl-ssh", daemon=True).start()
        self.connections: dict[tuple[object, ...], Any] = {}
        self.locks: dict[tuple[object, ...], asyncio.Lock] = {}

    @classmethod
    def get(cls) -> Loop:
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = Loop()
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
    loop = Loop._instance
    if loop is not None and loop.pid == os.getpid():
        for conn in list(loop.connections.values()):
            loop.loop.call_soon_threadsafe(conn.close)
        loop.connections.clear()


def forget(target: SshTarget, conn: Any) -> None:
    """Drop ``conn`` (dead or suspect) from the pool and abort it."""
    loop = Loop.get()
    if loop.connections.get(target.pool_key()) is conn:
        del loop.connections[target.pool_key()]
    conn.abort()


def close(target: SshTarget) -> None:
    """Close ``target``'s pooled connection, if any (the next call connects again)."""
    loop = Loop._instance
    conn = loop.connections.pop(target.pool_key(), None) if loop is not None else None
    if loop is not None and conn is not None:
        loop.loop.call_soon_threadsafe(conn.close)


async def pooled(
    target: SshTarget, label: str, connect_timeout: float, on_host_key: Callable[[str], None] | None
) -> tuple[Any, bool]:
    """The pooled connection to ``target`` (False) or a new one (True)."""
    loop = Loop.get()
    key = target.pool_key()
    lock = loop.locks.setdefault(key, asyncio.Lock())
    async with lock:
        cached = loop.connections.get(key)
        if cached is not None and not cached.is_closed():
            return cached, False
        conn = await connect(target, label, connect_timeout, on_host_key)
        loop.connections[key] = conn
        return conn, True


async def connect(t: SshTarget, label: str, connect_timeout: float, on_host_key: Callable[[str], None] | None) -> Any:
    """A new asyncssh connection to ``t`` (see the module docstring for the policies and errors)."""
    import asyncssh

    options: dict[str, Any] = {"connect_timeout": connect_timeout, "keepalive_interval": KEEPALIVE}
    if t.port:
        options["port"] = t.port
    if t.user:
        options["username"] = t.user
    keys: list[Any] = []
    if t.key_file is not None:
        if not t.key_file.is_file():
            raise PrerequisiteError(
                f"the SSH key {t.key_file} for {label} is missing",
                "the machine cannot be reached without it; restore the file or recreate the machine",
            )
        keys.append(str(t.key_file))
    if t.private_key:
        try:
            keys.append(asyncssh.import_private_key(t.private_key))
        except (ValueError, asyncssh.KeyImportError):
            raise PrerequisiteError(
                f"the SSH key given for {label} is not an unencrypted OpenSSH or PEM private key",
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
            f"{label} refused runctl's SSH key",
            f"check that `{t.ssh_command()} true` works without a password"
            + (" (key, agent, ~/.ssh/config)" if t.host_keys == "user" else ""),
        ) from None
    except asyncssh.HostKeyNotVerifiable:
        if t.host_keys == "pinned":
            raise AuthError(
                f"the SSH host key of {label} is not the one runctl saw first ({t})",
                "the machine was replaced or the connection is intercepted; terminate it and create a new one",
            ) from None
        raise AuthError(
            f"the SSH host key of {label} is not in your known_hosts, or it changed",
            f"connect once with `{t.ssh_command()}` and check the key it shows, then retry",
        ) from None
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
        raise TransientError(
            f"could not reach {label} over SSH ({type(exc).__name__}: {exc})",
            f"check the network and that `{t.ssh_command()} true` works; then try again",
        ) from None
    if t.host_keys == "pinned" and not t.host_key:
        server_key = conn.get_server_host_key()
        if server_key is not None and on_host_key is not None:
            on_host_key(server_key.export_public_key().decode().strip())
    return conn


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

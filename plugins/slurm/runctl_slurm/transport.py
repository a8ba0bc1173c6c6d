"""How runctl reaches the cluster's login node: the core's SSH transport
(:class:`runctl_core.remote.ssh.SshTransport`, policy ``"user"``: ``~/.ssh/config`` host aliases, the agent, keys
and ``~/.ssh/known_hosts`` as ``ssh HOST`` reads them - the login node is a machine the user already reaches, so
an unknown host key is refused, never trusted), or this machine's
:class:`~runctl_core.remote.transport.LocalTransport` when the setting ``host`` is absent.

Every transport call is one round trip to the login node; :class:`Counting` counts them so that the submit
path can be measured (``round_trips`` in the provider's metrics file, read by benchmarks/).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runctl_core.remote.ssh import SshTarget, SshTransport
from runctl_core.remote.transport import CommandResult, LocalTransport, RemoteFile, Transport


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


def login_node(host: str, connect_timeout: float = 30.0) -> SshTransport:
    """The login node ``host`` (an ``~/.ssh/config`` alias, ``user@host`` or ``user@host:port``) over SSH."""
    return SshTransport(
        SshTarget.parse(host, host_keys="user"), label=f"the login node {host}", connect_timeout=connect_timeout
    )


def transport_for(host: str | None) -> Counting:
    return Counting(login_node(host) if host else LocalTransport())

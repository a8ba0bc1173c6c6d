"""Counting round trips to a machine: a :class:`~runctl_core.remote.transport.Transport` wrapper for tests.

Every call a :class:`~runctl_core.remote.jobs.JobHost` makes to a machine is one round trip on a remote
channel (an SSH session, an SSM command). :class:`CountingTransport` forwards each call to the transport it
wraps and records it, so a test can assert how many an operation costs::

    transport = CountingTransport(LocalTransport())
    host = JobHost(transport, root, cache=HostCache.for_instance(state_dir, "i-1"))
    host.sync(project); host.launch(job)
    assert transport.calls == ["apply-sync", "launch"]

A JobHost in ``inline`` mode (the local provider) runs its runner commands in-process instead of through the
transport; :func:`count_inline` records those in the same list.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runctl_core.remote.transport import CommandResult, RemoteFile, Transport

RUNNER_COMMANDS = ("launch", "apply-sync", "status", "stop", "read-log", "version", "supervise")


def label(argv: Sequence[str]) -> str:
    """A command's name in :attr:`CountingTransport.calls`: the runner command it runs (``launch``,
    ``apply-sync``...), else its program's name."""
    stop = list(argv).index("--") if "--" in argv else len(argv)
    return next((arg for arg in argv[:stop] if arg in RUNNER_COMMANDS), posixpath.basename(str(argv[0])))


class CountingTransport:
    """A Transport that records every call it forwards to ``inner``: ``calls`` holds one label per round trip
    (``launch``/``apply-sync``/... for runner commands, ``put``, ``get``, ``read_range``, ``walk``,
    ``remove``), ``commands`` each command's argv and stdin. Share ``calls`` between wrappers to count across
    several transports (e.g. one per hook)."""

    def __init__(self, inner: Transport, calls: list[str] | None = None) -> None:
        self.inner = inner
        self.calls: list[str] = [] if calls is None else calls
        self.commands: list[tuple[list[str], bytes | None]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        self.calls.append(label(argv))
        self.commands.append((list(argv), stdin))
        return self.inner.run(argv, env=env, cwd=cwd, timeout=timeout, stdin=stdin)

    @property
    def base_env(self) -> Mapping[str, str] | None:
        """The wrapped transport's starting environment, when it has one (a LocalTransport: an inline JobHost
        starts the supervisor with it)."""
        return getattr(self.inner, "base_env", None)

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        self.calls.append("put")
        self.inner.put(source, path, mode=mode)

    def get(self, path: str, dest: Path) -> None:
        self.calls.append("get")
        self.inner.get(path, dest)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self.calls.append("read_range")
        return self.inner.read_range(path, offset, length)

    def walk(self, path: str) -> list[RemoteFile]:
        self.calls.append("walk")
        return self.inner.walk(path)

    def remove(self, path: str) -> None:
        self.calls.append("remove")
        self.inner.remove(path)


def count_inline(monkeypatch: Any, calls: list[str]) -> None:
    """Record the runner commands an inline JobHost runs in-process into ``calls`` (``monkeypatch``: pytest's)."""
    from runctl_core.remote import jobs

    original = jobs._run_inline

    def counted(argv: list[str], data: bytes | None = None, launch: dict[str, Any] | None = None) -> CommandResult:
        calls.append(label(argv))
        return original(argv, data, launch)

    monkeypatch.setattr(jobs, "_run_inline", counted)


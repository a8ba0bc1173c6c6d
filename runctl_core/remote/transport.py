"""How runctl reaches a machine: the :class:`Transport` protocol, and :class:`LocalTransport` for this machine.

A provider whose machines have a shell (EC2 through SSM + S3, a RunPod pod through SSH, a local sandbox, a
Slurm login node...) implements these six operations and nothing else about jobs; the core's remote-job layer
(:class:`runctl_core.remote.jobs.JobHost`) builds everything else on top of them - installing runctl's
runner, syncing the project incrementally, preparing the Python environment, launching the supervisor with
a pending record written first, mapping the job record to ``JobStatus``, reading logs by byte offset,
stopping jobs, listing and collecting checkpoints. Modelled on SkyPilot's ``CommandRunner`` and dstack's
base compute helpers: one narrow, typed boundary per way of reaching a machine.

Conventions for every implementation:

* Paths are POSIX strings on the machine. Relative paths are not allowed: the layer always passes absolute
  ones (it may use ``$HOME``-free absolute paths it got from :meth:`Transport.run` output).
* ``run`` takes an argument vector (never a shell string): the transport quotes it for its channel
  (``shlex.join`` for SSH / SSM shell scripts). It must not return before the command exits, and must not wait
  for processes the command started detached (``start_new_session`` + closed descriptors), so that the
  supervisor outlives the call.
* Connectivity problems that may go away (a dropped SSH connection, SSM throttling, an agent not yet online)
  raise :class:`runctl_core.errors.TransientError`; a machine that no longer exists raises
  :class:`runctl_core.errors.NotFoundError`; a command exceeding ``timeout`` raises
  :class:`runctl_core.errors.TransientError` whose message says it timed out (the core's retry layer decides
  whether to try again; a transport must not retry on its own - one retry layer per call path).
* A missing file given to ``get``/``read_range`` raises the built-in :class:`FileNotFoundError`; ``walk`` of a
  missing directory returns ``[]``; ``remove`` of a missing path does nothing.
* Never log or raise a secret (``env`` values may be secrets: they must not appear in a command line visible
  to other users of the machine when the channel allows passing them otherwise, and never in an error).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from runctl_core.errors import TransientError


@dataclass(frozen=True)
class CommandResult:
    """What a command run on the machine gave back."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def error_text(self) -> str:
        """stderr decoded as UTF-8 (invalid bytes replaced), stripped."""
        return self.stderr.decode("utf-8", errors="replace").strip()


@dataclass(frozen=True)
class RemoteFile:
    """One regular file found by :meth:`Transport.walk`: its path relative to the walked directory (POSIX),
    size in bytes and modification time (seconds since the epoch)."""

    path: str
    size: int
    mtime: float


def shell_line(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """``argv`` as one POSIX shell line for transports whose channel takes a string (SSH): quoted, prefixed with
    ``env K=V ...`` when ``env`` is given and ``cd DIR &&`` when ``cwd`` is. The values appear on the command
    line, so a transport passes secrets another way (see the module docstring)."""
    command = shlex.join(argv)
    if env:
        command = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " " + command
    if cwd:
        command = f"cd {shlex.quote(cwd)} && {command}"
    return command


@runtime_checkable
class Transport(Protocol):
    """The operations runctl needs on a machine. See the module docstring for the rules every method follows."""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the machine (in ``cwd``, with ``env`` added to the machine's environment, ``stdin``
        fed to it) and wait for it; return its exit code and output. A non-zero exit is *returned*, not
        raised. ``timeout`` (seconds) bounds the whole call including the channel's own latency."""
        ...

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        """Write ``source`` (bytes, or a local file) to ``path`` on the machine with permission ``mode``,
        creating parent directories. The file appears whole or not at all (write then rename)."""
        ...

    def get(self, path: str, dest: Path) -> None:
        """Copy the machine's file ``path`` to the local file ``dest`` (parents created by the caller)."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of ``path`` from byte ``offset`` (fewer at the end of the file, ``b""`` past
        it)."""
        ...

    def walk(self, path: str) -> list[RemoteFile]:
        """Every regular file under the directory ``path`` (recursively, symlinks not followed), sorted."""
        ...

    def remove(self, path: str) -> None:
        """Remove the file or directory tree ``path``; nothing happens when it does not exist."""
        ...


class LocalTransport:
    """A :class:`Transport` for this machine (the local provider, and tests of remote providers' scripts).

    ``base_env`` replaces the environment commands start from (default: this process's environment), so a
    caller can give jobs a "bare" machine (e.g. a ``PATH`` without uv) or keep runctl's credentials out."""

    def __init__(self, base_env: Mapping[str, str] | None = None) -> None:
        self.base_env = dict(os.environ if base_env is None else base_env)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        full_env = dict(self.base_env)
        full_env.update(env or {})
        try:
            proc = subprocess.run(
                list(argv),
                cwd=cwd,
                env=full_env,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                close_fds=True,
            )
        except subprocess.TimeoutExpired:
            raise TransientError(
                f"{Path(argv[0]).name} did not finish within {timeout:g}s on this machine",
                "the machine may be overloaded; try again",
            ) from None
        except FileNotFoundError:
            return CommandResult(exit_code=127, stderr=f"{argv[0]}: command not found\n".encode())
        return CommandResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    with source.open("rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get(self, path: str, dest: Path) -> None:
        shutil.copyfile(path, dest)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(max(0, offset))
            return fh.read(max(0, length))

    def walk(self, path: str) -> list[RemoteFile]:
        root = Path(path)
        if not root.is_dir():
            return []
        found = []
        for base, dirs, names in os.walk(root):
            dirs.sort()
            for name in names:
                full = Path(base) / name
                if full.is_symlink() or not full.is_file():
                    continue
                st = full.stat()
                found.append(RemoteFile(full.relative_to(root).as_posix(), st.st_size, st.st_mtime))
        return sorted(found, key=lambda f: f.path)

    def remove(self, path: str) -> None:
        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

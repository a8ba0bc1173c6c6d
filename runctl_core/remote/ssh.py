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
  trips, and nothing needed on the machine but sshd, ``/bin/sh``, ``find`` and coreutils (or BusyBox) (SFTP would
  take a subsystem start and one request per directory level, open, write, close, chmod and rename). ``put``
  writes a temporary file next to the target, checks its size (a connection lost mid-transfer gives the
  command a short EOF) and renames it over the target: the file appears whole or not at all.
* **Environment values never reach a command line**: when ``env`` is given, the command line is only
  ``sh -c '<prelude>' runctl`` and the rest travels first on the channel's stdin: one shell line per item
  (``cd DIR``, ``export K='v'``, ``set -- ARGV...``), which the prelude reads (one byte at a time, as ``read``
  does on a pipe: the command's own stdin follows untouched), evaluates, then ``exec "$@"``. So neither ``ps``
  on the machine nor sshd's logs show the values (OpenSSH's ``SetEnv``/``AcceptEnv`` would also hide them, but
  sshd drops every name its ``AcceptEnv`` does not list - by default all but ``LANG``/``LC_*`` on Debian).
  Names must be shell identifiers. Without ``env`` the command line is ``cd DIR && sh -c 'exec "$0" "$@"'
  ARGV`` (readable in ``ps``).
* **Any login shell**: sshd runs each command line with the user's login shell (``$SHELL -c``), so every
  command line is one line of single-quoted words, which sh, bash, dash, zsh and csh/tcsh parse alike, handed
  to ``sh``. A word csh cannot take even quoted (with a newline, a carriage return or ``!``) is written into
  ``sh``'s own script with those characters as variables (``$__runctl_nl``...), the other words staying arguments (so
  ``ps`` still shows them).
* **Host keys**: ``"user"`` (the user's ``~/.ssh/config``, agent and known_hosts: a login node) or ``"pinned"``
  (runctl's key only; the host key trusted at first contact, then required: machines runctl creates). See
  :mod:`runctl_core.remote.ssh_connect`.
* **Errors** (the Transport contract): the machine not answering, refusing the connection, a connection lost
  or a timeout -> :class:`TransientError` naming the machine, with a hint; the key refused -> ``AuthError``; a
  host key that is not the known one -> ``AuthError``; a missing key file -> ``PrerequisiteError``; a missing
  file for ``get``/``read_range`` -> :class:`FileNotFoundError`. This transport cannot tell a machine that is
  gone from one that does not answer: a provider's address lookup raises ``NotFoundError`` (e.g. RunPod asks
  its API). Messages name the program run, never its arguments, environment or stdin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import posixpath
import re
import shlex
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from runctl_core.errors import ProviderError, TransientError
from runctl_core.remote import ssh_connect
from runctl_core.remote.ssh_connect import SshTarget, close_all, generate_key_pair
from runctl_core.remote.transport import CommandResult, RemoteFile, shell_line

T = TypeVar("T")
CHUNK = 1 << 16
MISSING = 44  # exit code of get/read_range scripts for a missing file
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# what csh/tcsh cannot take on a command line even quoted -> the sh variable that holds it (see _DEFS)
_CSH_UNSAFE = {"\n": "__runctl_nl", "\r": "__runctl_cr", "!": "__runctl_b"}
# those variables, defined without writing the characters (so the line is safe for every login shell)
_DEFS = (
    '__runctl_nl=$(printf "\\nx"); __runctl_nl=${__runctl_nl%x}; __runctl_cr=$(printf "\\rx"); '
    '__runctl_cr=${__runctl_cr%x}; __runctl_b=$(printf "\\041"); '
)
# reads "N\n" then N shell lines from stdin (cd, export, set --), evaluates each, and runs "$@" with the rest of
# stdin; its own variables are __runctl_* (an environment variable of the job may be called anything else)
_PRELUDE = _DEFS + (
    'read -r __runctl_n || exit 125; while [ "$__runctl_n" -gt 0 ]; do IFS= read -r __runctl_l || exit 125; '
    'eval "$__runctl_l" || exit $?; __runctl_n=$((__runctl_n-1)); done; '
    "unset __runctl_l __runctl_n __runctl_nl __runctl_cr __runctl_b; exec \"$@\""
)
__all__ = ["SshTarget", "SshTransport", "close_all", "generate_key_pair"]


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
        command, header = _command(argv, env, cwd)
        data = [header, stdin or b""]
        return self._call(self._exec(command, _chunks(data)), timeout, posixpath.basename(argv[0]))

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        q, folder = shlex.quote, posixpath.dirname(path) or "/"
        tmp = q(posixpath.join(folder, f".{posixpath.basename(path)}.runctl-tmp")) + ".$$"
        script = (
            f'mkdir -p {q(folder)} && (umask 077 && cat > {tmp}) && [ "$(wc -c < {tmp})" -eq {size} ] && '
            f"chmod {mode:o} {tmp} && mv -f {tmp} {q(path)} || {{ s=$?; rm -f {tmp}; exit $s; }}"
        )
        command, header = _command(["sh", "-c", script])
        feed = _chunks([header, source]) if isinstance(source, bytes) else _file_chunks(source, size, header)
        result = self._call(self._exec(command, feed), self.file_timeout, "put")
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
                command, header = _command(["sh", "-c", script])
                result = self._call(self._exec(command, _chunks([header]), sink=out), self.file_timeout, "get")
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
        """One command: GNU ``find -printf`` (NUL-separated, any file name); where ``find`` has no ``-printf``
        (BusyBox: Alpine images), ``stat -c`` per file (newline-separated: names with a newline are skipped)."""
        q = shlex.quote(path)
        script = (
            f"[ -d {q} ] || exit 0; cd {q} || exit 1; if find . -maxdepth 0 -printf '' 2>/dev/null; then "
            "find . -type f -printf '%s %T@ %P\\0'; else echo @stat; find . -type f -exec stat -c '%s %Y %n' {} +; fi"
        )
        result = self._shell(script, "walk")
        if result.exit_code != 0:
            raise ProviderError(
                f"could not list {path} on {self.label}: {result.error_text[-300:]}",
                "runctl needs find and stat on the machine (findutils/coreutils or BusyBox)",
            )
        text = result.stdout.decode("utf-8", errors="surrogateescape")
        if text.startswith("@stat\n"):
            records = [line.replace(" ./", " ", 1) for line in text.split("\n")[1:] if " ./" in line]
        else:
            records = [record for record in text.split("\0") if record]
        found = []
        for record in records:
            size, mtime, rel = record.split(" ", 2)
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
        ssh_connect.close(self.target)

    # ------------------------------------------------------------------------------------------ internals

    def _shell(self, script: str, what: str) -> CommandResult:
        command, header = _command(["sh", "-c", script])
        return self._call(self._exec(command, _chunks([header])), self.file_timeout, what)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        try:
            return ssh_connect.Loop.get().call(bounded() if timeout else coro)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            raise TransientError(
                f"`{what}` did not finish within {timeout or 0:g}s on {self.label}",
                "the machine or the network may be overloaded; try again",
            ) from None

    async def _exec(self, command: str, feed: AsyncIterator[bytes], sink: BinaryIO | None = None) -> CommandResult:
        import asyncssh

        conn, process = await self._open(command)
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
            ssh_connect.forget(self.target, conn)
            raise self._lost("the connection was lost during a command") from None
        finally:
            if not process.is_closing():  # timed out or interrupted: stop the command (OpenSSH >= 8.1 passes
                try:  # the signal on), and close the channel; the connection stays for the next call
                    process.terminate()
                except (OSError, asyncssh.Error):
                    pass
                process.close()
        if process.exit_status is None and process.exit_signal is None:
            ssh_connect.forget(self.target, conn)
            raise self._lost("the connection was lost during a command")
        code = process.returncode if process.returncode is not None else 255
        return CommandResult(exit_code=code, stdout=bytes(stdout), stderr=bytes(stderr))

    async def _open(self, command: str) -> tuple[Any, Any]:
        """A session running ``command``, on the cached connection or, if that one turns out dead before the
        command started, on a new one (the only case where this transport tries twice: nothing ran)."""
        import asyncssh

        for attempt in (1, 2):
            conn, fresh = await ssh_connect.pooled(self.target, self.label, self.connect_timeout, self.on_host_key)
            try:
                return conn, await conn.create_process(command, encoding=None)
            except (asyncssh.Error, OSError) as exc:
                if (
                    isinstance(exc, asyncssh.ChannelOpenError)
                    and exc.code != asyncssh.OPEN_CONNECT_FAILED
                    and not conn.is_closed()
                ):
                    raise TransientError(  # alive but refusing sessions (sshd's MaxSessions): keep the others
                        f"{self.label} refused a new SSH session ({exc.reason})", "too many at once; try again"
                    ) from None
                ssh_connect.forget(self.target, conn)
                if fresh or attempt == 2:
                    raise self._lost("could not open a session") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _lost(self, what: str) -> TransientError:
        return TransientError(
            f"SSH to {self.label} failed: {what}",
            f"try again; if it persists check the machine and `{self.target.ssh_command()} true`",
        )


def _command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> tuple[str, bytes]:
    """The command line for ``argv`` and what to send on stdin before the command's own input (see the module
    docstring). Always through ``sh`` whatever the login shell: a missing program is exit 127 (csh says 1)."""
    if env:
        lines = [f"cd {_line(cwd)}"] if cwd else []
        for name, value in env.items():
            if not _NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not a shell identifier")
            lines.append(f"export {name}={_line(value)}")
        lines.append("set -- " + " ".join(_line(word) for word in argv))
        header = f"{len(lines)}\n" + "".join(f"{line}\n" for line in lines)
        return shell_line(["sh", "-c", _PRELUDE, "runctl"]), header.encode()
    if not any(c in word for word in [*argv, cwd or ""] for c in _CSH_UNSAFE):
        return shell_line(["sh", "-c", 'exec "$0" "$@"', *argv], None, cwd), b""
    # words a csh could not take are written into sh's own script (with $nl, $cr, $b); the others stay arguments
    words, params = [], []
    for i, word in enumerate(argv, start=1):
        bad = any(c in word for c in _CSH_UNSAFE)
        words.append(_line(word) if bad else f'"${{{i}}}"')
        params.append("-" if bad else word)
    script = _DEFS + (f"cd {_line(cwd)} && " if cwd else "") + "exec " + " ".join(words)
    return shell_line(["sh", "-c", script, "runctl", *params]), b""


def _line(word: str) -> str:
    """``word`` quoted for sh on one line, with newlines, carriage returns and ``!`` as variables (``_DEFS``)."""
    quoted = shlex.quote(word)
    for char, name in _CSH_UNSAFE.items():
        quoted = quoted.replace(char, f"'\"${name}\"'")
    return quoted


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        for start in range(0, len(part), CHUNK):
            yield part[start : start + CHUNK]


async def _file_chunks(path: Path, size: int, header: bytes = b"") -> AsyncIterator[bytes]:
    """``header``, then exactly ``size`` bytes of ``path`` (what ``put`` announced); a file that shrank fails the
    size check."""
    if header:
        yield header
    with path.open("rb") as fh:
        while size > 0 and (chunk := fh.read(min(CHUNK, size))):
            size -= len(chunk)
            yield chunk

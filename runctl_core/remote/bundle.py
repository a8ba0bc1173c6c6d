"""Files sent WITH a command: the laptop side of ``bootstrap.py`` (see its docstring for the machine side).

A :class:`Bundle` collects what one command needs on the machine (a sync's changed files, a job's env file,
resume checkpoints, runctl's tools) into one tar.gz that travels as the command's stdin, so that an operation
costs one round trip whatever the channel (SSH: one session; SSM: one command; local: one process).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path

from runctl_core.models import Project, ProjectFile
from runctl_core.remote import RANKS_PATH, RUNNER_PATH, RUNNER_PATHS

BOOTSTRAP_PATH = Path(__file__).with_name("bootstrap.py")
ENVSETUP_PATH = RUNNER_PATH.with_name("envsetup.py")
TOOLS = (RUNNER_PATH, ENVSETUP_PATH, RANKS_PATH, *RUNNER_PATHS[1:])  # shipped flat into ROOT/bin
EXIT_NEED_TOOLS = 20  # bootstrap.py: the tools of this version are not installed and none were sent


@functools.cache
def core_tools() -> dict[str, bytes]:
    """runctl's machine-side tools, ``name -> content`` (read once per process)."""
    return {path.name: path.read_bytes() for path in TOOLS}


def tools_hash(extra: Mapping[str, bytes] | None = None) -> str:
    """A short hash of runctl's machine-side tools (and of a provider's ``extra`` ones): the name of the marker
    ``ROOT/bin/.tools-HASH`` that says which version ``ROOT/bin`` holds."""
    if not extra:
        return _core_tools_hash()
    digest = hashlib.sha256(bytes.fromhex(_core_tools_hash(full=True)))
    for name in sorted(extra):
        digest.update(f"\0{name}\0".encode())
        digest.update((extra or {})[name])
    return digest.hexdigest()[:12]


@functools.cache
def _core_tools_hash(full: bool = False) -> str:
    digest = hashlib.sha256()
    for data in core_tools().values():
        digest.update(data)
    return digest.hexdigest() if full else digest.hexdigest()[:12]


@functools.cache
def bootstrap_source() -> str:
    """``bootstrap.py``'s source without its docstring, given to ``python3 -c``."""
    source = BOOTSTRAP_PATH.read_text(encoding="utf-8")
    return source.split('"""', 2)[2].lstrip() if source.startswith('"""') else source


def bootstrap_argv(
    python: Sequence[str], root: str, token: str, version: str, size: int, args: Sequence[str]
) -> list[str]:
    """The command that unpacks a bundle of ``size`` bytes (stdin) under ``root`` and runs ``runner.py ARGS``."""
    return [*python, "-c", bootstrap_source(), root, token, version, str(size), *args]


class Bundle:
    """Files for one command, staged by ``bootstrap.py`` under ``ROOT/.incoming/TOKEN/NAME`` (owner-only) until
    the runner command moves them into place; tools go to ``ROOT/bin``."""

    def __init__(self) -> None:
        self._items: list[tuple[str, bytes | Path, int]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, name: str, data: bytes | Path, mode: int = 0o600) -> None:
        """Stage ``data`` (bytes, or a local file read when the bundle is built) as ``NAME``."""
        self._items.append((name, data, mode))

    def add_json(self, name: str, value: object) -> None:
        self.add(name, json.dumps(value).encode("utf-8"))

    def add_project(self, prefix: str, project: Project, files: Sequence[ProjectFile]) -> None:
        """Stage the project's ``files`` under ``PREFIX/`` with their modes."""
        for item in files:
            self.add(f"{prefix}/{item.path}", project.root / item.path, item.mode)

    def add_tree(self, prefix: str, directory: Path) -> int:
        """Stage every regular file under the local ``directory`` as ``PREFIX/REL``; return how many."""
        count = 0
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.add(f"{prefix}/{path.relative_to(directory).as_posix()}", path, 0o600)
                count += 1
        return count

    def build(self, tools: Mapping[str, bytes] | None = None, compress: bool = True) -> bytes:
        """The tar.gz (b"" when there is nothing to send); ``tools`` are added as ``bin/NAME``. ``compress=False``
        (a bundle that never leaves this machine: the local provider) gives a plain tar, which ``bootstrap.py``
        reads the same way ("r:*"), without the CPU of gzip. Deterministic: the same items give the same bytes
        (gzip header time 0; members' times are their files' or 0), so a transport can recognise a bundle it
        uploaded ahead of time."""
        if not self._items and not tools:
            return b""
        buffer = io.BytesIO()
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) if compress else nullcontext(buffer)
        ) as packed, tarfile.open(fileobj=packed, mode="w") as tar:
            for name, data in (tools or {}).items():
                self._add(tar, f"bin/{name}", data, 0o755)
            for name, source, mode in self._items:
                self._add(tar, name, source, mode)
        return buffer.getvalue()

    @staticmethod
    def _add(tar: tarfile.TarFile, name: str, source: bytes | Path, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.mode = mode
        if isinstance(source, bytes):
            info.size = len(source)
            tar.addfile(info, io.BytesIO(source))
            return
        with source.open("rb") as fh:
            stat = source.stat()
            info.size, info.mtime = stat.st_size, int(stat.st_mtime)
            tar.addfile(info, fh)

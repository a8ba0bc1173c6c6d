"""Which project files go to an instance: .gitignore and .runctlignore (via pathspec), hashes, packing."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from runctl_core.errors import UsageError
from runctl_core.models import Project, ProjectFile

IGNORE_FILES = (".gitignore", ".runctlignore")
# Never worth sending: VCS data, virtualenvs, caches. A .runctlignore line "!name" cannot bring these back.
ALWAYS_EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        ".tox",
        ".nox",
        ".runctl",
    }
)


def _load_spec(path: Path):  # type: ignore[no-untyped-def]
    import pathspec

    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def scan_project(root: Path, exclude: Iterable[Path] = ()) -> Project:
    """Walk ``root`` and return the files to sync, honouring every .gitignore and .runctlignore on the way
    down (a nested ignore file applies below its directory, as git does), with sizes, modes and sha256.
    Directories in ``exclude`` (runctl's own state and collected outputs, when they sit inside the project)
    are never sent."""
    root = root.resolve()
    skipped = {p.resolve() for p in exclude}
    if not root.is_dir():
        raise UsageError(f"project directory {root} does not exist", "pass --project DIR or cd into the project")
    specs: list[tuple[str, object]] = []  # (relative dir prefix, spec)
    files: list[ProjectFile] = []
    for base, dirs, names in os.walk(root):
        base_path = Path(base)
        rel_base = base_path.relative_to(root).as_posix()
        rel_base = "" if rel_base == "." else rel_base + "/"
        for ignore_name in IGNORE_FILES:
            candidate = base_path / ignore_name
            if candidate.is_file():
                specs.append((rel_base, _load_spec(candidate)))
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in ALWAYS_EXCLUDED_DIRS
            and (base_path / d) not in skipped
            and not _ignored(specs, rel_base + d + "/")
            and not (base_path / d).is_symlink()
        )
        for name in sorted(names):
            rel = rel_base + name
            path = base_path / name
            if _ignored(specs, rel) or not path.is_file():
                continue
            st = path.stat()
            files.append(ProjectFile(path=rel, size=st.st_size, sha256=sha256_file(path), mode=st.st_mode & 0o777))
    return Project(root=root, files=files)


def _ignored(specs: list[tuple[str, object]], rel: str) -> bool:
    ignored = False
    for prefix, spec in specs:
        if prefix and not rel.startswith(prefix):
            continue
        result = spec.check_file(rel[len(prefix) :])  # type: ignore[attr-defined]
        if result.include is not None:  # this file says something about rel: last word wins
            ignored = bool(result.include)
    return ignored


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_files(project: Project, previous: dict[str, str]) -> tuple[list[ProjectFile], list[str]]:
    """Files to send (new or changed since ``previous``, a path->sha256 manifest) and paths to delete."""
    current = project.manifest()
    send = [f for f in project.files if previous.get(f.path) != f.sha256]
    delete = sorted(set(previous) - set(current))
    return send, delete


def pack_tar(project: Project, files: Iterable[ProjectFile] | None = None) -> bytes:
    """A gzipped tar of ``files`` (default: all of the project), paths relative, modes kept, owner zeroed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for item in project.files if files is None else files:
            info = tarfile.TarInfo(item.path)
            info.size = item.size
            info.mode = item.mode
            info.mtime = int((project.root / item.path).stat().st_mtime)
            with (project.root / item.path).open("rb") as fh:
                tar.addfile(info, fh)
    return buffer.getvalue()


def unpack_tar(data: bytes, dest: Path) -> list[str]:
    """Unpack a tar made by :func:`pack_tar` into ``dest`` safely (no absolute paths, no ``..``)."""
    names: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not member.isfile() or not str(target).startswith(str(dest.resolve()) + os.sep):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            os.chmod(target, member.mode & 0o777)
            names.append(member.name)
    return names

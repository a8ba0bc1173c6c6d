"""Which project files go to an instance: .gitignore and .runctlignore (via pathspec), hashes, packing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


# Credential files never sent, wherever they sit in the project, whatever .runctlignore says; a project that
# really needs one lists it in `[run] send_credential_files` (gitignore patterns) of .runctl.toml.
CREDENTIAL_PATTERNS = (
    ".ssh/",
    ".aws/",
    ".gnupg/",
    ".azure/",
    ".config/gcloud/",
    ".kube/config",
    ".docker/config.json",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".runctl.secrets*",
)
# Pseudo filesystems: reading them blocks or never ends (/proc/kmsg); never walked
PSEUDO_DIRS = frozenset({"/proc", "/sys", "/dev", "/run"})
# Above these, say what is about to be sent before sending it
WARN_FILES = 10_000
WARN_BYTES = 1 << 30


def _load_spec(path: Path):  # type: ignore[no-untyped-def]
    import pathspec

    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def default_project_root() -> Path:
    """The current directory as the project, unless it is ``/`` or the home directory: sending that by accident
    would send every file (and credential) in it. ``--project DIR`` (even ``--project ~``) says it on purpose."""
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if cwd == Path(cwd.anchor) or cwd == home:
        what = "the filesystem root" if cwd == Path(cwd.anchor) else "your home directory"
        raise UsageError(
            f"the project would be {what} ({cwd}): every file in it would be sent",
            "cd into the project's directory, or pass --project DIR (--project . to really send this one)",
        )
    return cwd


def scan_project(
    root: Path, exclude: Iterable[Path] = (), allow_credentials: Iterable[str] = (), hash_cache: Path | None = None
) -> Project:
    """Walk ``root`` and return the files to sync, honouring every .gitignore and .runctlignore on the way
    down (a nested ignore file applies below its directory, as git does), with sizes, modes and sha256.
    Directories in ``exclude`` (runctl's own state and collected outputs, when they sit inside the project)
    are never sent, nor are credential files (:data:`CREDENTIAL_PATTERNS`, except those matching
    ``allow_credentials``), special files (FIFOs, devices, sockets) or pseudo filesystems.

    ``hash_cache`` (a JSON file runctl owns) remembers each file's size, mtime and inode with its sha256, so an
    unchanged file is not read again on the next scan (a large project re-syncs in the time of a ``stat``).
    The walk works on strings (no path object per file) and tests each path against one combined regex of the
    patterns before asking pathspec (see :class:`_Rules`): a 5,000-file project is scanned in tens of ms."""
    import pathspec

    cache = _load_hash_cache(hash_cache)
    fresh: dict[str, list[object]] = {}

    root = root.resolve()
    skipped = {str(p.resolve()) for p in exclude}
    if not root.is_dir():
        raise UsageError(f"project directory {root} does not exist", "pass --project DIR or cd into the project")
    denied = _Rules(pathspec.GitIgnoreSpec.from_lines(CREDENTIAL_PATTERNS))
    allow_lines = [line.strip().lstrip("/") for line in allow_credentials if line.strip()]
    allowed = _Rules(pathspec.GitIgnoreSpec.from_lines(allow_lines))
    specs: list[tuple[str, _Rules]] = []  # (relative dir prefix, rules of an ignore file there)
    files: list[ProjectFile] = []
    top = str(root)
    for base, dirs, names in os.walk(top):
        if base in PSEUDO_DIRS:
            dirs[:] = []
            continue
        rel_base = "" if base == top else base[len(top) + 1 :].replace(os.sep, "/") + "/"
        for ignore_name in IGNORE_FILES:
            if ignore_name in names and os.path.isfile(os.path.join(base, ignore_name)):
                specs.append((rel_base, _Rules(_load_spec(Path(base, ignore_name)))))
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in ALWAYS_EXCLUDED_DIRS
            and os.path.join(base, d) not in skipped
            and not _ignored(specs, rel_base + d + "/")
            and not (
                _denied(denied, allowed, rel_base + d + "/")
                and not any(line.startswith(rel_base + d + "/") for line in allow_lines)
            )
            and not os.path.islink(os.path.join(base, d))
            and os.path.join(base, d) not in PSEUDO_DIRS
        )
        for name in sorted(names):
            rel = rel_base + name
            if _denied(denied, allowed, rel) or (_ignored(specs, rel) and not allowed.matches(rel)):
                continue
            path = os.path.join(base, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # a dangling symlink
            if not stat.S_ISREG(st.st_mode):
                continue  # FIFOs, devices, sockets: reading them may block forever
            key = [st.st_size, st.st_mtime_ns, st.st_ino]
            cached = cache.get(rel)
            try:
                digest = str(cached[3]) if cached and cached[:3] == key else sha256_file(Path(path))
            except OSError as exc:
                raise UsageError(
                    f"cannot read {path}: {exc.strerror or exc}",
                    f"fix its permissions, or leave it out with a line '{rel}' in {root / '.runctlignore'}",
                ) from None
            fresh[rel] = [*key, digest]
            files.append(ProjectFile(path=rel, size=st.st_size, sha256=digest, mode=st.st_mode & 0o777))
    if hash_cache is not None and fresh != cache:
        _save_hash_cache(hash_cache, fresh)
    return Project(root=root, files=files)


class _Rules:
    """A pathspec spec with a quick first test: one regex joining all its patterns' regexes. When it does not match
    a path, no pattern of the spec says anything about it (the answer pathspec would give after trying each
    pattern in turn); when it matches, pathspec decides (order, negations, directories). ``quick`` is None when
    the regexes cannot be joined (e.g. a future pathspec's flags or group references): pathspec alone then."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.quick = _joined_regex(spec)

    def says_anything(self, rel: str) -> bool:
        return self.quick is None or self.quick.search(rel) is not None

    def matches(self, rel: str) -> bool:
        return self.says_anything(rel) and bool(self.spec.match_file(rel))

    def check(self, rel: str) -> bool | None:
        """True (ignore), False (a negation brings it back) or None (no pattern matches)."""
        if not self.says_anything(rel):
            return None
        include = self.spec.check_file(rel).include
        return None if include is None else bool(include)


def _joined_regex(spec: Any) -> re.Pattern[str] | None:
    parts = []
    for pattern in getattr(spec, "patterns", None) or []:
        if getattr(pattern, "include", None) is None:
            continue  # a comment or blank line: pathspec never matches it either
        regex = getattr(pattern, "regex", None)
        if not isinstance(regex, re.Pattern) or not isinstance(regex.pattern, str) or regex.flags != re.UNICODE:
            return None
        if "(?P=" in regex.pattern:
            return None  # a named back-reference would not survive the renaming below
        parts.append(f"(?:{_GROUP_NAME.sub('(?:', regex.pattern)})")
    if not parts:
        return re.compile(r"(?!)")  # no pattern: matches nothing
    try:
        return re.compile("|".join(parts))
    except re.error:
        return None


_GROUP_NAME = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")  # a named group becomes a plain one: same matches


def _load_hash_cache(path: Path | None) -> dict[str, list[object]]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 4} if isinstance(data, dict) else {}


def _save_hash_cache(path: Path, entries: dict[str, list[object]]) -> None:
    """Best effort: a cache that cannot be written only costs the next scan its speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def hash_cache_path(home: Path, root: Path) -> Path:
    """Where runctl keeps the hash cache of the project at ``root`` (under its state directory ``home``)."""
    return home / "hash-cache" / (hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16] + ".json")


def _denied(denied: _Rules, allowed: _Rules, rel: str) -> bool:
    """A credential file (or directory) that was not explicitly allowed."""
    return denied.matches(rel) and not allowed.matches(rel)


def size_warning(project: Project) -> str | None:
    """What to say before sending an unusually large project (many files or many bytes), or None."""
    if len(project.files) <= WARN_FILES and project.total_bytes <= WARN_BYTES:
        return None
    return (
        f"about to send {len(project.files)} files ({project.total_bytes / 1e6:.0f} MB) from {project.root};"
        " leave out data and outputs with a .runctlignore (gitignore syntax), or pass --project DIR"
    )


def _ignored(specs: list[tuple[str, _Rules]], rel: str) -> bool:
    ignored = False
    for prefix, rules in specs:
        if prefix and not rel.startswith(prefix):
            continue
        said = rules.check(rel[len(prefix) :])
        if said is not None:  # this file says something about rel: last word wins
            ignored = said
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

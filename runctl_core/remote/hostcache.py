"""The laptop's memory of one machine, so that :class:`runctl_core.remote.jobs.JobHost` need not ask it again.

What runctl last installed and synced on a machine (the version of its tools; the manifest ``path -> sha256``
of the project) is kept in ``STATE_DIR/hosts/<instance>.json`` (mode 0600, replaced atomically). With it, a
second job on a kept machine whose project did not change starts in ONE round trip: no manifest read, no tools
check, no sync. The memory is a hint, never trusted blindly: every command that relies on it carries what it
expects (``--expect-manifest DIGEST``; the tools' version) and the machine refuses when it differs (another
laptop synced, the machine was replaced, a job changed a synced file there); :class:`JobHost` then forgets and
asks the machine, or sends the changed files again.

A provider keeps one per instance (``HostCache.for_instance(ctx.state_dir, instance.id)``), passes it to
``JobHost(..., cache=...)``, calls :meth:`HostCache.mark_new` right after creating a machine (nothing synced,
no tools: the first sync needs no manifest read) and :meth:`HostCache.clear` when it terminates one.
A missing, unreadable or corrupt file is an empty memory (never an error).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runctl_core.models import Project

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
# one object per file in a process: a sync and the launch after it (separate hooks) share what the sync learnt
_OPEN: dict[Path, HostCache] = {}


def manifest_digest(manifest: Mapping[str, str]) -> str:
    """The digest the machine's runner computes from its ``manifest.json`` (canonical JSON, sha256)."""
    canonical = json.dumps(dict(manifest), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class HostCache:
    """What this laptop last installed and synced on one machine. See the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root: str | None = None  # the JobHost root the memory is about (None: any, after mark_new)
        self.tools: str | None = None  # tools hash installed in ROOT/bin
        self.manifest: dict[str, str] | None = None  # the project manifest on the machine (None: unknown)
        # in memory only: the project a sync skipped on this memory's word, for the launch to verify it
        self.skipped_sync: Project | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._load()

    @classmethod
    def for_instance(cls, state_dir: Path, instance_id: str) -> HostCache:
        """The memory of ``instance_id``, kept under ``state_dir/hosts/`` (one object per file in a process)."""
        name = instance_id if _SAFE_NAME.fullmatch(instance_id) else hashlib.sha256(instance_id.encode()).hexdigest()
        path = Path(state_dir) / "hosts" / f"{name}.json"
        cache = _OPEN.get(path)
        if cache is None or cache._stamp != _stamp(path):  # new, or the file changed under it (another command)
            cache = _OPEN[path] = cls(path)
        return cache

    def _load(self) -> None:
        self._stamp = _stamp(self.path)
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return
        if not isinstance(data, dict):
            return
        root, tools, manifest = data.get("root"), data.get("tools"), data.get("manifest")
        self.root = root if isinstance(root, str) else None
        self.tools = tools if isinstance(tools, str) else None
        if isinstance(manifest, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()):
            self.manifest = dict(manifest)

    def about(self, root: str) -> bool:
        """Whether this memory is about the machine directory ``root``; if it was about another one (a changed
        setting), it is forgotten and re-pointed at ``root``."""
        if self.root in (None, root):
            self.root = root
            return True
        self.tools, self.manifest, self.skipped_sync, self.root = None, None, None, root
        return False

    def mark_new(self) -> None:
        """The provider just created this machine: nothing is synced and no tools are installed there."""
        self.root, self.tools, self.manifest, self.skipped_sync = None, None, {}, None
        self.save()

    def save(self) -> None:
        """Write the memory (0600, replaced atomically; not fsync'ed: a file lost or emptied by a crash is an empty
        memory, which only costs round trips). A state directory that cannot be written only costs round trips."""
        data = json.dumps({"root": self.root, "tools": self.tools, "manifest": self.manifest}).encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
        self._stamp = _stamp(self.path)

    def clear(self) -> None:
        """Forget everything about the machine (it was terminated, or it is not what the memory said)."""
        self.root, self.tools, self.manifest, self.skipped_sync = None, None, None, None
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        self._stamp = _stamp(self.path)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)

"""Syncing the project to a machine, and keeping what runs there the project the laptop synced.

:class:`ProjectSync` is the sync half of :class:`runctl_core.remote.jobs.JobHost` (its base class): ``ROOT/project``
is made equal to the laptop's project by sending only what changed since the last sync (``ROOT/manifest.json``,
path -> sha256 of what was sent; the :class:`~runctl_core.remote.hostcache.HostCache` remembers it, so an
unchanged project costs no round trip).

The manifest says what was SENT, not what is there now: a job that rewrites a synced file (its config, a script)
would change what the next job runs while both the manifest and the cache still say "unchanged". So when
``apply-sync`` writes the files it also records each synced file's size, mtime, ctime and inode
(``ROOT/manifest-stats.json``), and every command carrying ``--expect-manifest`` (a sync, or the launch after a
sync that sent nothing) compares them with the files - a stat per file, milliseconds for thousands. A synced file
changed or removed there is refused with exit 19 and its path (``{"drifted": [...]}``); it is then sent again
(``resend``) before the job starts. Files the laptop never synced (a job's outputs, ``__pycache__``) are not
checked and are left where they are: what was synced is exactly what runs, and nothing a job wrote is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from runctl_core.errors import ProviderError
from runctl_core.files import changed_files
from runctl_core.models import Project, ProjectFile, SyncResult
from runctl_core.remote.bundle import Bundle
from runctl_core.remote.hostcache import HostCache, manifest_digest
from runctl_core.remote.transport import CommandResult, Transport


class StaleProject(ProviderError):
    """The machine's project is not the one runctl remembered: another runctl synced to it (``drifted`` None), or
    files of the same sync changed there since (``drifted``: their paths, e.g. a config a job rewrote)."""

    code = "stale_project"

    def __init__(self, message: str, drifted: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.drifted = None if drifted is None else list(drifted)


def stale_project(result: CommandResult) -> StaleProject:
    """The error for a command the runner refused with exit 19 (with the drifted paths it named, if any)."""
    drifted: Any = None
    try:
        drifted = json.loads(result.text.strip().splitlines()[-1]).get("drifted")
    except (ValueError, IndexError, AttributeError):
        pass
    return StaleProject(
        result.error_text or "the project on the machine is not the expected one",
        [str(path) for path in drifted] if isinstance(drifted, list) else None,
    )


class ProjectSync:
    """The sync half of :class:`~runctl_core.remote.jobs.JobHost` (see the module docstring)."""

    transport: Transport
    root: str
    inline: bool
    cache: HostCache | None
    tools_version: str
    # without a cache: the project and manifest of a sync that sent nothing, for the launch to check
    _skipped: tuple[Project, dict[str, str]] | None = None

    def _send(self, bundle: Bundle, token: str, args: Sequence[str], timeout: float | None = 120) -> Any:
        raise NotImplementedError

    def _tools(self, ship: bool) -> dict[str, bytes] | None:
        raise NotImplementedError

    def _staging(self) -> tuple[str, str]:
        raise NotImplementedError

    @property
    def project_dir(self) -> str:
        return f"{self.root}/project"

    @property
    def manifest_path(self) -> str:
        return f"{self.root}/manifest.json"

    def _machine_manifest(self) -> dict[str, str]:
        try:
            raw = self.transport.read_range(self.manifest_path, 0, 1 << 30)
            loaded = json.loads(raw.decode("utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def sync(self, project: Project) -> SyncResult:
        """Make ``root/project`` equal to ``project``: only files whose hash changed since the last sync are sent
        (in the command that applies them), files gone from the project are deleted, and the manifest on the
        machine is replaced last. With a cache that knows the machine's manifest: no round trip when nothing
        changed, else one (refused, and redone after reading the machine's manifest, if another sync changed it).
        Synced files a job changed on the machine are sent again; when this sync sends nothing, the launch checks
        them (see the module docstring)."""
        cache = self.cache
        self._skipped = None
        if cache is not None:
            cache.skipped_sync = None
            if cache.manifest is not None:
                if cache.manifest == project.manifest():
                    self._skip(project, cache.manifest)  # the launch checks the machine agrees (--expect-manifest)
                    return SyncResult.of_changes(self.project_dir, project, [], [])
                try:
                    return self._apply(project, cache.manifest)
                except StaleProject:
                    cache.clear()
        try:
            return self._apply(project, self._machine_manifest())
        except StaleProject as exc:
            raise ProviderError(
                f"the project on the machine changed while runctl was syncing it ({exc.message})",
                "another runctl (or a running job) is changing the same machine's project: wait for it to end, "
                "then run the command again",
            ) from None

    def sync_payload(self, project: Project) -> bytes:
        """The bytes the next ``sync(project)`` will send with its command (``b""`` when it will send none, or when
        the cache does not know what the machine holds), for a provider that uploads them ahead of time, while the
        machine boots (the ``stage`` hook). The bundle is deterministic: built again by ``sync`` from an unchanged
        project, it is the same bytes, which the transport can recognise (``runctl_aws``'s ``prestage``)."""
        cache = self.cache
        if cache is None or cache.manifest is None:
            return b""
        bundle, _send, _delete = self._sync_bundle(project, cache.manifest)
        if bundle is None:
            return b""
        ship_tools = not self.inline and cache.tools != self.tools_version
        return bundle.build(self._tools(ship_tools), compress=not self.inline)

    def _sync_bundle(
        self, project: Project, previous: dict[str, str], resend: Collection[str] = ()
    ) -> tuple[Bundle | None, list[ProjectFile], list[str]]:
        """What a sync from ``previous`` sends (None: nothing to do), the files sent and the paths deleted;
        ``resend``: paths changed on the machine since they were synced, sent again though unchanged here."""
        send, delete = changed_files(project, previous)
        if resend:
            send = [f for f in project.files if f.path in resend or previous.get(f.path) != f.sha256]
            delete = sorted(set(delete) | (set(resend) - {f.path for f in project.files}))
        manifest = project.manifest()
        if not (send or delete or manifest != previous):
            return None, send, delete
        bundle = Bundle()
        bundle.add_project("project", project, send)
        bundle.add_json("sync.json", {"delete": delete, "manifest": manifest, "sent": [f.path for f in send]})
        return bundle, send, delete

    def _apply(self, project: Project, previous: dict[str, str], resend: Collection[str] = ()) -> SyncResult:
        manifest = project.manifest()
        for attempt in range(3):  # a job still running may change files again: a few tries, then an error
            bundle, send, delete = self._sync_bundle(project, previous, resend)
            if bundle is None:
                self._skip(project, manifest)  # nothing sent: the launch checks the machine's files
                break
            token, staging = self._staging()
            args = ["apply-sync", "--dest", self.project_dir, "--manifest", self.manifest_path]
            args += ["--files", f"{staging}/project", "--meta", f"{staging}/sync.json"]
            args += ["--expect-manifest", manifest_digest(previous)]
            try:
                self._send(bundle, token, args, timeout=600)
                break
            except StaleProject as exc:
                if exc.drifted is None or attempt == 2:
                    raise
                resend = {*resend, *exc.drifted}  # synced files a job changed there: sent again with the others
        if self.cache is not None:
            self.cache.manifest = manifest
            self.cache.save()
        return SyncResult.of_changes(self.project_dir, project, send, delete)

    def _skip(self, project: Project, manifest: dict[str, str]) -> None:
        """Remember that ``project`` was not sent (the machine's manifest says it has it) for the launch to check."""
        if self.cache is not None:
            self.cache.skipped_sync = project
        else:
            self._skipped = (project, manifest)

    def _skipped_sync(self) -> tuple[Project, dict[str, str]] | None:
        """The project and manifest of the last sync if it sent nothing (the launch then checks the machine)."""
        cache = self.cache
        if cache is None:
            return self._skipped
        if cache.skipped_sync is not None and cache.manifest is not None:
            return cache.skipped_sync, cache.manifest
        return None

    def _resync(self, skipped: tuple[Project, dict[str, str]], exc: StaleProject) -> None:
        """After a launch refused with ``exc``: send the drifted files again, or (another sync changed the machine)
        read the machine's manifest afresh and send the differences."""
        self._skipped = None
        if self.cache is not None:
            self.cache.skipped_sync = None
            if exc.drifted is None:
                self.cache.clear()
        if exc.drifted is not None:
            self._apply(skipped[0], skipped[1], resend=exc.drifted)
        else:
            self.sync(skipped[0])

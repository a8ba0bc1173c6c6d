"""The on-disk layout of a local instance (a sandbox directory) and its records.

<state_dir>/instances/<id>/instance.json   the Instance record
<state_dir>/instances/<id>/project/        the synced project (removed on terminate)
<state_dir>/instances/<id>/manifest.json   path -> sha256 of what was synced
<state_dir>/instances/<id>/envs/           cached job environments (removed on terminate)
<state_dir>/instances/<id>/jobs/<job>/     job.json, log, checkpoints/ (kept after terminate, until
                                           `resources cleanup` prunes them: remove_job_files)

Everything but instance.json is the remote-job layer's machine layout (runctl_core.remote.jobs.JobHost).
"""

from __future__ import annotations

import os
import secrets
import select
from pathlib import Path

from runctl_core.errors import NotFoundError
from runctl_core.models import Instance
from runctl_core.remote.records import read_json, write_json_atomic


class Sandbox:
    def __init__(self, state_dir: Path, instance_id: str) -> None:
        if not instance_id.startswith("local-") or "/" in instance_id or ".." in instance_id:
            raise NotFoundError(f"{instance_id!r} is not a local instance id", "local ids look like local-1a2b3c4d")
        self.id = instance_id
        self.root = state_dir / "instances" / instance_id

    @classmethod
    def new(cls, state_dir: Path) -> Sandbox:
        return cls(state_dir, f"local-{secrets.token_hex(4)}")

    @classmethod
    def all(cls, state_dir: Path) -> list[Sandbox]:
        base = state_dir / "instances"
        if not base.is_dir():
            return []
        return [cls(state_dir, p.name) for p in sorted(base.iterdir()) if p.name.startswith("local-")]

    @property
    def project(self) -> Path:
        return self.root / "project"

    def job_dir(self, job_id: str) -> Path:
        if "/" in job_id or ".." in job_id:
            raise NotFoundError(f"{job_id!r} is not a job id", "job ids look like job-1a2b3c")
        return self.root / "jobs" / job_id

    def job_dirs(self) -> list[Path]:
        base = self.root / "jobs"
        return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def exists(self) -> bool:
        return (self.root / "instance.json").is_file()

    def read(self) -> Instance:
        try:
            return Instance.model_validate_json((self.root / "instance.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(
                f"local instance {self.id} does not exist", "list instances with: runctl resources list"
            ) from None

    def write(self, instance: Instance) -> None:
        write_json_atomic(self.root / "instance.json", instance.model_dump(mode="json"))


def wait_for_supervisor(job_dir: Path, seconds: float) -> bool:
    """Wait up to ``seconds`` for the supervisor recorded in ``job_dir/job.json`` to end, returning as soon as it
    does; False (nothing waited) when that cannot be done: no pidfd (not Linux >= 5.3), no record or pid, a pid
    now used by another process (its start time differs), or any error. The caller then sleeps instead."""
    if not hasattr(os, "pidfd_open"):
        return False
    record = read_json(job_dir / "job.json", {})
    pid, start = (record.get("supervisor_pid"), record.get("supervisor_start")) if isinstance(record, dict) else (0, 0)
    if not isinstance(pid, int) or pid <= 0 or not start:
        return False
    from runctl_core.remote.runner import start_time  # how the runner recorded it

    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already (the next status poll sees its end) or not allowed
        return False
    try:
        if start_time(pid) != start:  # checked after opening: the pidfd now names this process for good
            return False
        select.select([fd], [], [], max(0.0, seconds))  # readable once the process has ended
        return True
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)

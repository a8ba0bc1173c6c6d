"""What providers keep of ended jobs after their instance ended, and its removal by ``resources cleanup``.

The local provider keeps a terminated sandbox's ``jobs/<job>/`` (log, records, checkpoints) so that ``logs`` and
``checkpoint list`` work after the end; without pruning they pile up. A job's files are removed only when:

* its instance has ended (journal) and the job has ended (journal; the provider checks its own record again);
* the instance ended more than ``resources.prune_job_files_after`` ago (or ``cleanup --older-than``);
* every checkpoint the provider lists for it is in the collected copy on the laptop (same name and size):
  checkpoints that were never collected are never removed (the job is listed as kept, with the reason).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from runctl_core.errors import RunctlError
from runctl_core.models import Checkpoint, JobStatus
from runctl_core.session import Session

REMOVED_EVENT = "job_files_removed"


class JobFiles(BaseModel):
    """One ended job's files at its provider, and what cleanup does with them."""

    model_config = ConfigDict(defer_build=True)

    provider: str
    instance_id: str
    job_id: str
    ended_at: datetime
    action: Literal["remove", "keep", "removed", "failed"]
    reason: str


def removed_at(session: Session, job_id: str) -> str | None:
    """When ``resources cleanup`` removed the job's files at its provider (None: it did not)."""
    for event in session.store.events(job_id):
        if event.get("kind") == REMOVED_EVENT:
            return str(event["at"])
    return None


def _uncollected(checkpoints: list[Checkpoint], collected: Path) -> list[str]:
    missing = []
    for ckpt in checkpoints:
        copy = collected / ckpt.name
        if not copy.is_file() or copy.stat().st_size != ckpt.size:
            missing.append(ckpt.name)
    return missing


def plan(session: Session, providers: list[str], older_than: float | None) -> list[JobFiles]:
    """Ended jobs on ended instances older than ``older_than`` seconds whose provider keeps their files, each
    marked ``remove`` or ``keep`` (with why). ``older_than=None``: nothing (the retention is off)."""
    from runctl_core.jobs import outputs_destination

    if older_than is None:
        return []
    now = datetime.now(timezone.utc)
    found: list[JobFiles] = []
    for name in providers:
        try:
            provider = session.provider(name)
        except RunctlError:
            continue  # reconcile already said why
        if not provider.has("remove_job_files"):
            continue
        for row in session.store.instances(provider=name):
            if row.ended_at is None:
                continue
            ended = row.ended_at if row.ended_at.tzinfo else row.ended_at.replace(tzinfo=timezone.utc)
            if (now - ended).total_seconds() < older_than:
                continue
            for job in session.store.jobs(instance_id=row.instance.id):
                if job.provider != name or removed_at(session, job.id):
                    continue
                entry = {"provider": name, "instance_id": row.instance.id, "job_id": job.id, "ended_at": ended}
                if not job.state.terminal:
                    found.append(JobFiles(**entry, action="keep", reason=f"the journal has it {job.state.value}"))
                    continue
                status = job.status or JobStatus(job_id=job.id, state=job.state, exit_code=job.exit_code)
                try:
                    checkpoints = provider.list_checkpoints(row.instance, status) or []
                except RunctlError as exc:
                    found.append(JobFiles(**entry, action="keep", reason=f"its checkpoints: {exc.message}"))
                    continue
                missing = _uncollected(checkpoints, outputs_destination(session, job.id))
                if missing:
                    reason = f"{len(missing)} checkpoint(s) not collected (see: runctl checkpoint list {job.id})"
                    found.append(JobFiles(**entry, action="keep", reason=reason))
                    continue
                what = f"{len(checkpoints)} checkpoint(s) collected" if checkpoints else "no checkpoints"
                found.append(JobFiles(**entry, action="remove", reason=f"ended; {what}; log removed with it"))
    return found


def remove(session: Session, entries: list[JobFiles]) -> list[JobFiles]:
    """Remove the files of every ``remove`` entry (the provider re-checks its own record) and journal it."""
    done: list[JobFiles] = []
    for entry in entries:
        if entry.action != "remove":
            done.append(entry)
            continue
        provider = session.provider(entry.provider)
        row = session.store.instance(entry.instance_id, entry.provider)
        job = session.store.job(entry.job_id)
        if row is None or job is None:
            continue
        status = job.status or JobStatus(job_id=job.id, state=job.state, exit_code=job.exit_code)
        try:
            provider.remove_job_files(row.instance, status)
        except RunctlError as exc:
            done.append(entry.model_copy(update={"action": "failed", "reason": exc.message}))
            continue
        session.store.event(REMOVED_EVENT, provider=entry.provider, job_id=job.id, instance_id=entry.instance_id)
        done.append(entry.model_copy(update={"action": "removed"}))
    return done

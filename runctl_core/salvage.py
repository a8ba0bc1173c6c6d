"""Never lose work: before runctl terminates the instance of a job that did not end by itself (Ctrl-C, SIGTERM,
an error while following it, `runctl terminate JOB`), it stops the job (the script gets its grace period to
write a last checkpoint) and collects the job's checkpoints - within a bounded time said on screen, so that a
hung provider can never keep a paid instance alive. A second Ctrl-C skips the collection, not the termination.

The provider calls run on a helper thread (only they: the state store is written from the calling thread)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from runctl_core.models import Collected, Instance, JobStatus
from runctl_core.plugins import Provider
from runctl_core.session import Session


def collect_timeout() -> float:
    """Seconds to spend collecting before terminating anyway: ``RUNCTL_COLLECT_TIMEOUT``, default 120."""
    try:
        value = float(os.environ.get("RUNCTL_COLLECT_TIMEOUT", "") or 120.0)
    except ValueError:
        value = 120.0
    return value if 0 < value < 86400 else 120.0


def salvage(
    session: Session, provider: Provider, instance: Instance, status: JobStatus, dest: Path, *, stop: bool = True
) -> Collected | None:
    """Stop the job (when ``stop`` and it still runs) and collect its checkpoints into ``dest``, giving up after
    :func:`collect_timeout`. Returns what was collected (None when nothing could be), and journals it."""
    if not provider.capabilities().checkpoints.supported:
        return None
    limit = collect_timeout()
    session.progress.step(
        f"collecting the checkpoints of {status.job_id} before terminating {instance.id} (at most {limit:.0f}s)"
    )
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            current = status
            if stop and not status.state.terminal:
                current = provider.cancel(instance, status) or status
                outcome["status"] = current
            outcome["collected"] = provider.collect(instance, current, dest)
        except BaseException as exc:  # reported by the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"runctl-collect-{status.job_id}", daemon=True)
    worker.start()
    try:
        worker.join(limit)
    except KeyboardInterrupt:
        session.progress.warn(f"interrupted again: the checkpoints of {status.job_id} were not collected")
        return None
    if worker.is_alive():
        session.progress.warn(f"collecting the checkpoints of {status.job_id} took over {limit:.0f}s; gave up")
        return None
    if "error" in outcome:
        exc = outcome["error"]
        session.progress.warn(f"could not collect the checkpoints of {status.job_id}: {getattr(exc, 'message', exc)}")
        return None
    collected: Collected | None = outcome.get("collected")
    store = session.store
    if "status" in outcome:
        store.update_job(status.job_id, status=outcome["status"])
    if collected is not None:
        store.update_job(status.job_id, outputs_dir=str(dest))
        store.event("collect", provider=provider.name, job_id=status.job_id, files=len(collected.files))
        session.progress.step(f"collected {len(collected.files)} files of {status.job_id} into {dest}")
    return collected

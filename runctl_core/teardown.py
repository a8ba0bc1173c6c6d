"""Ending what a run created, on every way out, without losing work: terminate an instance (the provider call
before any journal write, so a failing store cannot stop it), record it and the jobs that can no longer end,
terminate what an interrupted create call made (found by its ``runctl:intent`` tag), and a run's cleanup
(checkpoints salvaged first, itself protected from a second Ctrl-C)."""

from __future__ import annotations

from pathlib import Path

from runctl_core.errors import RunctlError
from runctl_core.models import Instance, InstanceState, JobState, JobStatus
from runctl_core.plugins import Provider
from runctl_core.session import Session


class RunState:
    """What this run created, so that cleanup knows what to end."""

    def __init__(self) -> None:
        self.instance: Instance | None = None
        self.status: JobStatus | None = None
        self.intent_pending: str | None = None


def terminate_instance(session: Session, provider: Provider, instance: Instance) -> Instance:
    final = stop_instance(session, provider, instance)
    record_terminated(session, provider, final)
    return final


def stop_instance(session: Session, provider: Provider, instance: Instance) -> Instance:
    """The provider call alone: cleanup calls it before any journal write, so a failing store cannot stop it."""
    session.progress.update(f"terminating {instance.id}")
    final = provider.terminate(instance)
    if final.state.alive and final.state is not InstanceState.STOPPING:
        final = final.model_copy(update={"state": InstanceState.TERMINATED})
    return final


def record_terminated(session: Session, provider: Provider, final: Instance) -> None:
    session.store.save_instance(final)
    _end_jobs_on(session, provider.name, final)


def _end_jobs_on(session: Session, provider_name: str, instance: Instance) -> None:
    """Jobs the journal still has as pending/running on an instance just terminated can never end by themselves
    (e.g. their ``runctl run`` was killed and ``resources cleanup`` removed the instance): record them cancelled."""
    store = session.store
    row = store.instance(instance.id, provider_name)
    ids = {job.id for job in store.jobs(active_only=True, instance_id=instance.id) if job.provider == provider_name}
    for candidate in (row.job_id if row else None, instance.tags.get("runctl:job")):
        job = store.job(candidate) if candidate else None
        if job and job.provider == provider_name and not job.state.terminal and job.instance_id in (None, instance.id):
            ids.add(job.id)
    for job_id in sorted(ids):
        store.update_job(job_id, state=JobState.CANCELLED, message=f"its instance {instance.id} was terminated")


def cleanup_intent(session: Session, provider: Provider, intent_id: str) -> list[Instance]:
    """Terminate whatever the provider created for an intent we never heard back about (by its tag); the
    provider calls come first, the journal after (best effort when the store fails)."""
    listed = provider.list_instances() or []
    ended = [
        (instance, stop_instance(session, provider, instance))
        for instance in listed
        if instance.tags.get("runctl:intent") == intent_id and instance.state.alive
    ]
    for instance, final in ended:
        session.store.save_instance(instance, intent_id=intent_id)
        record_terminated(session, provider, final)
    if ended:  # else leave it pending: the create may still land; `resources cleanup` will look again
        session.store.finish_intent(intent_id, resource_id=ended[0][1].id)
    return [final for _instance, final in ended]


def cleanup_run(
    session: Session,
    provider: Provider,
    run: RunState,
    job_id: str,
    *,
    keep: bool,
    reason: str,
    dest: Path | None = None,
) -> bool:
    """Best effort, and itself protected from a second Ctrl-C: a started job's checkpoints are collected into
    ``dest`` first (bounded in time: salvage.py), then terminate (never behind a journal write, which may be what
    failed), then journal. Says what could not be cleaned and how; True when all was."""
    store = session.store
    ended: list[Instance] = []
    clean = True
    if not keep and dest is not None and run.instance is not None and run.status is not None:
        from runctl_core.salvage import salvage

        try:
            salvage(session, provider, run.instance, run.status, dest)
        except (KeyboardInterrupt, Exception) as exc:
            session.progress.warn(f"checkpoints of {job_id} not collected: {_describe(exc)}")
    if not keep:
        try:
            if run.instance is not None:
                ended.append(stop_instance(session, provider, run.instance))
            else:
                for intent in store.pending_intents():
                    if intent.job_id == job_id:
                        cleanup_intent(session, provider, intent.id)
        except (KeyboardInterrupt, Exception) as exc:
            clean = False
            what = run.instance.id if run.instance else "the instance being created"
            session.progress.warn(
                f"could not terminate {what}: {_describe(exc)}; run `runctl resources cleanup` to remove it"
            )
    try:  # the journal after the fact; `runctl resources` reconciles whatever this cannot write
        store.update_job(job_id, state=JobState.CANCELLED if "interrupted" in reason else JobState.LOST, message=reason)
        for final in ended:
            record_terminated(session, provider, final)
    except (KeyboardInterrupt, RunctlError):
        pass
    return clean


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RunctlError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted again"
    return f"{type(exc).__name__}: {exc}"

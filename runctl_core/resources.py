"""Reconcile what the journal knows with what each provider reports as runctl's, and clean up orphans.

Classes of a live instance (only runctl-tagged instances of this owner are ever considered):

* ``orphan``: alive at the provider but not in the journal, or journalled as ended;
* ``abandoned``: journalled for a run whose runctl process is gone (killed, crashed) and not kept;
* ``finished``: its job has ended and the run did not ask to keep it (e.g. a detached run);
* ``kept``: created with ``runctl create`` or ``--keep``: removed only with ``--all``;
* ``in-use``: a live runctl process is using it.

Cleanup removes orphan, abandoned and finished instances (and kept/in-use ones with ``--all``), never an
instance without runctl's tags or with another owner.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict

from runctl_core.errors import RunctlError
from runctl_core.models import Instance, InstanceState, JobState
from runctl_core.session import Session
from runctl_core.state import process_alive

REMOVABLE = ("orphan", "abandoned", "finished")


class Resource(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    id: str
    state: str
    kind: str  # orphan | abandoned | finished | kept | in-use
    reason: str
    job_id: str | None = None
    owner: str | None = None
    created_at: datetime | None = None
    hourly_price: float | None = None
    in_journal: bool = False


class SkippedProvider(BaseModel):
    """A provider that was not asked because it has no credentials here."""

    model_config = ConfigDict(defer_build=True)

    provider: str
    reason: str  # "no credentials"
    hint: str  # how to give it credentials (the provider's own words)
    journalled_alive: int = 0  # instances the journal still has alive there: they could not be checked


class Reconciliation(BaseModel):
    model_config = ConfigDict(defer_build=True)

    resources: list[Resource]
    notes: list[str]  # providers that could not be asked, and why
    skipped: list[SkippedProvider] = []  # the providers of notes that were skipped for lack of credentials

    def quiet_notes(self, explicit: bool) -> list[str]:
        """The notes for a person reading text: every provider skipped for lack of credentials with nothing of
        runctl's known there becomes one line naming them (a user of local only is not told how to set up
        each cloud); a provider asked for by name, or one with journalled instances, keeps its full note."""
        quiet = {s.provider for s in self.skipped if not explicit and s.journalled_alive == 0}
        lines = [n for n in self.notes if n.split(":", 1)[0] not in quiet or "skipped, no credentials" not in n]
        if quiet:
            lines.append(
                f"skipped (no credentials): {', '.join(sorted(quiet))} - `runctl providers` says how to set up"
                " each; `--provider NAME` shows one's details"
            )
        return lines


def _process_alive(intent: Any) -> bool:
    """The intent's runctl process is still running (the same process: pid and start time)."""
    return intent.pid == os.getpid() or process_alive(intent.pid, intent.pid_start)


def providers_in_scope(session: Session, explicit: str | None) -> list[str]:
    from runctl_core.plugins import installed_providers

    if explicit:
        return [explicit]
    names = {info.name for info in installed_providers() if not info.blocked}
    names |= {row.instance.provider for row in session.store.instances(alive_only=True)}
    return sorted(names)


def reconcile(session: Session, providers: list[str]) -> Reconciliation:
    store = session.store
    owner = session.loaded.config.owner
    notes: list[str] = []
    skipped: list[SkippedProvider] = []
    found: list[Resource] = []
    for name in providers:
        try:
            provider = session.provider(name)
            creds = provider.check_credentials(probe=False)
            if not creds.found:
                hint = creds.hint or creds.message
                notes.append(f"{name}: skipped, no credentials ({hint})")
                alive = sum(1 for row in store.instances(provider=name) if row.ended_at is None)
                if alive:
                    notes[-1] += f"; {alive} instance(s) in runctl's journal there could not be checked"
                skipped.append(
                    SkippedProvider(provider=name, reason="no credentials", hint=hint, journalled_alive=alive)
                )
                continue
            remote = provider.list_instances()
        except RunctlError as exc:
            notes.append(f"{name}: could not be asked: {exc.message}")
            continue
        journal = {row.instance.id: row for row in store.instances(provider=name)}
        seen: set[str] = set()
        if remote is None:
            notes.append(f"{name}: cannot list its instances; showing the journal, refreshed one by one")
            remote = []
            for row in journal.values():
                if row.ended_at is None:
                    try:
                        remote.append(provider.status(row.instance, None).instance)
                    except RunctlError as exc:
                        notes.append(f"{name}: {row.instance.id}: {exc.message}")
        for instance in remote:
            known = journal.get(instance.id)
            tagged = instance.tags.get("runctl:owner")
            if tagged != owner and not (tagged is None and known is not None):
                continue  # another person's, or untagged and unknown to us: never shown as ours, never touched
            seen.add(instance.id)
            if not instance.state.alive:
                if known is not None and known.ended_at is None:
                    store.save_instance(instance)
                continue
            found.append(_classify(session, provider, instance, known))
        for row in journal.values():  # journal says alive, provider does not list it: it is gone
            if row.ended_at is None and row.instance.id not in seen and provider.has("list_instances"):
                store.save_instance(
                    row.instance.model_copy(
                        update={"state": InstanceState.TERMINATED, "message": "no longer at the provider"}
                    )
                )
        for intent in store.pending_intents():
            if intent.kind == "use" and intent.provider == name and not _process_alive(intent):
                store.finish_intent(intent.id, error="its process ended while using the instance")
                continue
            if intent.provider == name and not _process_alive(intent) and provider.has("list_instances"):
                matched = [
                    r for r in found if r.id in {i.id for i in remote if i.tags.get("runctl:intent") == intent.id}
                ]
                for instance in remote:  # what the dead create call made: journal it, with its job and intent
                    if instance.id in {r.id for r in matched} and instance.id not in journal:
                        store.save_instance(
                            instance,
                            job_id=intent.job_id,
                            intent_id=intent.id,
                            billing=provider.capabilities().billing,
                        )
                store.finish_intent(
                    intent.id,
                    resource_id=matched[0].id if matched else None,
                    error=None if matched else "its process died before the provider answered",
                )
                job = store.job(intent.job_id) if intent.job_id and not matched else None
                if job is not None and not job.state.terminal and not store.instances_for_job(job.id):
                    store.update_job(  # it never got an instance, and its runctl process is gone: it cannot run
                        job.id, state=JobState.LOST, message="its runctl process died before an instance was created"
                    )
    return Reconciliation(resources=found, notes=notes, skipped=skipped)


def _detached_job_state(session: Session, provider: Any, instance: Instance, job: Any) -> Any:
    """A detached run's job, refreshed from the provider when the journal still has it running: nobody may
    have looked since it ended."""
    from runctl_core.models import JobStatus

    if job.state.terminal:
        return job
    last = job.status or JobStatus(job_id=job.id, state=job.state, exit_code=job.exit_code)
    try:
        report = provider.status(instance, last)
    except RunctlError:
        return job
    if report.job is not None:
        session.store.update_job(job.id, status=report.job)
    return session.store.job(job.id) or job


def _classify(session: Session, provider: Any, instance: Instance, row: Any) -> Resource:
    store = session.store
    base = {
        "provider": instance.provider,
        "id": instance.id,
        "state": instance.state.value,
        "job_id": instance.tags.get("runctl:job") or (row.job_id if row else None),
        "owner": instance.tags.get("runctl:owner"),
        "created_at": instance.created_at or (row.created_at if row else None),
        "hourly_price": instance.hourly_price,
        "in_journal": row is not None,
    }
    claims = [c for c in store.claims(instance.provider, instance.id) if _process_alive(c)]
    if claims:
        what = claims[0].spec.get("what") or "using it"
        return Resource(**base, kind="in-use", reason=f"runctl process {claims[0].pid} is {what}")
    if row is None:
        creating = store.intent(instance.tags.get("runctl:intent", "")) if instance.tags.get("runctl:intent") else None
        if creating is not None and creating.status == "pending" and _process_alive(creating):
            return Resource(
                **base,
                kind="in-use",
                reason=f"its create call has not returned yet to runctl process {creating.pid}, which is running",
            )
        return Resource(**base, kind="orphan", reason="alive at the provider, not in runctl's journal")
    if row.ended_at is not None:
        return Resource(**base, kind="orphan", reason="journalled as ended, still alive at the provider")
    if row.keep:
        job = store.job(row.job_id) if row.job_id else None
        if job is not None and not job.keep:  # a detached run's instance: finished once its job has ended
            job = _detached_job_state(session, provider, instance, job)
        if job is not None and job.state.terminal and not job.keep:
            return Resource(**base, kind="finished", reason=f"its detached job {job.id} has ended ({job.state.value})")
        return Resource(**base, kind="kept", reason="created to be kept (runctl create / --keep / --detach)")
    intent = store.intent(row.intent_id) if row.intent_id else None
    if intent is not None and intent.pid != os.getpid():  # the run that created it: alive means it is in use,
        if _process_alive(intent):  # also while it collects checkpoints after its job ended
            return Resource(**base, kind="in-use", reason=f"its runctl process {intent.pid} is running")
        return Resource(
            **base, kind="abandoned", reason=f"the runctl process that created it (pid {intent.pid}) is gone"
        )
    job = store.job(row.job_id) if row.job_id else None
    if job is not None and job.state.terminal:
        return Resource(**base, kind="finished", reason=f"its job {job.id} has ended ({job.state.value})")
    return Resource(**base, kind="in-use", reason="a running runctl process is using it")


def older_than(resource: Resource, seconds: float | None) -> bool:
    if seconds is None or resource.created_at is None:
        return True
    created = resource.created_at if resource.created_at.tzinfo else resource.created_at.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - created).total_seconds() >= seconds

"""The steps of a run that act on an instance, each usable on its own by the single-step commands: create
(intent first, spot refusal -> on-demand), wait until ready, sync the project, start the job, collect its
outputs. Ending an instance is in ``teardown``; waiting for a job and reading its log in ``job_watch``."""

from __future__ import annotations

import time
from pathlib import Path

from runctl_core.errors import CapacityError, ProviderError, RunctlError, SpotRefused, StateError, WaitTimeout
from runctl_core.models import Collected, Instance, InstanceSpec, InstanceState, JobSpec, JobStatus, Project, SyncResult
from runctl_core.plugins import Provider
from runctl_core.run_models import InstanceRequest
from runctl_core.session import Session
from runctl_core.teardown import cleanup_intent, stop_instance


def create_instance(
    session: Session, provider: Provider, request: InstanceRequest, *, job_id: str | None, keep: bool
) -> Instance:
    """Journal the intent, create, record the instance. The caller cleans up on failure."""
    store = session.store
    spec_fields = request.model_dump(exclude={"wait_timeout"})
    intent_id = store.begin_intent(provider.name, "create", job_id, spec_fields)
    caps = provider.capabilities()
    spec = InstanceSpec(
        intent_id=intent_id,
        job_id=job_id,
        owner=session.loaded.config.owner,
        **{**spec_fields, "max_runtime": request.max_runtime if caps.max_runtime.supported else None},
    )
    session.progress.update(f"creating a {provider.name} instance")
    try:
        try:
            instance = provider.create(spec)
        except SpotRefused as refused:
            store.finish_intent(intent_id, error=refused.message)
            spec = _on_demand_after_refusal(session, provider, spec, refused)
            intent_id = store.begin_intent(provider.name, "create", job_id, {**spec_fields, "spot": False})
            spec = spec.model_copy(update={"intent_id": intent_id})
            instance = provider.create(spec)
    except KeyboardInterrupt:  # the call may have created something we never heard about: find it by its tag
        try:
            cleanup_intent(session, provider, intent_id)
        except (KeyboardInterrupt, RunctlError):
            pass  # the intent stays pending; `runctl resources cleanup` finds it
        raise
    except RunctlError as exc:  # the provider answered: nothing was created
        store.finish_intent(intent_id, error=exc.message)
        raise
    try:
        store.save_instance(instance, job_id=job_id, intent_id=intent_id, keep=keep, billing=caps.billing)
        store.finish_intent(intent_id, resource_id=instance.id)
    except StateError as exc:  # created but not recorded: nothing could find it again, so it must not live
        try:
            stop_instance(session, provider, instance)
            what = f"{provider.name} instance {instance.id} was terminated: it could not be recorded"
        except (KeyboardInterrupt, RunctlError):
            what = (
                f"{provider.name} instance {instance.id} could not be recorded; end it: runctl terminate {instance.id}"
            )
        raise StateError(exc.message, f"{what}. {exc.hint}") from None
    return instance


def spot_comparison(spot: float | None, on_demand: float | None) -> str:
    """'spot $0.3100/h, on-demand $1.0200/h (3.3x)' - the same words for every provider."""

    def money(value: float | None) -> str:
        return f"${value:.4f}/h" if value is not None else "unknown"

    ratio = f" ({on_demand / spot:.1f}x)" if spot and on_demand else ""
    return f"spot {money(spot)}, on-demand {money(on_demand)}{ratio}"


def _on_demand_after_refusal(
    session: Session, provider: Provider, spec: InstanceSpec, refused: SpotRefused
) -> InstanceSpec:
    """Apply --on-demand-fallback to a provider's SpotRefused: the on-demand spec to create, or the error."""
    prices = spot_comparison(refused.spot_price, refused.on_demand_price)
    policy = spec.on_demand_fallback
    question = f"{provider.name}: spot refused ({refused.message}); {prices}. Start on-demand instead?"
    if policy == "never" or (policy == "ask" and not session.progress.confirm(question)):
        raise CapacityError(
            f"{provider.name}: spot refused: {refused.message}; {prices}",
            refused.hint or "retry later, or allow on-demand: --on-demand-fallback always (or --on-demand)",
            details={"spot_price": refused.spot_price, "on_demand_price": refused.on_demand_price},
        )
    if spec.max_price is not None and refused.on_demand_price is not None and refused.on_demand_price > spec.max_price:
        raise CapacityError(
            f"{provider.name}: spot refused and on-demand is above --max-price ${spec.max_price:.4f}/h; {prices}",
            "raise --max-price, or retry spot later",
        )
    session.progress.warn(f"{provider.name}: spot refused ({refused.message}); falling back to on-demand: {prices}")
    return spec.model_copy(update={"spot": False})


def wait_ready(session: Session, provider: Provider, instance: Instance, timeout: float | None) -> Instance:
    caps = provider.capabilities()
    limit = timeout or caps.ready_timeout
    deadline = time.monotonic() + limit
    delay = caps.poll_interval
    current = instance
    while True:
        provider.deadline = deadline  # retries of a failing check never wait past --wait-timeout
        try:
            current = provider.ready(current)
        finally:
            provider.deadline = None
        session.store.save_instance(current)
        if current.state is InstanceState.RUNNING:
            return current
        if not current.state.alive or current.state is InstanceState.STOPPED:
            raise ProviderError(
                f"{provider.name} instance {current.id} is {current.state.value} before it became ready"
                + (f": {current.message}" if current.message else ""),
                "try again, or another --instance-type/--gpu; see: runctl price",
            )
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"{provider.name} instance {current.id} was not ready after {limit:.0f}s"
                + (f" ({current.message})" if current.message else ""),
                f"raise --wait-timeout, or check it with: runctl status {current.id}",
            )
        session.progress.update(f"waiting for {current.id}: {current.message or current.state.value}")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, max(caps.poll_interval * 4, 1.0))


def stage_project(session: Session, provider: Provider, instance: Instance, project: Project) -> None:
    """Let the provider start uploading ``project`` while the just-created ``instance`` boots (the optional
    ``stage`` hook; nothing for a provider without it). Staging only saves time, so its failure is a warning:
    ``sync`` does the work after ``ready``."""
    if not provider.has("stage"):
        return
    session.progress.update(f"staging {len(project.files)} files for {instance.id} while it starts")
    try:
        provider.stage(instance, project)
    except RunctlError as exc:
        session.progress.warn(f"could not stage the project for {instance.id} ({exc.message}); sync will send it")
        return
    session.store.event("stage", provider=provider.name, instance_id=instance.id, files_total=len(project.files))


def sync_project(session: Session, provider: Provider, instance: Instance, project: Project) -> SyncResult:
    session.progress.update(f"syncing {len(project.files)} files ({project.total_bytes} bytes) to {instance.id}")
    result = provider.sync(instance, project)
    session.store.event(
        "sync",
        provider=provider.name,
        instance_id=instance.id,
        files_sent=result.files_sent,
        bytes_sent=result.bytes_sent,
        files_total=result.files_total,
    )
    return result


def start_job(session: Session, provider: Provider, instance: Instance, spec: JobSpec) -> JobStatus:
    session.progress.update(f"starting {spec.script} on {instance.id}")
    status = provider.train(instance, spec)
    session.store.update_job(spec.job_id, instance_id=instance.id, status=status)
    return status


def collect_outputs(
    session: Session, provider: Provider, instance: Instance, status: JobStatus, dest: Path, *, record: bool = True
) -> Collected | None:
    """Copy a job's outputs to ``dest``. ``record=False`` (a ``checkpoint pull`` to a directory of the user's
    choosing) only copies: the job's recorded directory and its "collected" state stay as they were."""
    session.progress.update(f"collecting checkpoints of {status.job_id}")
    collected = provider.collect(instance, status, dest)
    if collected is not None and record:
        session.store.update_job(status.job_id, outputs_dir=str(dest))
        session.store.event("collect", provider=provider.name, job_id=status.job_id, files=len(collected.files))
    return collected


def outputs_dir_for(session: Session, job_id: str, base: Path | None) -> Path:
    return (base / job_id) if base else session.home / "jobs" / job_id / "checkpoints"

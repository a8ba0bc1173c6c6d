"""The single steps a user strings together by hand: create a kept instance, start a script on one, follow a job
to its end (collecting its checkpoints, as ``run`` does), and stream a job's log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from runctl_core.cost import describe_estimate, estimate
from runctl_core.errors import CapabilityError, Interrupted, RunctlError
from runctl_core.files import default_project_root
from runctl_core.job_watch import read_logs, wait_job
from runctl_core.jobs import job_context, load_job, resolve_instance
from runctl_core.models import Instance, JobSpec, JobStatus
from runctl_core.plugins import Provider
from runctl_core.preflight import check_credentials, check_nodes, check_request, project_files, resolve_script
from runctl_core.run_models import InstanceRequest, JobInfo, LogSink, job_document
from runctl_core.session import Session
from runctl_core.steps import collect_outputs, create_instance, outputs_dir_for, start_job, sync_project, wait_ready
from runctl_core.teardown import terminate_instance


def create_kept(session: Session, provider: Provider, request: InstanceRequest, *, wait: bool) -> Instance:
    """Create one instance that stays until terminated; Ctrl-C while waiting for it terminates it."""
    check_request(provider, request)
    check_credentials(provider)
    offer = estimate(provider, request, before_spending=True)
    session.progress.step(f"{provider.name}: {describe_estimate(offer, request, provider.capabilities())}")
    instance = create_instance(session, provider, request, job_id=None, keep=True)
    try:
        if wait:
            instance = wait_ready(session, provider, instance, request.wait_timeout)
    except KeyboardInterrupt:
        terminate_instance(session, provider, instance)
        raise Interrupted(
            f"interrupted while waiting; {instance.id} was terminated", "nothing is left running"
        ) from None
    except RunctlError as exc:  # the instance exists (and may bill): end it, or say which one is left and file it
        _end_after_failed_wait(session, provider, instance, exc)
        raise
    return instance


def _end_after_failed_wait(session: Session, provider: Provider, instance: Instance, exc: RunctlError) -> None:
    """``create --wait`` failed after the instance was created: terminate it; if that fails too, name it in the
    error (text and JSON details) and file it as not kept, so that `runctl resources cleanup` removes it."""
    exc.details = {**exc.details, "instance_id": instance.id}
    try:
        final = terminate_instance(session, provider, instance)
    except RunctlError as failed:
        session.store.save_instance(instance, keep=False)
        exc.details["instance_state"] = "unknown"
        exc.message += f"; instance {instance.id} could not be terminated ({failed.message})"
        exc.hint = f"remove it: runctl resources cleanup --yes (or runctl terminate {instance.id} --yes)"
        return
    exc.details["instance_state"] = final.state.value
    exc.message += f"; instance {instance.id} was terminated, nothing is left running"


def start_training(
    session: Session,
    instance_id: str,
    script: str,
    *,
    args: list[str],
    env: dict[str, str],
    timeout: float | None = None,
    project: Path | None = None,
    sync: bool = True,
    nodes: int = 1,
    launcher: str = "python",
    setup: list[str] | None = None,
    python: str | None = None,
) -> tuple[Provider, Instance, JobStatus]:
    """Start ``script`` on an existing instance (syncing the project first); the job runs detached. ``nodes`` >
    1 or ``launcher="torchrun"`` only on providers with the multi_node capability."""
    provider, instance = resolve_instance(session, instance_id)
    check_nodes(provider, nodes, launcher)
    root, rel = resolve_script(project or default_project_root(), script)
    if sync:
        sync_project(session, provider, instance, project_files(session, root))
    store = session.store
    job_id = store.new_job_id()
    spec = JobSpec(
        job_id=job_id,
        script=rel,
        args=list(args),
        env=env,
        timeout=timeout,
        nodes=nodes,
        launcher=launcher,  # "python" or "torchrun", checked by JobSpec
        setup=list(setup or []),
        python=python,
    )
    store.create_job(spec, provider.name, keep=True)
    return provider, instance, start_job(session, provider, instance, spec)


def follow_to_end(
    session: Session, provider: Provider, instance: Instance, status: JobStatus, *, sink: LogSink | None
) -> JobStatus:
    """Wait for a job on a kept instance to end, then collect its checkpoints (the instance stays)."""
    try:
        final, _ = wait_job(session, provider, instance, status, sink=sink)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped following job {status.job_id}; it keeps running on {instance.id}",
            f"follow it again: runctl logs {status.job_id} --follow; stop it: runctl terminate {status.job_id} --yes",
        ) from None
    row = session.store.job(status.job_id)
    dest = Path(row.outputs_dir) if row and row.outputs_dir else outputs_dir_for(session, status.job_id, None)
    collect_outputs(session, provider, instance, final, dest)
    return final


def job_info(session: Session, job_id: str) -> JobInfo:
    return JobInfo(**job_document(session.store, job_id))


def iter_log(session: Session, job_id: str, *, follow: bool) -> Iterator[str]:
    """The job's log, chunk by chunk (by byte offset: no repeats, no gaps); with ``follow``, until it ends."""
    row = load_job(session, job_id)
    provider, instance, status = job_context(session, row)
    if not provider.has("logs"):
        raise CapabilityError(f"provider {provider.name} cannot show logs", f"check it with: runctl status {job_id}")
    caps = provider.capabilities()
    offset, delay = 0, caps.poll_interval
    while True:
        chunks: list[str] = []
        ended = status.state.terminal or not follow
        read = read_logs(provider, instance, status, offset, chunks.append, until_complete=ended)
        offset = read.offset
        yield from chunks
        if ended:
            return
        report = provider.status(instance, status)
        status = report.job or status
        session.store.update_job(job_id, status=status)
        if not status.state.terminal:
            delay = caps.poll_interval if chunks else min(delay * 1.3, caps.poll_interval * 5, 10.0)
            time.sleep(delay)

"""The whole run, with recovery on preemption and cleanup on every way out.

    run = check -> estimate -> [intent] create -> ready -> sync -> train -> wait (follow logs) -> collect -> terminate

Every step records itself in the state store. Whatever a run created is terminated on the way out - on
success, failure, Ctrl-C or SIGTERM - unless ``keep``; an instance whose create call was in flight when the
run was interrupted is found through its ``runctl:intent`` tag and terminated too.

The run is put together from modules that each hold one part (and that the single-step commands use on their
own): ``run_models`` (requests and results), ``preflight`` (checks and the dry-run plan), ``steps`` (create,
ready, sync, train, collect), ``job_watch`` (waiting and logs), ``teardown`` (terminate and cleanup). Their
names are re-exported here, so ``from runctl_core.workflow import ...`` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from runctl_core import signals
from runctl_core.cost import describe_estimate, estimate, job_cost
from runctl_core.durations import format_duration
from runctl_core.errors import Interrupted, JobFailed, JobTimedOut, RunctlError, SetupFailed, UsageError
from runctl_core.job_watch import LogRead, LogTail, failing_rank_tail, read_logs, tail, wait_job
from runctl_core.models import JobSpec, JobState, JobStatus, Project
from runctl_core.plugins import Provider
from runctl_core.preflight import (
    RESERVED_ENV_PREFIX,
    check_credentials,
    check_job_env,
    check_nodes,
    check_outputs_dir,
    check_request,
    plan_run,
    project_files,
    resolve_script,
)
from runctl_core.redact import declare_env
from runctl_core.run_models import (
    Attempt,
    InstanceRequest,
    JobInfo,
    LogSink,
    RunRequest,
    RunResult,
    job_document,
)
from runctl_core.session import Session
from runctl_core.steps import (
    collect_outputs,
    create_instance,
    outputs_dir_for,
    spot_comparison,
    stage_project,
    start_job,
    sync_project,
    wait_ready,
)
from runctl_core.teardown import (
    RunState,
    cleanup_intent,
    cleanup_run,
    record_terminated,
    stop_instance,
    terminate_instance,
)

__all__ = [  # the names this module has always offered (most are defined in the modules above)
    "RESERVED_ENV_PREFIX",
    "Attempt",
    "InstanceRequest",
    "JobInfo",
    "LogRead",
    "LogSink",
    "LogTail",
    "RunRequest",
    "RunResult",
    "RunState",
    "check_credentials",
    "check_job_env",
    "check_nodes",
    "check_outputs_dir",
    "check_request",
    "cleanup_intent",
    "collect_outputs",
    "create_instance",
    "describe_estimate",
    "environment_report",
    "estimate",
    "execute_run",
    "failing_rank_tail",
    "job_document",
    "outputs_dir_for",
    "plan_run",
    "project_files",
    "raise_if_setup_failed",
    "read_logs",
    "record_terminated",
    "resolve_script",
    "spot_comparison",
    "start_job",
    "stop_instance",
    "sync_project",
    "tail",
    "terminate_instance",
    "wait_job",
    "wait_ready",
]


def execute_run(session: Session, provider: Provider, request: RunRequest, *, sink: LogSink | None) -> RunResult:
    """The whole run, with recovery on preemption when ``request.recover``; cleanup on every way out."""
    check_job_env(request.env)
    declare_env(request.env)
    if request.outputs_dir is not None:
        check_outputs_dir(request.outputs_dir)
    root, script = resolve_script(request.project_root, request.script)
    project = project_files(session, root, request.outputs_dir)
    check_request(provider, request.instance)
    check_nodes(provider, request.nodes, request.launcher)
    check_credentials(provider)
    offer = estimate(provider, request.instance, before_spending=True)
    session.progress.step(f"{provider.name}: {describe_estimate(offer, request.instance, provider.capabilities())}")

    attempts: list[Attempt] = []
    parent: str | None = None
    resume_dir: Path | None = _resume_dir(session, request.resume_from) if request.resume_from else None
    max_attempts = 1 + (request.max_restarts if request.recover else 0)
    result: RunResult | None = None
    for number in range(1, max_attempts + 1):
        result = _run_attempt(
            session, provider, request, root, script, project, number, parent, resume_dir, attempts, sink
        )
        last = attempts[-1]
        resumable = last.state in (JobState.INTERRUPTED.value, JobState.LOST.value)
        if not resumable or number == max_attempts or request.detach:
            break
        collected = Path(result.outputs_dir) if result.outputs_dir else None
        if collected is not None and collected.is_dir() and any(collected.iterdir()):
            resume_dir = collected  # else keep the previous one: nothing newer came back
        session.progress.warn(
            f"job {last.job_id} was {last.state} ({last.message or 'instance reclaimed'}); resuming "
            + ("from its newest checkpoint" if resume_dir else "from the start (no checkpoint came back)")
            + f" on a new instance (attempt {number + 1} of {max_attempts})"
        )
        parent = last.job_id
    assert result is not None
    result.attempts = attempts
    result.cost = _sum_costs(attempts)
    state = result.job.state
    result.environment = attempts[-1].environment if attempts else None
    raise_if_setup_failed(result.job.job_id, result.environment, result.log_tail if sink is None else "", result)
    if state in (JobState.FAILED.value, JobState.LOST.value, JobState.INTERRUPTED.value, JobState.CANCELLED.value):
        code = result.job.exit_code
        what = f"exited with code {code}" if state == "failed" and code is not None else state
        hint = f"see the whole log: runctl logs {result.job.job_id}"
        error: type[JobFailed] = JobFailed
        if _timed_out(request, state, result.job.message):
            error, limit = JobTimedOut, format_duration(request.timeout or 0)
            what = f"timed out: stopped by --timeout {limit} ({result.job.message})"
            hint = (
                f"raise --timeout (it was {limit}), or have the script write checkpoints and continue it with: "
                f"runctl run ... --resume-from {result.job.job_id}; the whole log: runctl logs {result.job.job_id}"
            )
        if state == JobState.INTERRUPTED.value:
            hint = f"rerun with --recover, or: runctl run ... --resume-from {result.job.job_id}"
        if result.failed_rank:  # not rank 0, whose log was streamed: show the failing rank's
            what = f"{what} (rank {result.failed_rank} failed first; the other ranks were stopped)"
            hint = f"see that rank's whole log: runctl logs {result.job.job_id} --rank {result.failed_rank}"
        shown_tail = f"\n{result.log_tail}" if result.log_tail and (sink is None or result.failed_rank) else ""
        raise error(
            f"job {result.job.job_id} {what}{shown_tail}", hint, details={"result": result.model_dump(mode="json")}
        )
    return result


def _timed_out(request: RunRequest, state: str, message: str) -> bool:
    """A failed job that its ``--timeout`` ended: the job runner (and a provider's own limit, e.g. Lyceum's) says
    "timeout" in the job's message; only when a --timeout was given."""
    return request.timeout is not None and state == JobState.FAILED.value and "timeout" in (message or "").lower()


def environment_report(status: JobStatus | None) -> dict[str, Any] | None:
    """The environment step's report of a job, as shown in JSON output (``None`` when the provider has none)."""
    return status.setup.model_dump(mode="json") if status is not None and status.setup is not None else None


def raise_if_setup_failed(job_id: str, environment: dict[str, Any] | None, log_tail: str, result: Any = None) -> None:
    """A job whose environment could not be prepared is a setup failure (exit 3), not a failed script."""
    if not environment or environment.get("state") != "failed":
        return
    shown = f"\n{log_tail}" if log_tail else ""
    hint = environment.get("hint") or "fix the job's dependencies or setup commands"
    details: dict[str, object] = {"result": result.model_dump(mode="json")} if isinstance(result, BaseModel) else {}
    raise SetupFailed(
        f"job {job_id}: the environment could not be prepared, the script did not run: "
        f"{environment.get('message') or 'setup failed'}{shown}",
        f"{hint}; the whole setup log: runctl logs {job_id}",
        details=details,
    )


def _sum_costs(attempts: list[Attempt]) -> float | None:
    costs = [a.cost for a in attempts if a.cost is not None]
    return sum(costs) if costs else None


def _resume_dir(session: Session, job_id: str) -> Path:
    row = session.store.job(job_id)
    if row is None:
        raise UsageError(f"no job {job_id} in runctl's records", "list jobs with: runctl jobs --all")
    directory = Path(row.outputs_dir) if row.outputs_dir else outputs_dir_for(session, job_id, None)
    if not directory.is_dir() or not any(directory.iterdir()):
        raise UsageError(
            f"job {job_id} has no collected checkpoints in {directory}",
            f"see what it has with: runctl checkpoint list {job_id}",
        )
    return directory


def _run_attempt(
    session: Session,
    provider: Provider,
    request: RunRequest,
    root: Path,
    script: str,
    project: Project,
    number: int,
    parent: str | None,
    resume_dir: Path | None,
    attempts: list[Attempt],
    sink: LogSink | None,
) -> RunResult:
    store = session.store
    job_id = store.new_job_id()
    spec = JobSpec(
        job_id=job_id,
        script=script,
        args=request.args,
        env=request.env,
        timeout=request.timeout,
        resume_dir=resume_dir,
        terminate_on_exit=request.detach and not request.keep,
        nodes=request.nodes,
        launcher=request.launcher,
        setup=request.setup,
        python=request.python,
    )
    store.create_job(spec, provider.name, parent_id=parent, attempt=number, keep=request.keep)
    run = RunState()
    log_tail = LogTail()

    def capture(text: str) -> None:
        log_tail.add(text)
        if sink is not None:
            sink(text)

    finished = False
    signals_before = signals.received()
    dest = outputs_dir_for(session, job_id, request.outputs_dir)
    try:
        run.instance = create_instance(
            session, provider, request.instance, job_id=job_id, keep=request.keep or request.detach
        )
        session.progress.step(f"created {provider.name} instance {run.instance.id}")
        stage_project(session, provider, run.instance, project)  # uploads overlap the boot (optional hook)
        run.instance = wait_ready(session, provider, run.instance, request.instance.wait_timeout)
        synced = sync_project(session, provider, run.instance, project)
        session.progress.step(f"synced {synced.files_sent}/{synced.files_total} files to {run.instance.id}")
        run.status = start_job(session, provider, run.instance, spec)
        session.progress.step(f"started job {job_id}: {script} {' '.join(request.args)}".rstrip())
        if request.detach:
            finished = True
            if request.outputs_dir is not None:  # where its checkpoints go when runctl sees it ended (jobs.py)
                store.event("outputs", provider=provider.name, job_id=job_id, dest=str(dest))
            attempts.append(
                Attempt(
                    job_id=job_id, instance_id=run.instance.id, state=run.status.state.value, exit_code=None, cost=None
                )
            )
            return RunResult(
                job=JobInfo(**job_document(store, job_id)),
                instance=run.instance.model_dump(mode="json"),
                hourly_price=run.instance.hourly_price,
            )
        session.progress.pause()
        run.status, _ = wait_job(session, provider, run.instance, run.status, sink=capture, timeout=None)
        collected = collect_outputs(session, provider, run.instance, run.status, dest)
        checkpoints = [str(p) for p in collected.files] if collected else []
        if not request.keep:
            run.instance = terminate_instance(session, provider, run.instance)
        finished = True
        cost = job_cost(store.instance(run.instance.id, provider.name), run.status)
        store.update_job(job_id, cost=cost)
        attempts.append(
            Attempt(
                job_id=job_id,
                instance_id=run.instance.id,
                state=run.status.state.value,
                exit_code=run.status.exit_code,
                cost=cost,
                message=run.status.message,
                environment=environment_report(run.status),
            )
        )
        return RunResult(
            job=JobInfo(**job_document(store, job_id)),
            instance=run.instance.model_dump(mode="json"),
            checkpoints=checkpoints,
            outputs_dir=str(dest) if collected else None,
            hourly_price=run.instance.hourly_price,
            log_tail=(failing_rank_tail(provider, run.instance, run.status) or tail(log_tail.text()))
            if run.status.state is not JobState.SUCCEEDED
            else "",
            failed_rank=run.status.rank if run.status.state is not JobState.SUCCEEDED and run.status.rank else None,
        )
    except BaseException as exc:
        if finished and not isinstance(exc, KeyboardInterrupt):
            raise
        closed = isinstance(exc, BrokenPipeError)  # the output went away (`runctl run ... 2>&1 | head`)
        interrupted = closed or isinstance(exc, KeyboardInterrupt) or signals.received() > signals_before
        if not interrupted:
            reason = exc.message if isinstance(exc, RunctlError) else type(exc).__name__
            cleanup_run(session, provider, run, job_id, keep=request.keep, reason=reason, dest=dest)
            raise
        cause = "its output was closed" if closed else "Ctrl-C/SIGTERM"
        clean = cleanup_run(
            session, provider, run, job_id, keep=request.keep, reason=f"interrupted ({cause})", dest=dest
        )
        if request.keep:
            hint = f"the instance was kept: runctl terminate {run.instance.id if run.instance else ''}"
        elif clean:
            hint = "nothing is left running"
        else:
            hint = "something may still be running: see `runctl resources list`; remove it: runctl resources cleanup"
        raise Interrupted(
            f"run {job_id} interrupted"
            + (f" ({cause})" if closed else "")
            + ("" if request.keep else "; what it created has been terminated" if clean else ""),
            hint,
        ) from None

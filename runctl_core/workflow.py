"""The steps of a run, each usable on its own by the single-step commands, and the whole run.

    run = check -> estimate -> [intent] create -> ready -> sync -> train -> wait (follow logs) -> collect -> terminate

Every step records itself in the state store. Whatever a run created is terminated on the way out - on
success, failure, Ctrl-C or SIGTERM - unless ``keep``; an instance whose create call was in flight when the
run was interrupted is found through its ``runctl:intent`` tag and terminated too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runctl_core import signals
from runctl_core.cost import describe_estimate, estimate, job_cost
from runctl_core.errors import (
    CapabilityError,
    CapacityError,
    CredentialsError,
    Interrupted,
    JobFailed,
    ProviderError,
    RunctlError,
    SetupFailed,
    SpotRefused,
    StateError,
    UsageError,
    WaitTimeout,
)
from runctl_core.files import hash_cache_path, scan_project, size_warning
from runctl_core.models import (
    Collected,
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    PlannedCall,
    PlanRequest,
    Project,
    SyncResult,
)
from runctl_core.plugins import Provider
from runctl_core.redact import declare_env
from runctl_core.session import Session

LogSink = Callable[[str], None]


class InstanceRequest(BaseModel):
    model_config = ConfigDict(defer_build=True)

    """What the user asked for on the command line (flags over config defaults)."""

    instance_type: str | None = None
    gpu: str | None = None
    gpu_count: int = 1
    spot: bool = False
    max_price: float | None = None
    on_demand_fallback: str = "ask"
    max_runtime: float | None = None
    image: str | None = None
    disk_gb: int | None = None
    region: str | None = None
    wait_timeout: float | None = None


class RunRequest(BaseModel):
    model_config = ConfigDict(defer_build=True)

    script: str
    args: list[str] = Field(default_factory=list)
    project_root: Path
    instance: InstanceRequest
    timeout: float | None = None
    keep: bool = False
    detach: bool = False
    recover: bool = False
    max_restarts: int = 0
    outputs_dir: Path | None = None
    resume_from: str | None = None  # a job id whose newest checkpoints seed this run
    env: dict[str, str] = Field(default_factory=dict)
    nodes: int = 1  # multi-node: one process group per node (providers with the multi_node capability)
    launcher: str = "python"  # "torchrun": torchrun per node instead of python
    setup: list[str] = Field(default_factory=list)  # shell lines of the environment step (JobSpec.setup)
    python: str | None = None  # Python version for the job's environment (JobSpec.python)


class Attempt(BaseModel):
    model_config = ConfigDict(defer_build=True)

    job_id: str
    instance_id: str | None
    state: str
    exit_code: int | None
    cost: float | None
    message: str = ""
    environment: dict[str, Any] | None = None  # the environment step's report (EnvironmentReport)


class JobInfo(BaseModel):
    """A job as ``run``, ``train`` and ``status`` report it."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    job_id: str
    provider: str | None = None
    instance_id: str | None = None
    state: str = "pending"
    exit_code: int | None = None
    script: str | None = None
    args: list[str] = Field(default_factory=list)
    attempt: int = 1
    parent_id: str | None = None
    created_at: str | None = None
    ended_at: str | None = None
    message: str = ""


class RunResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    job: JobInfo
    instance: dict[str, Any] | None
    checkpoints: list[str] = Field(default_factory=list)
    outputs_dir: str | None = None
    cost: float | None = None
    hourly_price: float | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    log_tail: str = ""
    failed_rank: int | None = None  # multi-node: the rank (other than 0) whose failure ended the job
    environment: dict[str, Any] | None = None  # how the job's environment was prepared (state, seconds)


# ------------------------------------------------------------------------------------------------ checks


def check_request(provider: Provider, request: InstanceRequest) -> None:
    """Refuse, before anything is done, what the provider declared it cannot do."""
    caps = provider.capabilities()
    if request.spot and not caps.spot.supported:
        raise CapabilityError(
            f"provider {provider.name!r} cannot run spot instances: {caps.spot.reason}",
            "drop --spot, or choose a provider that has spot (runctl price --gpu NAME compares them)",
        )
    if request.gpu and not caps.gpu.supported:
        raise CapabilityError(
            f"provider {provider.name!r} cannot give a GPU: {caps.gpu.reason}",
            "drop --gpu, or choose a provider with GPUs: runctl price --gpu " + request.gpu,
        )


def check_nodes(provider: Provider, nodes: int, launcher: str) -> None:
    """Refuse ``--nodes N`` (N > 1) and ``--launcher torchrun`` on a provider without ``multi_node``."""
    caps = provider.capabilities()
    if (nodes > 1 or launcher != "python") and not caps.multi_node.supported:
        what = f"--nodes {nodes}" if nodes > 1 else f"--launcher {launcher}"
        raise CapabilityError(
            f"provider {provider.name!r} cannot run {what}: {caps.multi_node.reason}",
            "drop it, or choose a provider with multi-node jobs: --provider local (to debug) or slurm",
        )


def failing_rank_tail(provider: Provider, instance: Instance, status: JobStatus) -> str:
    """The end of the log of the rank that failed a multi-node job (rank 0's log is the job's log)."""
    if not status.rank:
        return ""
    parts: list[str] = []
    try:
        read_logs(provider, instance, status, 0, parts.append, until_complete=True, rank=status.rank)
    except RunctlError:
        return ""
    return f"rank {status.rank}'s log ends with:\n{tail(''.join(parts))}"


def check_credentials(provider: Provider) -> None:
    status = provider.check_credentials(probe=False)
    if not status.found:
        raise CredentialsError(
            f"no credentials for {provider.name}: {status.message or 'none found'}",
            status.hint or f"see: runctl providers --check, and the README section on {provider.name}",
        )


# ------------------------------------------------------------------------------------------------ steps


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


def wait_job(
    session: Session,
    provider: Provider,
    instance: Instance,
    status: JobStatus,
    *,
    sink: LogSink | None,
    offset: int = 0,
    timeout: float | None = None,
    rank: int = 0,
) -> tuple[JobStatus, int]:
    """Poll until the job ends, sending new log text to ``sink`` (by byte offset: no repeats, no gaps)."""
    caps = provider.capabilities()
    delay = caps.poll_interval
    deadline = time.monotonic() + timeout if timeout else None
    current = status
    follow = sink is not None and provider.has("logs")
    while True:
        signals.raise_pending()
        report = provider.status(instance, current)
        current = report.job or current
        session.store.update_job(current.job_id, status=current)
        got_output = False
        if follow:
            read = read_logs(
                provider, instance, current, offset, sink, until_complete=current.state.terminal, rank=rank
            )
            offset, got_output = read.offset, read.got_output
        if current.state.terminal:
            return current, offset
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(
                f"job {current.job_id} still {current.state.value} after {timeout:.0f}s",
                f"it keeps running; follow it with: runctl logs {current.job_id} --follow",
            )
        session.progress.update(f"job {current.job_id} {current.state.value} on {instance.id}")
        delay = caps.poll_interval if got_output else min(delay * 1.3, caps.poll_interval * 5, 10.0)
        time.sleep(delay)


class LogRead(BaseModel):
    model_config = ConfigDict(defer_build=True)

    offset: int  # where the next read starts
    got_output: bool  # some text was sent to the sink
    complete: bool  # the job has ended and everything up to ``offset`` has been read


def read_logs(
    provider: Provider,
    instance: Instance,
    job: JobStatus,
    offset: int,
    sink: LogSink | None,
    until_complete: bool,
    rank: int = 0,
) -> LogRead:
    """Send the job's log from ``offset`` to ``sink`` chunk by chunk (by byte offset: no repeats, no gaps): all
    that exists now when ``until_complete``, else until a read brings nothing new."""
    got = complete = False
    for _ in range(100_000):
        signals.raise_pending()
        chunk = provider.logs(instance, job, offset, rank)
        if chunk is None:
            break
        if chunk.data and sink is not None:
            sink(chunk.data)
            got = True
        moved = chunk.next_offset > offset
        offset, complete = chunk.next_offset, chunk.complete
        if chunk.complete or not moved or (not until_complete and not chunk.data):
            break
    return LogRead(offset=offset, got_output=got, complete=complete)


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


def outputs_dir_for(session: Session, job_id: str, base: Path | None) -> Path:
    return (base / job_id) if base else session.home / "jobs" / job_id / "checkpoints"


class LogTail:
    """The last ``limit`` characters of a log (for the failure summary): a job's log can be far larger than
    runctl's memory should be, so nothing more is kept."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text[-self.limit :])
        self._size += min(len(text), self.limit)
        while self._size - len(self._parts[0]) >= self.limit:
            self._size -= len(self._parts.pop(0))

    def text(self) -> str:
        return "".join(self._parts)[-self.limit :]


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------ plan


def plan_run(provider: Provider, request: RunRequest, project: Project) -> list[PlannedCall]:
    spec = InstanceSpec(
        intent_id="intent-<new>",
        job_id="job-<new>",
        owner="<owner>",
        **request.instance.model_dump(exclude={"wait_timeout"}),
    )
    job = JobSpec(
        job_id="job-<new>",
        script=request.script,
        args=request.args,
        timeout=request.timeout,
        nodes=request.nodes,
        launcher=request.launcher,
    )
    steps = ["create", "wait", "sync", "train"] + ([] if request.detach else ["wait", "collect"])
    if not request.keep and not request.detach:
        steps.append("terminate")
    return provider.plan(
        PlanRequest(
            steps=list(dict.fromkeys(steps)),
            instance=spec,
            job=job,
            project_files=len(project.files),
            project_bytes=project.total_bytes,
        )
    )


# ------------------------------------------------------------------------------------------------ project


def project_files(session: Session, root: Path, outputs_dir: Path | None = None) -> Project:
    """The project's files to send, without runctl's state directory, collected outputs inside it (this run's
    and every earlier job's), or credential files (unless `[run] send_credential_files` lists them); an unusually
    large project is said first."""
    has_jobs = (session.home / "state.db").exists()  # a dry run on a fresh machine creates no state store
    collected = [Path(job.outputs_dir) for job in session.store.jobs() if job.outputs_dir] if has_jobs else []
    project = scan_project(
        root,
        exclude=[session.home, *([outputs_dir] if outputs_dir else []), *collected],
        allow_credentials=session.loaded.config.run.send_credential_files,
        hash_cache=hash_cache_path(session.home, root),
    )
    warning = size_warning(project)
    if warning:
        session.progress.warn(warning)
    return project


def check_outputs_dir(directory: Path) -> None:
    """Refuse, before anything is created, an outputs directory that cannot be written (after a whole run would
    be too late: the checkpoints would have nowhere to go)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".runctl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write the outputs directory {directory}: {exc.strerror or exc}",
            "pass --outputs DIR with a directory you can write (it is created when missing)",
        ) from None


RESERVED_ENV_PREFIX = "RUNCTL_"  # runctl's own variables (RUNCTL_JOB_ID, RUNCTL_CHECKPOINT_DIR, ...)


def check_job_env(env: dict[str, str]) -> None:
    """Refuse environment a job may not set: runctl's own variables identify the job and its processes."""
    reserved = sorted(name for name in env if name.upper().startswith(RESERVED_ENV_PREFIX))
    if reserved:
        raise UsageError(
            f"{', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} reserved: runctl sets its own"
            " RUNCTL_* variables in every job (RUNCTL_JOB_ID identifies the job's processes)",
            "use another name for your variable, e.g. MY_JOB_ID",
        )


def resolve_script(project_root: Path, script: str) -> tuple[Path, str]:
    """(project root, script path relative to it); the script must exist inside the project."""
    root = project_root.resolve()
    path = Path(script)
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not absolute.is_file():
        raise UsageError(f"script {script} does not exist", "check the path (it is relative to the current directory)")
    _check_python_script(script, absolute)
    try:
        relative = absolute.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(
            f"script {script} is outside the project directory {root}",
            "run runctl from the project's directory, or pass --project DIR that contains the script",
        ) from None
    return root, relative


_NOT_PYTHON = {".sh", ".bash", ".zsh", ".fish", ".ksh", ".csh", ".ps1", ".bat", ".cmd", ".js", ".rb", ".pl", ".jl"}


def _check_python_script(script: str, path: Path) -> None:
    """runctl starts SCRIPT with Python (a job file's ``command:`` is refused until non-Python entries exist):
    a shell (or other) script is refused before anything is created, not run into a SyntaxError."""
    if path.suffix == ".py":
        return
    try:
        with path.open("rb") as handle:
            first = handle.readline(200)
    except OSError:
        first = b""
    shebang = first.startswith(b"#!")
    if path.suffix.lower() in _NOT_PYTHON or (shebang and b"python" not in first):
        raise UsageError(
            f"script {script} is not a Python script: runctl runs SCRIPT with Python",
            f"run it before a Python entry point with --setup 'bash {script}', or start it from a Python wrapper"
            f" (subprocess.run(['bash', '{script}'], check=True))",
        )


# ------------------------------------------------------------------------------------------------ the run


class RunState:
    """What this run created, so that cleanup knows what to end."""

    def __init__(self) -> None:
        self.instance: Instance | None = None
        self.status: JobStatus | None = None
        self.intent_pending: str | None = None


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
        if state == JobState.INTERRUPTED.value:
            hint = f"rerun with --recover, or: runctl run ... --resume-from {result.job.job_id}"
        if result.failed_rank:  # not rank 0, whose log was streamed: show the failing rank's
            what = f"{what} (rank {result.failed_rank} failed first; the other ranks were stopped)"
            hint = f"see that rank's whole log: runctl logs {result.job.job_id} --rank {result.failed_rank}"
        shown_tail = f"\n{result.log_tail}" if result.log_tail and (sink is None or result.failed_rank) else ""
        raise JobFailed(
            f"job {result.job.job_id} {what}{shown_tail}", hint, details={"result": result.model_dump(mode="json")}
        )
    return result


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
        interrupted = isinstance(exc, KeyboardInterrupt) or signals.received() > signals_before
        if not interrupted:
            reason = exc.message if isinstance(exc, RunctlError) else type(exc).__name__
            _cleanup(session, provider, run, job_id, keep=request.keep, reason=reason, dest=dest)
            raise
        clean = _cleanup(
            session, provider, run, job_id, keep=request.keep, reason="interrupted (Ctrl-C/SIGTERM)", dest=dest
        )
        if request.keep:
            hint = f"the instance was kept: runctl terminate {run.instance.id if run.instance else ''}"
        elif clean:
            hint = "nothing is left running"
        else:
            hint = "something may still be running: see `runctl resources list`; remove it: runctl resources cleanup"
        raise Interrupted(
            f"run {job_id} interrupted"
            + ("" if request.keep else "; what it created has been terminated" if clean else ""),
            hint,
        ) from None


def _cleanup(
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


def job_document(store: Any, job_id: str) -> dict[str, Any]:
    """The job as ``run``, ``train`` and ``status`` print it."""
    row = store.job(job_id)
    if row is None:  # pragma: no cover
        return {"job_id": job_id}
    return {
        "job_id": row.id,
        "provider": row.provider,
        "instance_id": row.instance_id,
        "state": row.state.value,
        "exit_code": row.exit_code,
        "script": row.spec.script,
        "args": row.spec.args,
        "attempt": row.attempt,
        "parent_id": row.parent_id,
        "created_at": row.created_at.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "message": row.message,
    }

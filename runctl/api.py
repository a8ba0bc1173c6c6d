"""The functions of ``import runctl``. Each makes a session (configuration, state store, providers) the way a CLI
command does, does the same core work, and returns the core's pydantic models. Nothing here prints or imports
click; the CLI (``runctl_core.cli``) is a thin layer on the same core functions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from runctl_core.jobfile import Job
from runctl_core.jobs import CheckpointEntry
from runctl_core.models import Instance, PriceQuery
from runctl_core.plans import Plan
from runctl_core.run_models import JobInfo, RunResult
from runctl_core.session import Options, Session
from runctl_core.spending import PriceList

LogCallback = Callable[[str], None]


def _strings(name: str, value: Sequence[str], *, split: bool = True) -> list[str]:
    """``value`` as a list; a bare string is refused (``list("--epochs 1")`` would be its characters)."""
    if isinstance(value, str):
        import shlex

        from runctl_core.errors import UsageError

        example = shlex.split(value) if split else [value]
        raise UsageError(f"{name} is a list of strings, not one string", f"e.g. {name}={example!r}")
    return list(value)


def _seconds(name: str, value: float | str | None) -> float | None:
    """A duration as the CLI reads it (``7200``, ``"2h"``, ``"1h30m"``); nan, inf and negatives are refused."""
    if value is None:
        return None
    from runctl_core.durations import parse_duration
    from runctl_core.errors import UsageError

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}", f'e.g. {name}="2h" or {name}=7200 (seconds)') from None


def _session(provider: str | None = None, config: str | os.PathLike[str] | None = None) -> Session:
    return Session(Options(provider=provider, output="api", config_path=str(config) if config else None, quiet=True))


def run(
    script: str | None = None,
    *,
    args: Sequence[str] = (),
    provider: str | Sequence[str] | None = None,
    job: Job | str | os.PathLike[str] | None = None,
    keep: bool = False,
    detach: bool = False,
    resume_from: str | None = None,
    dry_run: bool = False,
    on_log: LogCallback | None = None,
    config: str | os.PathLike[str] | None = None,
    **options: Any,
) -> RunResult | Plan:
    """Run a script on a new instance: create, sync, train, wait (log text goes to ``on_log``), collect the
    checkpoints, terminate. Returns the ``RunResult`` (``result.job.state``, ``result.checkpoints``,
    ``result.cost``); raises ``JobFailed`` (its ``result`` holds the run) when the script fails.

    ``job``: a ``runctl.Job`` or the path of a job file; ``script``/``args``/``provider`` and ``options`` (any
    job-file key: ``gpu``, ``spot``, ``timeout``, ``env``, ``outputs``, ``project``, ...) override it.
    ``provider`` may be a list, tried in order, or ``"auto"`` (the cheapest fitting offer). With
    ``dry_run=True`` nothing is created and the ``Plan`` is returned.
    """
    from runctl_core.auto import execute_auto
    from runctl_core.plans import auto_run_plan, run_plan
    from runctl_core.requests import run_request
    from runctl_core.workflow import execute_run

    base = job if isinstance(job, Job) else Job.from_file(job) if job is not None else Job()
    overrides: dict[str, Any] = {**options, "script": script, "args": _strings("args", args) if args else None}
    if provider is not None:
        overrides["provider"] = provider if isinstance(provider, str) else list(provider)
    merged = base.merged(overrides)
    session = _session(merged.provider if isinstance(merged.provider, str) else None, config)
    request = run_request(
        session,
        merged,
        keep=keep,
        detach=detach,
        resume_from=resume_from,
        on_demand_fallback=options.get("on_demand_fallback"),
    )
    preference = merged.preference()
    auto = preference is not None or session.provider_name() == "auto"
    if dry_run:
        plan = (
            auto_run_plan(session, request, preference)
            if auto
            else run_plan(session, session.provider(session.provider_name()), request)
        )
        plan.job = merged.public_view()
        return plan
    try:
        if auto:
            return execute_auto(session, request, sink=on_log, preference=preference)
        return execute_run(session, session.provider(session.provider_name()), request, sink=on_log)
    finally:
        session.progress.close()


def create(
    *,
    provider: str | None = None,
    wait: bool = True,
    config: str | os.PathLike[str] | None = None,
    **resources: Any,
) -> Instance:
    """Create one instance and keep it (until ``runctl.terminate(instance.id)``). ``resources``: ``gpu``,
    ``gpu_count``, ``instance_type``, ``spot``, ``max_price``, ``max_runtime`` (seconds), ``image``,
    ``disk_gb``, ``region``, ``wait_timeout``. With ``wait`` (the default) it returns once the instance is ready."""
    from runctl_core.requests import instance_request
    from runctl_core.single_steps import create_kept

    session = _session(provider, config)
    request = instance_request(session, _instance_fields(resources), interactive=False)
    return create_kept(session, session.provider(session.provider_name()), request, wait=wait)


def _instance_fields(resources: dict[str, Any]) -> dict[str, Any]:
    """``create``'s keyword arguments checked as the CLI checks its flags: unknown names, nan/inf prices and
    unreadable durations raise ``UsageError`` before anything is created."""
    from runctl_core.errors import UsageError
    from runctl_core.jobfile import RESOURCE_KEYS

    durations = ("max_runtime", "wait_timeout")
    known = [k for k in RESOURCE_KEYS if k != "nodes"] + [*durations, "on_demand_fallback"]
    for key in resources:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            raise UsageError(
                f"unknown create option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                "the options: " + ", ".join(known),
            )
    Job().merged({k: v for k, v in resources.items() if k in RESOURCE_KEYS})  # validates like a job file
    return {k: _seconds(k, v) if k in durations else v for k, v in resources.items()}


def train(
    instance: str | Instance,
    script: str,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float | str | None = None,
    project: str | os.PathLike[str] | None = None,
    sync: bool = True,
    wait: bool = False,
    setup: Sequence[str] = (),
    python: str | None = None,
    nodes: int = 1,
    launcher: str = "python",
    on_log: LogCallback | None = None,
    config: str | os.PathLike[str] | None = None,
) -> JobInfo:
    """Start ``script`` on an existing instance (syncing the project first). Returns the job at once, or with
    ``wait=True`` once it has ended and its checkpoints are collected (the instance stays). ``setup`` (shell
    lines) and ``python`` (a version) prepare the job's environment, as ``--setup``/``--python`` do; ``nodes``
    and ``launcher`` as ``--nodes``/``--launcher``."""
    from runctl_core.errors import JobFailed
    from runctl_core.single_steps import follow_to_end, job_info, start_training
    from runctl_core.workflow import environment_report, raise_if_setup_failed

    session = _session(None, config)
    instance_id = instance.id if isinstance(instance, Instance) else instance
    provider, inst, status = start_training(
        session,
        instance_id,
        script,
        args=_strings("args", args),
        env=dict(env or {}),
        timeout=_seconds("timeout", timeout),
        project=Path(project) if project else None,
        sync=sync,
        nodes=nodes,
        launcher=launcher,
        setup=_strings("setup", setup, split=False),
        python=python,
    )
    if wait:
        status = follow_to_end(session, provider, inst, status, sink=on_log)
        raise_if_setup_failed(status.job_id, environment_report(status), "", None)  # SetupFailed: exit 3's error
        if status.state.value != "succeeded":
            info = job_info(session, status.job_id)
            raise JobFailed(
                f"job {status.job_id} {status.state.value}"
                + (f" (exit code {status.exit_code})" if status.exit_code is not None else ""),
                f"see the whole log: runctl logs {status.job_id}",
                details={"result": info.model_dump(mode="json")},
            )
    return job_info(session, status.job_id)


def status(ident: str | None = None, *, all: bool = False, config: str | os.PathLike[str] | None = None) -> Any:
    """A job (``JobInfo``, asked of its provider now), an instance (``Instance``), or with no id the summary of
    everything runctl is running (a dict: ``summary``, ``instances``, ``jobs``)."""
    from runctl_core.jobs import instance_status, load_job, refresh_active, refresh_job, summary

    session = _session(None, config)
    if ident is None:
        refresh_active(session)
        return summary(session, all)
    if session.store.job(ident) is not None:
        return JobInfo(**refresh_job(session, load_job(session, ident)))
    doc = instance_status(session, ident)
    doc.pop("cost", None)
    return Instance.model_validate(doc)


def logs(job_id: str, *, follow: bool = False, config: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """The job's log as chunks of text; with ``follow=True`` the iterator ends when the job does."""
    from runctl_core.jobs import load_job, refresh_job
    from runctl_core.single_steps import iter_log

    session = _session(None, config)
    yield from iter_log(session, job_id, follow=follow)
    if follow:
        refresh_job(session, load_job(session, job_id))  # an ended detached run is collected and cleaned up


def terminate(ident: str, *, config: str | os.PathLike[str] | None = None) -> Any:
    """Terminate an instance (the final ``Instance`` comes back), or stop a job and terminate its instance unless
    it was created to be kept (a dict: ``job_id``, ``state``, ``instance``)."""
    from runctl_core.jobs import stop_job, terminate_by_id

    session = _session(None, config)
    if session.store.job(ident) is not None:
        return stop_job(session, ident)
    return terminate_by_id(session, ident)


def price(
    gpu: str | None = None,
    *,
    instance_type: str | None = None,
    gpu_count: int | None = None,
    spot: bool | None = None,
    region: str | None = None,
    provider: str | None = None,
    config: str | os.PathLike[str] | None = None,
) -> PriceList:
    """Offers from every installed provider (or only ``provider``), cheapest first; ``skipped`` says which
    providers could not answer and why."""
    from runctl_core.spending import price_list

    session = _session(provider, config)
    query = PriceQuery(gpu=gpu, instance_type=instance_type, gpu_count=gpu_count, spot=spot, region=region)
    return price_list(session, query, provider)


def checkpoints(job_id: str, *, config: str | os.PathLike[str] | None = None) -> list[CheckpointEntry]:
    """Every checkpoint file of a job: those runctl collected (``where == "local"``) and those still on the
    instance or in provider storage."""
    from runctl_core.jobs import list_checkpoints

    found, _local = list_checkpoints(_session(None, config), job_id)
    return [CheckpointEntry(**c) for c in found]


def pull_checkpoints(
    job_id: str, dest: str | os.PathLike[str] | None = None, *, config: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Fetch a job's checkpoints from wherever they are into ``dest`` (default: where runctl keeps them)."""
    from runctl_core.jobs import pull_checkpoints as pull

    return pull(_session(None, config), job_id, Path(dest) if dest else None)

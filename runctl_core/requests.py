"""From what the user wrote (flags, a job file, Python keyword arguments) to the requests the workflow runs:
explicit values over the job file over the configuration's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runctl_core.errors import ConfigError, UsageError
from runctl_core.jobfile import Job
from runctl_core.models import JobSpec
from runctl_core.run_models import InstanceRequest, RunRequest
from runctl_core.session import Session


def instance_request(session: Session, fields: dict[str, Any], *, interactive: bool) -> InstanceRequest:
    """An instance request from flat fields (gpu, spot, ... as flags name them) over the config's ``[run]``."""
    run = session.loaded.config.run
    if (fields.get("gpu_count") or 1) != 1 and not fields.get("gpu"):
        raise UsageError("--gpu-count needs --gpu (or pick a multi-GPU --instance-type)", "add --gpu NAME")
    fallback = fields.get("on_demand_fallback") or run.on_demand_fallback
    if fallback == "ask" and not interactive:
        fallback = "never"  # scripts are never asked: they get the safe answer
    return InstanceRequest(
        instance_type=fields.get("instance_type"),
        gpu=fields.get("gpu"),
        gpu_count=fields.get("gpu_count") or 1,
        spot=run.spot if fields.get("spot") is None else fields["spot"],
        max_price=fields.get("max_price"),
        on_demand_fallback=fallback,
        max_runtime=fields.get("max_runtime") or run.max_runtime,
        image=fields.get("image"),
        disk_gb=fields.get("disk_gb"),
        region=fields.get("region"),
        wait_timeout=fields.get("wait_timeout") or run.wait_timeout,
    )


def run_request(
    session: Session,
    job: Job,
    *,
    keep: bool = False,
    detach: bool = False,
    resume_from: str | None = None,
    on_demand_fallback: str | None = None,
    wait_timeout: float | None = None,
    launcher: str = "python",
    interactive: bool = False,
    resolve_env: bool = True,
) -> RunRequest:
    """The run a job describes, with the configuration's defaults where the job is silent."""
    config = session.loaded.config
    mistake = ConfigError if job.source else UsageError  # in a job file: exit 3, as its other mistakes (README)
    if not job.script and not job.command:
        raise mistake(
            "no script to run" + (f" in {job.source}" if job.source else ""),
            "give one: runctl run SCRIPT, or write `script:` in runctl.yaml (runctl init writes a starter)",
        )
    if job.script and job.command:
        raise mistake(
            "a job has either `script` or `command`, not both" + (f" ({job.source})" if job.source else ""),
            "keep one of them",
        )
    _refuse_unsupported(job)
    resources = job.resources.model_dump()
    nodes = resources.pop("nodes")
    instance = instance_request(
        session,
        {
            **resources,
            "max_runtime": job.max_runtime,
            "on_demand_fallback": on_demand_fallback,
            "wait_timeout": wait_timeout,
        },
        interactive=interactive,
    )
    outputs = job.outputs_dir() or (
        Path(config.run.outputs_dir).expanduser().resolve() if config.run.outputs_dir else None
    )
    if not resolve_env:  # a dry run needs no values, but says what the real run would refuse
        for missing in job.unset_env():
            session.progress.warn(f"{missing} (the real run refuses it)")
    project_root = job.project_dir()
    script = Path(job.script or "")
    return RunRequest(
        script=str(project_root / script if job.source and not script.is_absolute() else script),
        args=job.args,
        project_root=project_root,
        instance=instance,
        timeout=job.timeout or config.run.timeout,
        keep=keep or config.run.keep,
        detach=detach,
        recover=config.run.recover if job.recover is None else job.recover,
        max_restarts=config.run.max_restarts if job.max_restarts is None else job.max_restarts,
        outputs_dir=outputs,
        resume_from=resume_from,
        env=_job_env(job) if resolve_env else {},
        nodes=nodes,
        launcher=launcher,
        setup=job.setup,
        python=job.python,
    )


def _refuse_unsupported(job: Job) -> None:
    """Keys the job layer accepts but this runctl cannot run yet: refused by name, never silently dropped."""
    if job.command and "command" not in JobSpec.model_fields:
        raise UsageError(
            "`command:` (a non-Python entry) is not supported by this runctl version",
            "wrap the command in a Python script and use `script:`, or put it in `setup:`",
        )


def _job_env(job: Job) -> dict[str, str]:
    """The job's environment, checked (no RUNCTL_* names) and with its secrets' values masked in all output."""
    from runctl_core.preflight import check_job_env
    from runctl_core.redact import declare_env

    env = job.resolved_env()
    check_job_env(env)
    declare_env(env, job.secrets)
    return env

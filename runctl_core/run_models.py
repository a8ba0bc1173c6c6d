"""The records of a run: what the user asked for (``InstanceRequest``, ``RunRequest``) and what a run reports
(``Attempt``, ``JobInfo``, ``RunResult``), plus the job document ``run``, ``train`` and ``status`` print.

Kept apart from the steps so that building a request (flags, job file, Python API) imports only these models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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

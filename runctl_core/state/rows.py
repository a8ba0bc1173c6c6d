"""The typed rows the state store returns: an instance, a job and an intent as journalled."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runctl_core.models import Instance, JobSpec, JobState, JobStatus


class InstanceRow(BaseModel):
    model_config = ConfigDict(defer_build=True)

    instance: Instance
    job_id: str | None = None
    intent_id: str | None = None
    created_at: datetime
    ended_at: datetime | None = None
    keep: bool = False
    billing: str = "instance"

    def billed_seconds(self, now: datetime | None = None) -> float:
        end = self.ended_at or (now or datetime.now(timezone.utc))
        return max(0.0, (end - self.created_at).total_seconds())

    def cost(self, now: datetime | None = None) -> float | None:
        """What the instance itself cost: rate x lifetime; 0 for providers that bill jobs, not instances."""
        if self.billing == "job":
            return 0.0
        rate = self.instance.hourly_price
        if rate is None:
            return None
        return rate * self.billed_seconds(now) / 3600.0


class JobRow(BaseModel):
    """A job as journalled. ``spec.env`` holds the variables' names only: values are never stored."""

    model_config = ConfigDict(defer_build=True)

    id: str
    provider: str
    instance_id: str | None
    state: JobState
    exit_code: int | None = None
    spec: JobSpec
    status: JobStatus | None = None
    parent_id: str | None = None
    attempt: int = 1
    keep: bool = False
    outputs_dir: str | None = None
    cost: float | None = None
    created_at: datetime
    ended_at: datetime | None = None
    message: str = ""


class IntentRow(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    provider: str
    kind: str
    job_id: str | None
    status: str
    resource_id: str | None
    pid: int | None
    pid_start: str | None = None  # the process's start time: a pid reused by another process does not match
    spec: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    error: str | None = None

"""Cost accounting in one place: what a job and an instance cost, from rates and billed time."""

from __future__ import annotations

from datetime import datetime, timezone

from runctl_core.models import JobStatus
from runctl_core.state import InstanceRow


def job_cost(instance: InstanceRow | None, status: JobStatus | None, now: datetime | None = None) -> float | None:
    """USD for one job attempt: the provider's own figure when it reports one; for job-billed providers the rate
    times the job's run time; otherwise what the instance created for it cost over its lifetime."""
    if status is not None and status.cost is not None:
        return status.cost
    if instance is None:
        return None
    if instance.billing == "job":
        rate = instance.instance.hourly_price
        if rate is None or status is None or status.started_at is None:
            return None
        end = status.ended_at or now or datetime.now(timezone.utc)
        return rate * max(0.0, (end - status.started_at).total_seconds()) / 3600.0
    return instance.cost(now)

"""runctl from Python: what the CLI does, as functions returning pydantic models.

    import runctl
    result = runctl.run("train.py", args=["--epochs", "3"])        # local unless provider=...
    result.job.state, result.checkpoints, result.cost
    for chunk in runctl.logs(result.job.job_id): print(chunk, end="")

Nothing is printed (warnings go to the ``runctl`` logger); failures raise runctl's error types
(``runctl.RunctlError`` and its subclasses, e.g. ``runctl.JobFailed`` whose ``result`` holds the run).
Everything runctl creates is terminated on the way out, as with the CLI. See docs/python-api.md.
"""

from __future__ import annotations

from runctl.api import checkpoints, create, logs, price, pull_checkpoints, run, status, terminate, train
from runctl_core.errors import (
    CapabilityError,
    CapacityError,
    ConfigError,
    CredentialsError,
    Interrupted,
    JobFailed,
    JobTimedOut,
    ProviderError,
    RunctlError,
    UsageError,
    WaitTimeout,
)
from runctl_core.jobfile import Job, Resources
from runctl_core.models import Instance, Offer
from runctl_core.plans import Plan
from runctl_core.run_models import JobInfo, RunResult
from runctl_core.spending import PriceList

__all__ = [
    "CapabilityError",
    "CapacityError",
    "ConfigError",
    "CredentialsError",
    "Instance",
    "Interrupted",
    "Job",
    "JobFailed",
    "JobInfo",
    "JobTimedOut",
    "Offer",
    "Plan",
    "PriceList",
    "ProviderError",
    "Resources",
    "RunResult",
    "RunctlError",
    "UsageError",
    "WaitTimeout",
    "checkpoints",
    "create",
    "logs",
    "price",
    "pull_checkpoints",
    "run",
    "status",
    "terminate",
    "train",
]

"""The Slurm provider's own records on this machine (under its state directory) and small shared helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runctl_core.errors import UsageError
from runctl_core.models import Instance, ProviderContext
from runctl_core.remote.records import write_json_atomic
from runctl_slurm.cluster import Cluster, Paths
from runctl_slurm.settings import SlurmSettings
from runctl_slurm.transport import transport_for


def local_slurm_configured() -> bool:
    """Slurm's client commands and a configuration on this machine (slurm.conf(5): SLURM_CONF, else the default
    path; configless clusters are found through DNS SRV records, which runctl does not probe)."""
    import os
    import shutil

    if shutil.which("sbatch") is None:
        return False
    conf = os.environ.get("SLURM_CONF")
    return bool(conf and Path(conf).is_file()) or Path("/etc/slurm/slurm.conf").is_file()


def settings_of(ctx: ProviderContext) -> SlurmSettings:
    return SlurmSettings.model_validate(ctx.settings)


def cluster_of(ctx: ProviderContext) -> Cluster:
    settings = settings_of(ctx)
    return Cluster(transport_for(settings.host), settings.host, settings.command_timeout)


def paths_of(instance: Instance) -> Paths:
    root = instance.details.get("root")
    if not isinstance(root, str) or not root.startswith("/"):
        raise UsageError(f"{instance.id} is not a Slurm instance of runctl", "list them with: runctl resources list")
    return Paths(root)


def record_path(ctx: ProviderContext, kind: str, name: str) -> Path:
    return ctx.state_dir / kind / f"{name}.json"


def save_instance(ctx: ProviderContext, instance: Instance) -> None:
    write_json_atomic(record_path(ctx, "instances", instance.id), instance.model_dump(mode="json"))


def metric(ctx: ProviderContext, **fields: Any) -> None:
    """Append one line to ``metrics.jsonl`` (round trips to the login node per step; read by benchmarks/)."""
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    with (ctx.state_dir / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(fields) + "\n")

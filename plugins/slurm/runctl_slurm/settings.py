"""The ``[providers.slurm]`` table of ``.runctl.toml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SlurmSettings(BaseModel):
    """Where the cluster is and how jobs are submitted to it. Every key has a default."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        default=None,
        description="the login node over SSH: an ~/.ssh/config alias or user@host[:port] (keys and agent are "
        "used); absent: run the Slurm commands on this machine (runctl on the login node)",
    )
    workdir: str = Field(
        default="~/runctl",
        description="a directory on the cluster's shared filesystem for projects, environments and job outputs",
    )
    partition: str | None = Field(default=None, description="sbatch --partition (default: the cluster's default)")
    account: str | None = Field(default=None, description="sbatch --account")
    qos: str | None = Field(default=None, description="sbatch --qos")
    gres_map: dict[str, str] = Field(
        default_factory=dict,
        description='GPU name -> GRES type ("A100" = "a100" gives --gres=gpu:a100:N) or "partition:NAME" '
        "(that partition, --gres=gpu:N)",
    )
    price_per_gpu_hour: float = Field(default=0.0, ge=0, description="what a GPU hour costs you (0: your cluster)")
    python: str = Field(default="python3", description="the Python on the cluster's nodes that runs runctl's runner")
    use_uv: bool = Field(default=True, description="run scripts with `uv run` when uv is on the nodes' PATH")
    grace_period: float = Field(default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL for a rank")
    command_timeout: float = Field(default=120.0, gt=0, description="seconds one command on the login node may take")

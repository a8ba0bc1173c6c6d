"""The ``[providers.runpod]`` settings of ``.runctl.toml``, and the plugin's constants.

Every key has a default; pydantic validates the table and the core names the file and key of a bad value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROVIDER = "runpod"
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
DEFAULT_API_BASE = "https://api.runpod.io"
API_BASE_ENV = "RUNPOD_API_BASE_URL"  # the official SDK honours the same variable
API_KEY_ENV = "RUNPOD_API_KEY"
# RunPod's images write the container's RUNPOD_* variables (pod id, pod-scoped API key) to this file and source
# it from ~/.bashrc only, so a non-interactive SSH command does not see them (runpod/containers start.sh,
# export_env_vars); /proc/1/environ is the container's own environment, readable by root.
CONTAINER_ENV_FILES = ["/etc/rp_environment", "/proc/1/environ"]

CloudType = Literal["SECURE", "COMMUNITY", "ALL"]
ApiKind = Literal["rest", "graphql"]

GRAPHQL_DEPRECATION = (
    "RunPod's GraphQL API is deprecated and will be retired in early 2027; runctl uses it only because "
    '[providers.runpod] api = "graphql" (needed for spot pods). Remove that line to use REST v2.'
)


class RunpodSettings(BaseModel):
    """The ``[providers.runpod]`` table of ``.runctl.toml``. Every key has a default."""

    model_config = ConfigDict(extra="forbid")

    api: ApiKind = Field(
        default="rest",
        description='which RunPod API: "rest" (REST v2, the default) or "graphql" (deprecated; the only one with spot)',
    )
    api_url: str | None = Field(
        default=None, description=f"API base URL; default ${API_BASE_ENV} or {DEFAULT_API_BASE}"
    )
    cloud_type: CloudType = Field(default="SECURE", description="SECURE, COMMUNITY or ALL")
    community_fallback: bool = Field(
        default=False,
        description="with cloud_type SECURE: when every secure candidate is refused, try COMMUNITY cloud too",
    )
    image: str = Field(default=DEFAULT_IMAGE, description="container image of the pod (a runpod/pytorch tag)")
    container_disk_gb: int = Field(default=20, gt=0, description="container disk (OS, packages), GB")
    volume_gb: int = Field(
        default=20, ge=0, description="pod volume at volume_mount_path, GB (--disk-gb overrides; REST v2: >= 10)"
    )
    volume_mount_path: str = Field(default="/workspace")
    remote_dir: str = Field(
        default="/workspace/runctl",
        description="runctl's directory on the pod (project, runner, jobs); relative = below the SSH login's home",
    )
    ports: str = Field(default="22/tcp", description="ports to expose; 22/tcp is always added")
    ssh_user: str = Field(default="root")
    ssh_init: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="start sshd through the container's start command: auto = only for images not from runpod/",
    )
    ssh_connect_timeout: float = Field(default=15.0, gt=0)
    container_env_files: list[str] = Field(
        default_factory=lambda: list(CONTAINER_ENV_FILES),
        description="where a command on the pod finds RUNPOD_POD_ID / RUNPOD_API_KEY (SSH sessions lack them)",
    )
    detached_grace: float = Field(
        default=600.0,
        ge=0,
        description="a detached job's pod ends itself this many seconds after the job (time for runctl to collect)",
    )
    min_vcpu_count: int | None = Field(default=None, gt=0)
    min_memory_gb: int | None = Field(default=None, gt=0)
    allowed_cuda_versions: list[str] | None = None
    data_center_id: str | None = Field(default=None, description="pin a data centre (also --region)")
    spot_bid: float | None = Field(default=None, gt=0, description="spot bid per GPU in $/h (default: the minimum)")
    use_uv: bool = Field(default=True, description="run scripts with `uv run` when uv is on the pod")
    python: str = Field(default="python3", description="the pod's Python (runs the job runner, and jobs without uv)")
    grace_period: float = Field(default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL for a job")
    name_prefix: str = Field(default="runctl-", min_length=1, description="pods runctl creates are named PREFIX<job>")
    request_timeout: float = Field(default=30.0, gt=0, description="seconds per API request")
    retries: int = Field(default=4, ge=1, le=10, description="tries per idempotent API request")
    retry_base_delay: float = Field(default=0.5, ge=0)
    poll_interval: float = Field(default=5.0, gt=0, description="seconds between status polls (the core backs off)")
    ready_timeout: float = Field(default=900.0, gt=0, description="seconds to wait for a pod to answer over SSH")

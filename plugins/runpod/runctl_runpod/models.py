"""RunPod-specific records: the ``[providers.runpod]`` settings and the API's objects as runctl reads them.

The API records mirror the GraphQL field names (camelCase aliases) so the client can validate responses
directly; nothing outside :mod:`runctl_runpod.client` builds them from raw JSON.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
DEFAULT_API_BASE = "https://api.runpod.io"
API_BASE_ENV = "RUNPOD_API_BASE_URL"  # the official SDK honours the same variable
API_KEY_ENV = "RUNPOD_API_KEY"

CloudType = Literal["SECURE", "COMMUNITY", "ALL"]


class RunpodSettings(BaseModel):
    """The ``[providers.runpod]`` table of ``.runctl.toml``. Every key has a default."""

    model_config = ConfigDict(extra="forbid")

    api_url: str | None = Field(
        default=None,
        description=f"API base URL; default ${API_BASE_ENV} or {DEFAULT_API_BASE} (the GraphQL endpoint is /graphql)",
    )
    cloud_type: CloudType = Field(default="SECURE", description="SECURE, COMMUNITY or ALL")
    image: str = Field(default=DEFAULT_IMAGE, description="container image of the pod (a runpod/pytorch tag)")
    container_disk_gb: int = Field(default=20, gt=0, description="container disk (OS, packages), GB")
    volume_gb: int = Field(default=20, ge=0, description="pod volume at volume_mount_path, GB (--disk-gb overrides)")
    volume_mount_path: str = Field(default="/workspace")
    remote_dir: str = Field(
        default="/workspace/runctl",
        description="runctl's directory on the pod (project, runner, jobs); relative = below the SSH login's home",
    )
    ports: str = Field(default="22/tcp", description="ports to expose; 22/tcp is always added")
    ssh_user: str = Field(default="root")
    ssh_init: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="start sshd through dockerArgs: auto = only for images not from runpod/ (those do it themselves)",
    )
    ssh_connect_timeout: float = Field(default=15.0, gt=0)
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


# ----------------------------------------------------------------------------------------- API records


class ApiRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LowestPrice(ApiRecord):
    minimum_bid_price: float | None = Field(default=None, alias="minimumBidPrice")  # spot, per GPU
    uninterruptable_price: float | None = Field(default=None, alias="uninterruptablePrice")  # on-demand, per GPU
    stock_status: str | None = Field(default=None, alias="stockStatus")  # High, Medium, Low, None


class GpuType(ApiRecord):
    id: str
    display_name: str = Field(default="", alias="displayName")
    memory_gb: int | None = Field(default=None, alias="memoryInGb")
    max_gpu_count: int | None = Field(default=None, alias="maxGpuCount")
    secure_price: float | None = Field(default=None, alias="securePrice")
    community_price: float | None = Field(default=None, alias="communityPrice")
    secure_spot_price: float | None = Field(default=None, alias="secureSpotPrice")
    community_spot_price: float | None = Field(default=None, alias="communitySpotPrice")
    secure: LowestPrice | None = None  # lowestPrice(input: {secureCloud: true}), aliased
    community: LowestPrice | None = None  # lowestPrice(input: {secureCloud: false}), aliased


class PortMapping(ApiRecord):
    ip: str | None = None
    is_ip_public: bool | None = Field(default=None, alias="isIpPublic")
    private_port: int | None = Field(default=None, alias="privatePort")
    public_port: int | None = Field(default=None, alias="publicPort")
    type: str | None = None


class PodRuntime(ApiRecord):
    uptime_seconds: int | None = Field(default=None, alias="uptimeInSeconds")
    ports: list[PortMapping] | None = None


class PodMachine(ApiRecord):
    gpu_display_name: str | None = Field(default=None, alias="gpuDisplayName")


class Pod(ApiRecord):
    id: str
    name: str | None = None
    desired_status: str | None = Field(default=None, alias="desiredStatus")
    cost_per_hr: float | None = Field(default=None, alias="costPerHr")
    gpu_count: int | None = Field(default=None, alias="gpuCount")
    image_name: str | None = Field(default=None, alias="imageName")
    uptime_seconds: int | None = Field(default=None, alias="uptimeSeconds")
    env: list[str] | None = None
    machine: PodMachine | None = None
    runtime: PodRuntime | None = None

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def ssh_endpoint(self) -> tuple[str, int] | None:
        """The public ip/port that the pod's port 22 is mapped to, once the container runs."""
        if self.runtime is None:
            return None
        for port in self.runtime.ports or []:
            if port.private_port == 22 and port.is_ip_public and port.ip and port.public_port:
                return port.ip, port.public_port
        return None


class DeployRequest(BaseModel):
    """What runctl asks RunPod to create; the client turns it into the API's input (GraphQL or REST)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    image: str
    gpu_type_id: str
    gpu_count: int = 1
    cloud_type: CloudType = "SECURE"
    container_disk_gb: int = 20
    volume_gb: int = 20
    volume_mount_path: str = "/workspace"
    ports: str = "22/tcp"
    env: dict[str, str] = Field(default_factory=dict)
    docker_args: str = ""
    start_ssh: bool = True
    support_public_ip: bool = True
    min_vcpu_count: int | None = None
    min_memory_gb: int | None = None
    data_center_id: str | None = None
    allowed_cuda_versions: list[str] | None = None

"""The records the plugin works with, the same whichever RunPod API answered.

Each client (:mod:`runctl_runpod.rest`, :mod:`runctl_runpod.graphql`) turns the API's JSON into these; nothing
outside the clients reads raw API JSON. GPU prices are per GPU per hour, for one cloud tier.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from runctl_runpod.settings import CloudType


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LowestPrice(Record):
    """Price and stock of one GPU type in one cloud tier, for the filters the caller gave."""

    minimum_bid_price: float | None = Field(default=None, alias="minimumBidPrice")  # spot, per GPU
    uninterruptable_price: float | None = Field(default=None, alias="uninterruptablePrice")  # on-demand, per GPU
    stock_status: str | None = Field(default=None, alias="stockStatus")  # High, Medium, Low, None (GraphQL)


class GpuType(Record):
    id: str
    display_name: str = Field(default="", alias="displayName")
    memory_gb: int | None = Field(default=None, alias="memoryInGb")
    max_gpu_count: int | None = Field(default=None, alias="maxGpuCount")
    secure_price: float | None = Field(default=None, alias="securePrice")
    community_price: float | None = Field(default=None, alias="communityPrice")
    secure_spot_price: float | None = Field(default=None, alias="secureSpotPrice")
    community_spot_price: float | None = Field(default=None, alias="communitySpotPrice")
    secure: LowestPrice | None = None  # GraphQL: lowestPrice(input: {secureCloud: true}), aliased
    community: LowestPrice | None = None  # GraphQL: lowestPrice(input: {secureCloud: false}), aliased


class StockFilter(BaseModel):
    """The constraints a pod is created with; prices and stock are asked for with the same ones."""

    model_config = ConfigDict(extra="forbid")

    gpu_count: int = 1
    data_center_ids: list[str] = Field(default_factory=list)
    min_vcpu_count: int | None = None
    min_memory_gb: int | None = None
    cuda_versions: list[str] | None = None


class Pod(BaseModel):
    """A pod as runctl needs it. ``status`` is REST v2's vocabulary (PROVISIONING, STARTING, RUNNING, EXITED,
    ERROR, TERMINATED); the GraphQL client maps its ``desiredStatus`` + ``runtime`` onto it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = ""
    status: str = "PROVISIONING"
    cost_per_hr: float | None = None
    gpu_count: int = 0
    gpu_name: str | None = None
    image: str | None = None
    cloud: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ssh_host: str | None = None  # the public address the pod's port 22 is mapped to, once the container runs
    ssh_port: int | None = None

    def ssh_endpoint(self) -> tuple[str, int] | None:
        if self.status == "RUNNING" and self.ssh_host and self.ssh_port:
            return self.ssh_host, self.ssh_port
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
    ports: list[str] = Field(default_factory=lambda: ["22/tcp"])
    env: dict[str, str] = Field(default_factory=dict)
    docker_args: str = ""
    start_ssh: bool = True
    support_public_ip: bool = True
    min_vcpu_count: int | None = None
    min_memory_gb: int | None = None
    data_center_ids: list[str] = Field(default_factory=list)
    allowed_cuda_versions: list[str] | None = None

    def stock_filter(self) -> StockFilter:
        return StockFilter(
            gpu_count=self.gpu_count,
            data_center_ids=self.data_center_ids,
            min_vcpu_count=self.min_vcpu_count,
            min_memory_gb=self.min_memory_gb,
            cuda_versions=self.allowed_cuda_versions,
        )

"""Settings of the ``[providers.lyceum]`` table, the records Lyceum's API returns, and what runctl keeps locally."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

DEFAULT_BASE_URL = "https://api.lyceum.technology/api/v2/external"
BASE_URL_ENV = "LYCEUM_API_BASE_URL"
API_KEY_ENV = "LYCEUM_API_KEY"
ORG_ENV = "LYCEUM_ORG"


class LyceumSettings(BaseModel):
    """The ``[providers.lyceum]`` table of ``.runctl.toml``. The API key is never a setting: it comes from
    ``LYCEUM_API_KEY`` or the Lyceum CLI's own config file (``~/.lyceum/config.json``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        default=None,
        description=f"API base URL (default: ${BASE_URL_ENV}, then {DEFAULT_BASE_URL})",
    )
    org: str | None = Field(
        default=None, description=f"org slug sent as X-Org-Slug (default: ${ORG_ENV}, then the Lyceum CLI's active org)"
    )
    cli_config: str | None = Field(
        default=None, description="the Lyceum CLI's config file (default ~/.lyceum/config.json)"
    )
    default_instance_type: str = Field(
        default="gpu.l40s",
        description="hardware profile when neither --instance-type nor --gpu is given (the Lyceum CLI's default)",
    )
    default_timeout: int = Field(default=600, ge=1, description="execution timeout in seconds when the job has none")
    http_timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP request")
    http_retries: int = Field(default=2, ge=0, le=10, description="extra tries of idempotent GETs on 429/5xx")
    retry_base_delay: float = Field(default=0.5, ge=0, description="first retry delay in seconds (doubles)")
    max_request_bytes: int = Field(
        default=10 * 2**20, ge=1024, description="largest execution request runctl sends (project files travel in it)"
    )
    storage_mount: str = Field(default="/mnt/s3", description="where Lyceum mounts your storage bucket in executions")
    storage_prefix: str = Field(default="runctl", description="key prefix of runctl's files in the storage bucket")
    checkpoint_sync_interval: float = Field(
        default=30.0, gt=0, description="seconds between copies of the checkpoint dir to storage"
    )
    grace_period: float = Field(default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL of the script")
    requirements: str = Field(
        default="auto",
        description="'auto' (PEP 723 header + requirements.txt), 'none', or a project-relative requirements file",
    )
    poll_interval: float = Field(default=5.0, gt=0, description="seconds between status polls while waiting")
    stream_timeout: float = Field(
        default=60.0, gt=0, description="seconds to read an ended execution's output stream before falling back"
    )
    stream_reconnects: int = Field(default=5, ge=0, description="reconnects of a dropped output stream")

    def resolved_base_url(self) -> str:
        return (self.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


# --------------------------------------------------------------------------------------------- API records


class ApiRecord(BaseModel):
    """Lyceum's responses carry more fields than runctl reads; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore")


class MachineType(ApiRecord):
    hardware_profile: str
    price_per_hour: float | None = None


class ExecutionStarted(ApiRecord):
    execution_id: str
    status: str = "pending"
    streaming_url: str | None = None


class ExecutionStatus(ApiRecord):
    status: str
    errors: Any = None


class ExecutionRecord(ApiRecord):
    execution_id: str | None = None
    status: str | None = None
    return_code: int | None = None
    billed: float | None = None
    hardware_profile: str | None = None
    created_at: str | None = None
    job_start: str | None = None
    job_end: str | None = None
    system_errors: list[str] | None = None


class Workload(ApiRecord):
    execution_id: str
    status: str | None = None
    hardware_profile: str | None = None
    created_at: str | None = None
    run_name: str | None = None
    labels: list[str] | None = None
    metadata: dict[str, Any] | None = None

    def runctl_tags(self) -> dict[str, str]:
        """runctl's tags, from ``metadata`` or from ``key=value`` labels (whichever the API returned)."""
        tags: dict[str, str] = {}
        for label in self.labels or []:
            key, sep, value = label.partition("=")
            if sep and key.startswith("runctl:"):
                tags[key] = value
        for key, value in (self.metadata or {}).items():
            if key.startswith("runctl:") and isinstance(value, str):
                tags.setdefault(key, value)
        return tags


class LogEntry(ApiRecord):
    timestamp: str | None = None
    message: str = ""


class StorageCredentials(ApiRecord):
    """Temporary S3 credentials for the account's bucket (``POST /storage/credentials``)."""

    access_key: SecretStr
    secret_key: SecretStr
    session_token: SecretStr | None = None
    endpoint: str
    bucket_name: str
    region: str = "us-east-1"

    def endpoint_url(self) -> str:
        return self.endpoint if self.endpoint.startswith("http") else f"https://{self.endpoint}"


# --------------------------------------------------------------------------------------------- local records


class ExecutionRef(BaseModel):
    """One runctl job's execution, as kept in the reservation record (no secrets)."""

    model_config = ConfigDict(extra="forbid")

    execution_id: str
    job_id: str
    script: str
    submitted_at: str
    storage_path: str  # key prefix of the job's checkpoints in the bucket
    cancel_requested: bool = False
    final: dict[str, Any] | None = None  # the JobStatus once terminal (status never asks again)


class Reservation(BaseModel):
    """A runctl "instance" on Lyceum: a reserved hardware profile that executions run on. Costs nothing itself."""

    model_config = ConfigDict(extra="forbid")

    id: str
    hardware_profile: str
    hourly_price: float | None = None
    created_at: str
    state: str = "running"  # running | terminated
    tags: dict[str, str] = Field(default_factory=dict)
    max_runtime: float | None = None
    image: str | None = None
    executions: dict[str, ExecutionRef] = Field(default_factory=dict)  # job id -> execution

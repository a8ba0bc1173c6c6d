"""Settings of the ``[providers.lyceum]`` table, the records Lyceum's API returns, and what runctl keeps locally."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from runctl_lyceum.settings import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, ORG_ENV, LyceumSettings

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "DEFAULT_BASE_URL", "ORG_ENV", "LyceumSettings"]


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
    system_errors: list[Any] | None = None  # strings or objects ({"message": ...}); see format_errors


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
    timeout: int | None = None  # seconds Lyceum was told to run it
    image: str | None = None  # the image of an image execution; None for a Python execution


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

"""The ``[providers.lyceum]`` table of ``.runctl.toml`` and the limits of Lyceum's API that runctl plans around."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BASE_URL = "https://api.lyceum.technology/api/v2/external"
BASE_URL_ENV = "LYCEUM_API_BASE_URL"
API_KEY_ENV = "LYCEUM_API_KEY"
ORG_ENV = "LYCEUM_ORG"

# Lyceum's API reference gives an execution's ``timeout`` as 1..600 seconds for Python executions
# (``POST /execution/streaming/start``); its CLI sends a fixed ``"timeout": 60`` for them (lyceum-cli 1.2.2,
# lyceum/external/compute/execution/python.py, build_payload). Image executions take ``timeout`` from the
# user with no stated maximum (lyceum/external/compute/execution/docker.py: ``--timeout``, default 300; notebook.py
# passes e.g. 7200), so a longer job runs as an image execution; if the API refuses its timeout, the 422 stops the
# job before anything runs.
PYTHON_TIMEOUT_MAX = 600
# an image execution's bootstrap (with the project inline) travels in docker_run_cmd: one argv string
IMAGE_CODE_LIMIT = 100_000


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
    default_timeout: int = Field(
        default=PYTHON_TIMEOUT_MAX,
        ge=1,
        description="execution timeout in seconds when the job has no --timeout (Python executions: at most 600)",
    )
    long_job_image: str = Field(
        default="python:3.12-slim",
        description="Docker image (with python3) that runs a job whose --timeout exceeds the 600 s limit of "
        "Lyceum's Python executions; '' refuses such jobs before anything starts",
    )
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

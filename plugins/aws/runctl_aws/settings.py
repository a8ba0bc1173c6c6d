"""The ``[providers.aws]`` settings and where the region comes from (read without importing botocore, so that a
dry run or a price lookup starts fast and needs no AWS SDK)."""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

REMOTE_DIR_RE = re.compile(r"^(\$HOME|/)[A-Za-z0-9_./-]*$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

DEFAULT_CPU_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
DEFAULT_ARM_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
DEFAULT_GPU_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
DEFAULT_GPU_AMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"
# Graviton GPU machines (g5g, NVIDIA T4G): the arm64 variant of the Deep Learning Base AMI
DEFAULT_ARM_GPU_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/arm64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
DEFAULT_ARM_GPU_AMI_NAME = "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"


class AwsSettings(BaseModel):
    """The ``[providers.aws]`` table of ``.runctl.toml``. Credentials are never part of it: they come from the
    standard AWS chain (environment, ``~/.aws/credentials``, SSO, instance role)."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(default=None, description="AWS region (default: AWS_REGION / the profile's region)")
    profile: str | None = Field(default=None, description="named profile of ~/.aws/config to use")
    bucket: str | None = Field(default=None, description="S3 bucket for staging code and storing checkpoints")
    prefix: str = Field(default="runctl", description="key prefix in the bucket: s3://BUCKET/PREFIX/JOB_ID/")
    instance_profile: str = Field(
        default="runctl-ssm", description="IAM instance profile giving the SSM agent its role"
    )
    default_instance_type: str = Field(default="t3.medium", description="used when neither --instance-type nor --gpu")
    image: str | None = Field(default=None, description="AMI id for every instance (default: per instance family)")
    cpu_ami_parameter: str = Field(default=DEFAULT_CPU_AMI_PARAMETER, description="public SSM parameter of the CPU AMI")
    gpu_ami_parameter: str = Field(default=DEFAULT_GPU_AMI_PARAMETER, description="public SSM parameter of the GPU AMI")
    subnet_id: str | None = Field(default=None, description="subnet to launch into (default VPC's when unset)")
    security_group_ids: list[str] = Field(default_factory=list, description="security groups (no inbound needed)")
    volume_type: str = Field(default="gp3", description="root volume type when --disk-gb is given")
    remote_dir: str = Field(default="/opt/runctl", description="where runctl keeps code and jobs on the instance")
    use_uv: bool = Field(
        default=True,
        description="the environment step builds with uv (installed on the instance when missing); false: venv + pip",
    )
    grace_period: float = Field(default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL for a job")
    interrupt_check_every: float = Field(default=5.0, gt=0, description="seconds between spot-notice checks")
    stop_jobs_on_terminate: bool = Field(default=True, description="stop jobs (and upload checkpoints) first")
    poll_interval: float = Field(default=5.0, gt=0, description="seconds between the core's status polls")
    ready_timeout: float = Field(default=900.0, gt=0, description="seconds to wait for an instance to be ready")
    ssm_poll_interval: float = Field(default=0.5, gt=0, description="seconds between SSM command result polls")
    command_timeout: float = Field(default=600.0, gt=0, description="seconds to wait for one SSM command")
    retry_attempts: int = Field(default=6, ge=1, le=20, description="tries for a throttled/failed AWS call")
    retry_base_delay: float = Field(default=0.5, ge=0, description="first backoff delay in seconds")
    consistency_window: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="seconds after RunInstances during which EC2's InvalidInstanceID.NotFound means 'not visible "
        "yet' (EC2 is eventually consistent), not 'gone'",
    )
    upload_url_expiry: int = Field(default=604800, ge=900, le=604800, description="seconds the instance may upload")
    endpoint_url: str | None = Field(default=None, description="custom AWS endpoint (tests, LocalStack)")

    @field_validator("remote_dir")
    @classmethod
    def _check_remote_dir(cls, value: str) -> str:
        if not REMOTE_DIR_RE.match(value):
            raise ValueError("must be an absolute path (or start with $HOME) of letters, digits and _./-")
        return value.rstrip("/") or "/"

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        if value is not None and not BUCKET_RE.match(value):
            raise ValueError("not a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or not re.match(r"^[A-Za-z0-9_.=/-]+$", value):
            raise ValueError("must be a non-empty S3 key prefix of letters, digits and _.=/-")
        return value


def resolve_region(settings: AwsSettings) -> tuple[str | None, str]:
    """The region runctl uses and where it came from, without botocore.

    Order (the AWS CLI's, https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-envvars.html:
    AWS_REGION overrides AWS_DEFAULT_REGION and the profile's ``region``): the setting ``region``, then
    ``AWS_REGION``, then ``AWS_DEFAULT_REGION``, then ``region`` of the profile (the setting ``profile``, else
    AWS_PROFILE / AWS_DEFAULT_PROFILE, else ``default``) in the config file (AWS_CONFIG_FILE, else
    ~/.aws/config). botocore alone reads only the last two, so runctl passes the region to it explicitly."""
    if settings.region:
        return settings.region, "the setting providers.aws.region"
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    profile = settings.profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    path = Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser()
    section = profile if profile == "default" else f"profile {profile}"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
        value = parser.get(section, "region", fallback="").strip()
    except (configparser.Error, OSError):
        value = ""
    if value:
        return value, f"profile {profile} in {path}"
    return None, "nowhere (no setting, AWS_REGION, AWS_DEFAULT_REGION or profile region)"

"""Small records of the AWS provider (the settings live in :mod:`runctl_aws.settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runctl_aws.settings import (
    DEFAULT_ARM_AMI_PARAMETER,
    DEFAULT_CPU_AMI_PARAMETER,
    DEFAULT_GPU_AMI_NAME,
    DEFAULT_GPU_AMI_PARAMETER,
    AwsSettings,
)

__all__ = [
    "DEFAULT_ARM_AMI_PARAMETER",
    "DEFAULT_CPU_AMI_PARAMETER",
    "DEFAULT_GPU_AMI_NAME",
    "DEFAULT_GPU_AMI_PARAMETER",
    "AwsSettings",
    "CommandResult",
    "Ec2Instance",
]


@dataclass
class CommandResult:
    """What an SSM command did on the instance."""

    command_id: str
    status: str  # Success, Failed, TimedOut, Cancelled, ...
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == "Success" and self.exit_code == 0


@dataclass
class Ec2Instance:
    """The fields of an EC2 instance description that runctl uses."""

    id: str
    state: str
    instance_type: str
    region: str
    launch_time: Any = None
    lifecycle: str = ""
    spot_request_id: str = ""
    state_reason: str = ""
    image_id: str = ""
    availability_zone: str = ""
    tags: dict[str, str] = field(default_factory=dict)

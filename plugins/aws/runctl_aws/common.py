"""Plumbing shared by the AWS provider's modules: settings, the boto3 client cache, per-instance records on
the laptop (when runctl received each id: EC2's consistency window), EC2 -> Instance, S3 key prefixes."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl_aws import prices
from runctl_aws.settings import AwsSettings, resolve_region
from runctl_core.errors import (
    NotFoundError,
    PrerequisiteError,
    ProviderError,
)
from runctl_core.models import (
    Instance,
    InstanceState,
    ProviderContext,
)
from runctl_core.remote.records import job_status_from_record as job_status  # noqa: F401 (re-exported)
from runctl_core.timestamps import parse_time

if TYPE_CHECKING:  # boto3 is imported only when AWS is really called (not by the dry run, price table, --help)
    from runctl_aws.client import AwsClient
    from runctl_aws.models import Ec2Instance

EC2_STATES = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING,
    "shutting-down": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "terminated": InstanceState.TERMINATED,
}
SPOT_REFUSED = {
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "InsufficientCapacity",
    "UnfulfillableCapacity",
    "InsufficientHostCapacity",
}
# quota codes: a request over the account's limit, never "try later" (new accounts often have a spot quota of 0)
SPOT_QUOTA = {"MaxSpotInstanceCountExceeded"}
PROFILE_PROPAGATION = "Invalid IAM Instance Profile"
PROFILE_WAIT = 90.0  # seconds a just-created instance profile is given to reach EC2 (IAM is eventually consistent)
SPOT_RECLAIMED = {"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"}
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
S3_PUT_LIMIT = 5 * 1024**3
IAM_STEPS = (
    "aws iam create-role --role-name {name} --assume-role-policy-document "
    '\'{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"ec2.amazonaws.com"}},'
    '"Action":"sts:AssumeRole"}}]}}\' && '
    "aws iam attach-role-policy --role-name {name} "
    "--policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore && "
    "aws iam create-instance-profile --instance-profile-name {name} && "
    "aws iam add-role-to-instance-profile --instance-profile-name {name} --role-name {name}"
)


_CLIENTS: dict[tuple[str, str | None], AwsClient] = {}  # boto3 clients per settings and region


def settings_of(ctx: ProviderContext) -> AwsSettings:
    return AwsSettings.model_validate(ctx.settings)


def client_for(ctx: ProviderContext, region: str | None = None) -> AwsClient:
    from runctl_aws.client import AwsClient

    settings = settings_of(ctx)
    # one client per settings and *resolved* region: create (no region given) and the later steps (the
    # instance's region) share it, and with it what it learnt (the bucket's region: no second HeadBucket)
    region = region or resolve_region(settings)[0]
    key = (settings.model_dump_json(), region)
    if key not in _CLIENTS:
        _CLIENTS[key] = AwsClient(settings, region, region_cache=ctx.state_dir / "bucket-regions.json")
    return _CLIENTS[key]


def bucket_of(settings: AwsSettings) -> str:
    if not settings.bucket:
        raise PrerequisiteError(
            "no S3 bucket is configured for staging code and storing checkpoints",
            "create one and set it: aws s3 mb s3://YOUR-BUCKET && runctl config set providers.aws.bucket YOUR-BUCKET",
        )
    return settings.bucket


def staging_prefix(settings: AwsSettings, instance_id: str) -> str:
    return f"{settings.prefix}/_staging/{instance_id}/"


def job_prefix(settings: AwsSettings, job_id: str) -> str:
    return f"{settings.prefix}/{job_id}/"


def state_file(ctx: ProviderContext, instance_id: str) -> Path:
    return ctx.state_dir / "instances" / f"{instance_id}.json"


def read_state(ctx: ProviderContext, instance_id: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_file(ctx, instance_id).read_text())
        return data
    except (OSError, ValueError):
        return {}


def write_state(ctx: ProviderContext, instance_id: str, **fields: Any) -> None:
    path = state_file(ctx, instance_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = read_state(ctx, instance_id)
    data.update(fields)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def to_instance(ec2: Ec2Instance, region: str, base: Instance | None = None) -> Instance:
    state = EC2_STATES.get(ec2.state, InstanceState.UNKNOWN)
    info = prices.type_info(ec2.instance_type)
    spot = ec2.lifecycle == "spot"
    message = f"EC2 state {ec2.state}"
    if ec2.state_reason in SPOT_RECLAIMED:
        message = "the spot instance was reclaimed by AWS (spot interruption)"
    elif ec2.state_reason:
        message += f" ({ec2.state_reason})"
    hourly = (
        base.hourly_price
        if base is not None and base.hourly_price is not None
        else (None if spot else prices.on_demand(ec2.instance_type, region))
    )
    tags = dict(ec2.tags)
    created = parse_time(ec2.launch_time) or parse_time(tags.get("runctl:created"))
    return Instance(
        id=ec2.id,
        provider="aws",
        state=state,
        instance_type=ec2.instance_type,
        gpu=info.gpu if info else None,
        gpu_count=info.gpu_count if info else 0,
        spot=spot,
        hourly_price=hourly,
        region=region,
        created_at=created,
        tags=tags,
        details={
            "availability_zone": ec2.availability_zone,
            "image_id": ec2.image_id,
            "lifecycle": ec2.lifecycle or "on-demand",
            "spot_request_id": ec2.spot_request_id,
            "state_reason": ec2.state_reason,
            "ec2_state": ec2.state,
        },
        message=message,
    )


def young(ctx: ProviderContext, instance: Instance) -> bool:
    """Whether the instance was created so recently that EC2 may not show it yet.

    EC2 is eventually consistent: right after RunInstances, DescribeInstances and TerminateInstances may answer
    InvalidInstanceID.NotFound for an instance that exists and bills
    (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html). Within
    ``consistency_window`` seconds of its creation by this runctl NotFound therefore means "pending", never
    "gone"; an id runctl did not receive from RunInstances itself is not given that benefit."""
    created = read_state(ctx, instance.id).get("created")  # written when RunInstances answered this id
    return isinstance(created, (int, float)) and time.time() - float(created) < settings_of(ctx).consistency_window


def not_visible_yet(instance: Instance) -> Instance:
    return instance.model_copy(
        update={
            "state": InstanceState.PENDING,
            "message": "EC2 does not list the new instance yet (its API is eventually consistent)",
        }
    )


def region_of(instance: Instance, ctx: ProviderContext) -> str | None:
    return instance.region or resolve_region(settings_of(ctx))[0]


def describe(ctx: ProviderContext, instance: Instance) -> tuple[AwsClient, Ec2Instance | None]:
    client = client_for(ctx, region_of(instance, ctx))
    return client, client.describe_instance(instance.id)


def require_running(ctx: ProviderContext, instance: Instance) -> tuple[AwsClient, Ec2Instance]:
    client, ec2 = describe(ctx, instance)
    if ec2 is None or ec2.state in ("terminated", "shutting-down"):
        raise NotFoundError(
            f"instance {instance.id} is terminated",
            "create a new one: runctl --provider aws create (or runctl run)",
        )
    if ec2.state != "running":
        raise ProviderError(
            f"instance {instance.id} is {ec2.state}, not running",
            "wait until it is ready: runctl status " + instance.id,
        )
    return client, ec2

"""The request builders: prerequisite checks, images, tags and RunInstances parameters - used by both
``compute.create`` and ``plan.plan``, so that what the dry run shows is what create sends."""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from runctl_aws.common import IAM_STEPS, bucket_of, settings_of
from runctl_core.errors import (
    CredentialsError,
    NotFoundError,
    PrerequisiteError,
    QuotaError,
    RunctlError,
    TransientError,
)
from runctl_core.models import (
    InstanceSpec,
    ProviderContext,
)

if TYPE_CHECKING:  # the dry run builds its requests here without importing boto3
    from runctl_aws.client import AwsClient


def client_token(intent_id: str, suffix: str = "") -> str:
    token = intent_id + suffix
    if len(token) > 64 or not token.isascii():
        token = hashlib.sha256(token.encode()).hexdigest()[:60] + suffix[-4:]
    return token


def resolve_type(ctx: ProviderContext, spec: InstanceSpec) -> str:
    from runctl_aws.offers import resolve

    return resolve(settings_of(ctx), spec.instance_type, spec.gpu, spec.gpu_count).instance_type


def check_prerequisites(ctx: ProviderContext, client: AwsClient) -> None:
    """Credentials, region, bucket and instance profile: checked before anything is paid for."""
    from runctl_aws.credentials import find_credentials

    settings = settings_of(ctx)
    if not client.region:
        raise CredentialsError(
            "no AWS region is configured",
            "set one: runctl config set providers.aws.region us-east-1 (or export AWS_REGION)",
        )
    creds = find_credentials(settings.profile, allow_network=True)
    if not creds.found:
        raise CredentialsError(creds.message or "no AWS credentials were found", creds.hint)
    bucket = bucket_of(settings)
    error = client.bucket_error(bucket)
    if isinstance(error, NotFoundError):
        raise PrerequisiteError(
            f"the S3 bucket {bucket!r} does not exist",
            f"create it: aws s3 mb s3://{bucket} --region {client.region} "
            "(or set another: runctl config set providers.aws.bucket NAME)",
        )
    if isinstance(error, TransientError):
        raise error
    if error is not None:
        raise PrerequisiteError(
            f"the S3 bucket {bucket!r} is not usable with these credentials ({error.message})",
            "use a bucket of this account (runctl config set providers.aws.bucket NAME) or grant "
            "s3:GetObject/PutObject/ListBucket/DeleteObject on it",
        )
    name = settings.instance_profile
    try:
        roles = client.instance_profile_roles(name)
    except (TransientError, CredentialsError):
        raise
    except RunctlError as exc:
        ctx.warn(f"could not check the instance profile {name!r} ({exc.message}); continuing")
        return
    if roles is None:
        raise PrerequisiteError(
            f"the IAM instance profile {name!r} (needed by the SSM agent on the instance) does not exist",
            "create it once: "
            + IAM_STEPS.format(name=name)
            + " (or name an existing one: runctl config set providers.aws.instance_profile NAME)",
        )
    if not roles:
        raise PrerequisiteError(
            f"the IAM instance profile {name!r} has no role, so the SSM agent cannot register",
            f"aws iam add-role-to-instance-profile --instance-profile-name {name} --role-name ROLE "
            "(a role with the AmazonSSMManagedInstanceCore policy)",
        )
    try:
        policies = client.role_policies(roles[0])
    except RunctlError:
        return
    if not any(p.endswith("/AmazonSSMManagedInstanceCore") for p in policies):
        ctx.warn(
            f"role {roles[0]!r} of instance profile {name!r} lacks AmazonSSMManagedInstanceCore; "
            f"if SSM never comes online: aws iam attach-role-policy --role-name {roles[0]} "
            "--policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
        )


def image_for(ctx: ProviderContext, client: AwsClient, spec: InstanceSpec, instance_type: str) -> str:
    from runctl_aws.offers import default_image

    settings = settings_of(ctx)
    if spec.image or settings.image:
        return str(spec.image or settings.image)
    choice = default_image(settings, instance_type)
    image = client.get_parameter(choice.parameter)
    if image is None and choice.name_pattern:
        image = client.latest_image(choice.name_pattern, ["amazon"])
    if image is None:
        raise PrerequisiteError(
            f"no {choice.what} AMI was found in {client.region} (SSM parameter {choice.parameter})",
            "name one: --image ami-... or runctl config set providers.aws.image ami-...",
        )
    return str(image)


def tags_for(spec: InstanceSpec, created: str) -> dict[str, str]:
    tags = {
        "runctl:owner": spec.owner,
        "runctl:intent": spec.intent_id,
        "runctl:created": created,
        "Name": f"runctl-{spec.job_id or spec.intent_id}",
    }
    if spec.job_id:
        tags["runctl:job"] = spec.job_id
    tags.update(spec.tags)
    return tags


def run_params(
    ctx: ProviderContext,
    spec: InstanceSpec,
    instance_type: str,
    image: str,
    tags: dict[str, str],
    spot: bool,
    root_device: str | None,
) -> dict[str, Any]:
    settings = settings_of(ctx)
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    kinds = ["instance", "volume"] + (["spot-instances-request"] if spot else [])
    params: dict[str, Any] = {
        "ImageId": image,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(spec.intent_id, "" if spot else "-od"),
        "IamInstanceProfile": {"Name": settings.instance_profile},
        "InstanceInitiatedShutdownBehavior": "terminate",
        "UserData": user_data(spec.max_runtime, spec.job_id),
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [{"ResourceType": kind, "Tags": tag_list} for kind in kinds],
    }
    if spot:
        options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
        if spec.max_price:
            options["MaxPrice"] = f"{spec.max_price:.4f}"
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    if spec.disk_gb and root_device:
        params["BlockDeviceMappings"] = [
            {
                "DeviceName": root_device,
                "Ebs": {
                    "VolumeSize": spec.disk_gb,
                    "VolumeType": settings.volume_type,
                    "DeleteOnTermination": True,
                },
            }
        ]
    if settings.subnet_id:
        params["SubnetId"] = settings.subnet_id
    if settings.security_group_ids:
        params["SecurityGroupIds"] = list(settings.security_group_ids)
    return params


def quota_error(exc: RunctlError, instance_type: str, region: str, *, spot: bool) -> QuotaError:
    """A quota refusal with the Service Quotas hint naming the quota that applies (EC2 quotas count vCPUs per
    instance family group: https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html)."""
    families = [("vt", "G and VT"), ("g", "G and VT"), ("inf", "Inf"), ("trn", "Trn"), ("dl", "DL")]
    families += [("p", "P"), ("f", "F"), ("x", "X")]
    name = next((group for prefix, group in families if instance_type.startswith(prefix)), "")
    name = name or "Standard (A, C, D, H, I, M, R, T, Z)"
    quota = f"All {name} Spot Instance Requests" if spot else f"Running On-Demand {name} instances"
    code = str(exc.details.get("aws_code", ""))
    return QuotaError(
        f"AWS refused {'a spot' if spot else 'an on-demand'} {instance_type} in {region}: the account's quota is "
        f"used up or zero ({code}); no instance was created",
        f"this is a quota, not a shortage: request more vCPUs for '{quota}' in {region} (Service Quotas console > "
        "Amazon EC2; new accounts often start at 0 for spot and GPU instances)"
        + ("; or run on-demand: --on-demand" if spot else "; or use a smaller --instance-type"),
        details={**exc.details, "quota": quota, "spot": spot},
    )


def user_data(max_runtime: float | None, job_id: str | None) -> str:
    """Runs once at boot (cloud-init, as root): arm the self-termination timer. With
    ``InstanceInitiatedShutdownBehavior=terminate`` the halt terminates the instance, so it ends even if runctl and
    the laptop are gone."""
    lines = ["#!/bin/bash", f"# runctl instance for job {job_id or '-'}"]
    if max_runtime:
        minutes = max(1, math.ceil(max_runtime / 60))
        lines.append(f"shutdown -h +{minutes} 'runctl: max runtime reached'")
    return "\n".join(lines) + "\n"

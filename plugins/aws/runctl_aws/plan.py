"""The dry run: every call a real create/wait/sync/train/collect/terminate makes, built from the same request
builders as create (:mod:`runctl_aws.launch`)."""

from __future__ import annotations

from typing import Any

from runctl_aws import prices
from runctl_aws.common import job_prefix, settings_of, staging_prefix
from runctl_aws.launch import run_params, tags_for
from runctl_aws.settings import resolve_region
from runctl_core.models import (
    PlannedCall,
    PlanRequest,
    ProviderContext,
)


def plan(ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
    from runctl_aws.offers import default_image, resolve

    settings = settings_of(ctx)
    bucket = settings.bucket or "<providers.aws.bucket is not set>"
    spec = request.instance
    found, source = resolve_region(settings)
    region = (spec.region if spec else None) or found or "<no region set>"
    where = "--region" if spec and spec.region else source
    target = request.instance_id or "<new instance id>"
    calls: list[PlannedCall] = []

    def add(step: str, api: str, operation: str, paid: bool = False, **params: Any) -> None:
        calls.append(PlannedCall(step=step, api=api, operation=operation, params=params, paid=paid))

    for step in request.steps:
        if step == "create" and spec is not None:
            resolution = resolve(settings, spec.instance_type, spec.gpu, spec.gpu_count)
            instance_type = resolution.instance_type
            add(step, "sts", "GetCallerIdentity", region=region, region_from=where)
            add(step, "s3", "HeadBucket", Bucket=bucket)
            add(step, "iam", "GetInstanceProfile", InstanceProfileName=settings.instance_profile)
            add(
                step,
                "iam",
                "ListAttachedRolePolicies",
                RoleName="<the profile's role>",
                note="checks for AmazonSSMManagedInstanceCore",
            )
            image = spec.image or settings.image
            if not image:
                choice = default_image(settings, instance_type)
                add(step, "ssm", "GetParameter", Name=choice.parameter)
                if choice.name_pattern:
                    add(
                        step,
                        "ec2",
                        "DescribeImages (only if the parameter is missing)",
                        Owners=["amazon"],
                        Filters=[{"Name": "name", "Values": [choice.name_pattern]}],
                    )
                image = f"<value of {choice.parameter}>"
            if spec.disk_gb:
                add(step, "ec2", "DescribeImages", ImageIds=[image], note="the AMI's root device name")
            tags = tags_for(spec, "<now>")
            params = run_params(
                ctx,
                spec,
                instance_type,
                image,
                tags,
                spec.spot,
                "<root device of the AMI>" if spec.disk_gb else None,
            )
            od = prices.on_demand(instance_type, region)
            estimate: dict[str, Any] = {
                "on_demand_hourly_usd": od,
                "spot_hourly_usd": "from DescribeSpotPriceHistory" if spec.spot else None,
                "price_source": f"bundled table {prices.table_date()}",
            }
            add(
                step,
                "pricing",
                "GetProducts (with credentials, unless cached)",
                region="us-east-1",
                ServiceCode="AmazonEC2",
                Filters={"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux"},
            )
            if spec.spot:
                add(
                    step,
                    "ec2",
                    "DescribeSpotPriceHistory",
                    InstanceTypes=[instance_type],
                    ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                )
            add(step, "ec2", "RunInstances", paid=True, **params)
            if spec.spot:
                add(
                    step,
                    "ec2",
                    "DescribeSpotInstanceRequests (only if spot is refused)",
                    Filters=[{"Name": "tag:runctl:intent", "Values": [spec.intent_id]}],
                )
                add(step, "ec2", "CancelSpotInstanceRequests (only if spot is refused)", note="open requests")
            if spec.spot and spec.on_demand_fallback != "never":
                fallback = run_params(
                    ctx,
                    spec,
                    instance_type,
                    image,
                    tags,
                    False,
                    "<root device of the AMI>" if spec.disk_gb else None,
                )
                add(
                    step,
                    "ec2",
                    f"RunInstances (only if spot is refused; fallback={spec.on_demand_fallback})",
                    paid=True,
                    **fallback,
                )
            add(
                step,
                "runctl",
                "cost estimate",
                instance_type=instance_type,
                gpu=f"{resolution.gpu_count}x {resolution.gpu}" if resolution.gpu else None,
                note=resolution.note or None,
                region=region,
                **estimate,
            )
        elif step == "wait":
            add(step, "ec2", "DescribeInstances", InstanceIds=[target])
            add(step, "ssm", "DescribeInstanceInformation", Filters=[{"Key": "InstanceIds", "Values": [target]}])
            # ready = the SSM agent online; runctl's tools go with the first useful command (sync or train)
        elif step == "stage":
            add(
                step,
                "s3",
                "PutObject",
                Bucket=bucket,
                Key=staging_prefix(settings, target) + "transport/<n>-stdin",
                files=request.project_files,
                bytes=request.project_bytes,
                note="runctl's tools and the whole project, uploaded while the instance boots",
            )
        elif step == "sync":
            root = settings.remote_dir
            staged = "stage" in request.steps
            if not staged:
                add(
                    step,
                    "ssm",
                    "SendCommand (only for an instance another laptop synced: read its manifest)",
                    InstanceIds=[target],
                    DocumentName="AWS-RunShellScript",
                    Parameters={"commands": [f"<read {root}/manifest.json>"]},
                )
                add(
                    step,
                    "s3",
                    "PutObject (only when files changed)",
                    Bucket=bucket,
                    Key=staging_prefix(settings, target) + "transport/<n>-stdin",
                    note="the changed files (and runctl's tools on a new instance)",
                )
            add(
                step,
                "ssm",
                "SendCommand" + ("" if staged else " (only when files changed)"),
                InstanceIds=[target],
                DocumentName="AWS-RunShellScript",
                Parameters={
                    "commands": [
                        f"<fetch the {'staged ' if staged else ''}bundle (presigned GET, then DELETE); install "
                        f"runctl's tools in {root}/bin; runner.py apply-sync --dest {root}/project>"
                    ]
                },
            )
            add(step, "s3", "DeleteObject (only if the instance could not)", Bucket=bucket)
        elif step == "train" and request.job is not None:
            job = request.job
            add(
                step,
                "s3",
                "PutObject (only with env, setup commands or resume checkpoints)",
                Bucket=bucket,
                Key=staging_prefix(settings, target) + "transport/<n>-stdin",
                note="the job's env file (never in the SSM command), setup commands, resume checkpoints",
            )
            runner = "uv run" if settings.use_uv else "python3"
            add(
                step,
                "ssm",
                "SendCommand",
                InstanceIds=[target],
                DocumentName="AWS-RunShellScript",
                Parameters={
                    "commands": [
                        f"<runner.py launch --job-dir {settings.remote_dir}/jobs/{job.job_id} ... "
                        f"--after 'agent.py push --final --upload <presigned POST for s3://{bucket}/"
                        f"{job_prefix(settings, job.job_id)}>' -- {' '.join([job.script, *job.args])}>"
                    ]
                },
                runs=[runner, job.script, *job.args],
                timeout=job.timeout,
            )
        elif step == "collect":
            prefix = job_prefix(settings, request.job.job_id if request.job else "<job>")
            add(step, "s3", "ListObjectsV2", Bucket=bucket, Prefix=prefix + "checkpoints/")
            add(step, "s3", "GetObject", Bucket=bucket, Key=prefix + "checkpoints/<each file>")
        elif step == "terminate":
            add(
                step,
                "ssm",
                "SendCommand",
                InstanceIds=[target],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["<stop jobs: SIGTERM, grace, SIGKILL; upload checkpoints>"]},
            )
            add(
                step,
                "ec2",
                "TerminateInstances",
                InstanceIds=[target],
                note="retried while EC2 may not list it yet",
            )
            add(
                step,
                "ec2",
                "DescribeSpotInstanceRequests",
                Filters=[{"Name": "instance-id", "Values": [target]}],
            )
            add(step, "ec2", "CancelSpotInstanceRequests", note="the instance's spot request, if any")
            add(step, "s3", "DeleteObjects", Bucket=bucket, Prefix=staging_prefix(settings, target))
        else:
            add(step, "aws", step)
    return with_polling(calls)


def with_polling(calls: list[PlannedCall]) -> list[PlannedCall]:
    """Each SSM command is followed by GetCommandInvocation, polled until the command ends."""
    out: list[PlannedCall] = []
    for call in calls:
        out.append(call)
        if call.api == "ssm" and call.operation.startswith("SendCommand"):
            out.append(
                PlannedCall(
                    step=call.step,
                    api="ssm",
                    operation="GetCommandInvocation (polled until the command ends)",
                    params={"InstanceId": call.params.get("InstanceIds", ["?"])[0]},
                )
            )
    return out

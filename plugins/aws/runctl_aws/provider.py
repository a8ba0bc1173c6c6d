"""Hook implementations of the AWS provider: EC2 (on-demand and spot) driven through SSM, staged through S3.

No ssh, no aws CLI, no fixed sleeps: the instance is reached only through SSM ``AWS-RunShellScript`` commands,
code and checkpoints travel through S3 (the instance uses presigned URLs and needs no S3 rights), and every
instance ends itself (``InstanceInitiatedShutdownBehavior=terminate`` plus a ``shutdown -h +N`` timer).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_aws import prices, scripts
from runctl_aws.models import CommandResult, Ec2Instance
from runctl_aws.settings import AwsSettings, resolve_region
from runctl_core.errors import (
    CapacityError,
    CredentialsError,
    NotFoundError,
    PrerequisiteError,
    ProviderError,
    QuotaError,
    RunctlError,
    TransientError,
    UsageError,
)
from runctl_core.hookspecs import hookimpl
from runctl_core.models import (
    Capabilities,
    Capability,
    Checkpoint,
    Collected,
    CredentialStatus,
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    Offer,
    PlannedCall,
    PlanRequest,
    PriceQuery,
    Project,
    ProviderContext,
    StatusReport,
    SyncResult,
)

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
LOG_SSM_CHUNK = 12000  # bytes per SSM read: base64 of it stays under SSM's 24,000-character output limit
LOG_S3_CHUNK = 1 << 20
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


def _settings(ctx: ProviderContext) -> AwsSettings:
    return AwsSettings.model_validate(ctx.settings)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _job_status(job_id: str, record: dict[str, Any]) -> JobStatus:
    state = record.get("state", "lost")
    code = record.get("exit_code")
    return JobStatus(
        job_id=job_id,
        state=JobState(state) if state in JobState._value2member_map_ else JobState.LOST,
        exit_code=int(code) if code is not None else None,
        started_at=_parse_time(record.get("started_at")),
        ended_at=_parse_time(record.get("ended_at")),
        message=str(record.get("message", "") or ""),
    )


def _utf8_cut(data: bytes, at_end: bool) -> bytes:
    """Drop a trailing partial UTF-8 character (it comes whole with the next chunk) unless nothing follows."""
    if at_end:
        return data
    for cut in range(0, min(4, len(data)) + 1):
        candidate = data[: len(data) - cut]
        try:
            candidate.decode("utf-8")
            return candidate
        except UnicodeDecodeError as exc:
            if exc.start < len(candidate) - 4:  # invalid in the middle: no point cutting the end
                return data
    return data


def _client_token(intent_id: str, suffix: str = "") -> str:
    token = intent_id + suffix
    if len(token) > 64 or not token.isascii():
        token = hashlib.sha256(token.encode()).hexdigest()[:60] + suffix[-4:]
    return token


class AwsProvider:
    """runctl's AWS provider. One object per process; boto3 clients are cached per region."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str | None], Any] = {}
        # intent id -> creation time: a repeated create for one intent must send identical parameters, or EC2
        # answers IdempotentParameterMismatch instead of the instance the first call made
        self._created_at: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ plumbing

    def _client(self, ctx: ProviderContext, region: str | None = None) -> Any:
        from runctl_aws.client import AwsClient

        settings = _settings(ctx)
        key = (settings.model_dump_json(), region)
        if key not in self._clients:
            self._clients[key] = AwsClient(settings, region)
        return self._clients[key]

    def _bucket(self, settings: AwsSettings) -> str:
        if not settings.bucket:
            raise PrerequisiteError(
                "no S3 bucket is configured for staging code and storing checkpoints",
                "create one and set it: aws s3 mb s3://YOUR-BUCKET && "
                "runctl config set providers.aws.bucket YOUR-BUCKET",
            )
        return settings.bucket

    def _staging(self, settings: AwsSettings, instance_id: str) -> str:
        return f"{settings.prefix}/_staging/{instance_id}/"

    def _job_prefix(self, settings: AwsSettings, job_id: str) -> str:
        return f"{settings.prefix}/{job_id}/"

    def _state_file(self, ctx: ProviderContext, instance_id: str) -> Path:
        return ctx.state_dir / "instances" / f"{instance_id}.json"

    def _read_state(self, ctx: ProviderContext, instance_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._state_file(ctx, instance_id).read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _write_state(self, ctx: ProviderContext, instance_id: str, **fields: Any) -> None:
        path = self._state_file(ctx, instance_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self._read_state(ctx, instance_id)
        data.update(fields)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _to_instance(self, ec2: Ec2Instance, region: str, base: Instance | None = None) -> Instance:
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
        created = _parse_time(ec2.launch_time) or _parse_time(tags.get("runctl:created"))
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

    def _young(self, ctx: ProviderContext, instance: Instance) -> bool:
        """Whether the instance was created so recently that EC2 may not show it yet.

        EC2 is eventually consistent: right after RunInstances, DescribeInstances and TerminateInstances may answer
        InvalidInstanceID.NotFound for an instance that exists and bills
        (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html). Within
        ``consistency_window`` seconds of its creation by this runctl NotFound therefore means "pending", never
        "gone"; an id runctl did not receive from RunInstances itself is not given that benefit."""
        created = self._read_state(ctx, instance.id).get("created")  # written when RunInstances answered this id
        return isinstance(created, (int, float)) and time.time() - float(created) < _settings(ctx).consistency_window

    def _not_visible_yet(self, instance: Instance) -> Instance:
        return instance.model_copy(
            update={
                "state": InstanceState.PENDING,
                "message": "EC2 does not list the new instance yet (its API is eventually consistent)",
            }
        )

    def _send_terminate(self, ctx: ProviderContext, client: Any, instance: Instance) -> str | None:
        """TerminateInstances, always sent; NotFound is retried while the instance may merely be invisible yet."""
        delay = 0.5
        deadline = time.monotonic() + min(120.0, _settings(ctx).consistency_window)
        while True:
            state: str | None = client.terminate_instance(instance.id)
            if state is not None or not self._young(ctx, instance) or time.monotonic() >= deadline:
                return state
            ctx.report(f"EC2 does not list {instance.id} yet; retrying TerminateInstances")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _region(self, instance: Instance, ctx: ProviderContext) -> str | None:
        return instance.region or resolve_region(_settings(ctx))[0]

    def _describe(self, ctx: ProviderContext, instance: Instance) -> tuple[Any, Ec2Instance | None]:
        client = self._client(ctx, self._region(instance, ctx))
        return client, client.describe_instance(instance.id)

    def _require_running(self, ctx: ProviderContext, instance: Instance) -> tuple[Any, Ec2Instance]:
        client, ec2 = self._describe(ctx, instance)
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

    def _run(
        self, client: Any, instance_id: str, script: str, what: str, timeout: float | None = None
    ) -> CommandResult:
        result: CommandResult = client.run_command(instance_id, script, timeout=timeout, comment=f"runctl {what}")
        return result

    def _fail(self, client: Any, instance_id: str, what: str, result: CommandResult) -> ProviderError:
        detail = client.scrub((result.stderr or result.stdout).strip()[-800:])
        return ProviderError(
            f"{what} on {instance_id} failed (SSM status {result.status}, exit {result.exit_code}): {detail}",
            f"see the SSM console's command history for {result.command_id}",
        )

    def _ensure_tools(self, ctx: ProviderContext, client: Any, instance_id: str) -> None:
        """Install runner.py and agent.py on the instance unless this runctl already did."""
        from runctl_aws.remote import tools_tarball

        settings = _settings(ctx)
        _data, digest = tools_tarball()
        if self._read_state(ctx, instance_id).get("tools") == digest:
            return
        result = self._run(client, instance_id, self._bootstrap_script(ctx, client), "bootstrap", timeout=300)
        if not result.ok or "runctl-ready" not in result.stdout:
            raise self._fail(client, instance_id, "installing runctl's runner", result)
        self._write_state(ctx, instance_id, tools=digest, ready=True, remote_dir=settings.remote_dir)

    def _bootstrap_script(self, ctx: ProviderContext, client: Any) -> str:
        from runctl_aws.remote import tools_tarball

        settings = _settings(ctx)
        bucket = self._bucket(settings)
        data, digest = tools_tarball()
        key = f"{settings.prefix}/_tools/tools-{digest}.tar.gz"
        if client.object_size(bucket, key) is None:
            client.put_bytes(bucket, key, data)
        return scripts.bootstrap(settings.remote_dir, client.presign_get(bucket, key, 3600), digest)

    # ------------------------------------------------------------------------------------------ declarations

    @hookimpl
    def settings_schema(self) -> type[AwsSettings]:
        return AwsSettings

    @hookimpl
    def capabilities(self, ctx: ProviderContext) -> Capabilities:
        settings = _settings(ctx)
        return Capabilities(
            spot=Capability(supported=True),
            stop=Capability(
                supported=False,
                reason="runctl terminates EC2 instances instead of stopping them "
                "(a stopped instance still bills its EBS volume)",
            ),
            log_follow=Capability(supported=True),
            checkpoints=Capability(supported=True),
            max_runtime=Capability(supported=True),
            gpu=Capability(supported=True),
            paid=True,
            poll_interval=settings.poll_interval,
            ready_timeout=settings.ready_timeout,
        )

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        from runctl_aws.credentials import find_credentials, quick_credentials

        settings = _settings(ctx)
        if not probe:  # looking only: no botocore import, no endpoint asked
            return quick_credentials(settings.profile)
        found = find_credentials(settings.profile, allow_network=True)
        if not found.found:
            return found
        if probe:
            try:
                identity = self._client(ctx).caller_identity()
            except RunctlError as exc:
                return found.model_copy(
                    update={
                        "found": False,
                        "message": f"refused by AWS: {exc.message}",
                        "hint": exc.hint or "check the credentials: aws sts get-caller-identity",
                    }
                )
            return found.model_copy(update={"identity": identity})
        return found

    # ------------------------------------------------------------------------------------------ create

    def _resolve_type(self, ctx: ProviderContext, spec: InstanceSpec) -> str:
        from runctl_aws.offers import resolve

        return resolve(_settings(ctx), spec.instance_type, spec.gpu, spec.gpu_count).instance_type

    def _check_prerequisites(self, ctx: ProviderContext, client: Any) -> None:
        """Credentials, region, bucket and instance profile: checked before anything is paid for."""
        from runctl_aws.credentials import find_credentials

        settings = _settings(ctx)
        if not client.region:
            raise CredentialsError(
                "no AWS region is configured",
                "set one: runctl config set providers.aws.region us-east-1 (or export AWS_REGION)",
            )
        creds = find_credentials(settings.profile, allow_network=True)
        if not creds.found:
            raise CredentialsError(creds.message or "no AWS credentials were found", creds.hint)
        bucket = self._bucket(settings)
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

    def _image(self, ctx: ProviderContext, client: Any, spec: InstanceSpec, instance_type: str) -> str:
        from runctl_aws.offers import default_image

        settings = _settings(ctx)
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

    def _tags(self, spec: InstanceSpec, created: str) -> dict[str, str]:
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

    def _run_params(
        self,
        ctx: ProviderContext,
        spec: InstanceSpec,
        instance_type: str,
        image: str,
        tags: dict[str, str],
        spot: bool,
        root_device: str | None,
    ) -> dict[str, Any]:
        settings = _settings(ctx)
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        kinds = ["instance", "volume"] + (["spot-instances-request"] if spot else [])
        params: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": _client_token(spec.intent_id, "" if spot else "-od"),
            "IamInstanceProfile": {"Name": settings.instance_profile},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "UserData": scripts.user_data(spec.max_runtime, spec.job_id),
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

    def _spot_price(self, client: Any, instance_type: str) -> float | None:
        try:
            value = client.spot_prices([instance_type]).get(instance_type)
        except RunctlError:
            return None
        return float(value) if value is not None else None

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        from runctl_aws.offers import resolve

        client = self._client(ctx, spec.region)
        resolution = resolve(_settings(ctx), spec.instance_type, spec.gpu, spec.gpu_count)
        instance_type = resolution.instance_type
        if resolution.note:
            ctx.warn(resolution.note)
        self._check_prerequisites(ctx, client)
        region = str(client.region)
        image = self._image(ctx, client, spec, instance_type)
        root_device = client.root_device_name(image) if spec.disk_gb else None
        created = self._created_at.setdefault(spec.intent_id, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        tags = self._tags(spec, created)
        on_demand = prices.on_demand(instance_type, region)
        if spec.spot:
            ctx.report(f"requesting a spot {instance_type} in {region}")
            params = self._run_params(ctx, spec, instance_type, image, tags, True, root_device)
            try:
                ec2 = self._run_instances(ctx, client, params)
                self._write_state(ctx, ec2.id, created=time.time())
                instance = self._to_instance(ec2, region)
                return instance.model_copy(update={"hourly_price": self._spot_price(client, instance_type)})
            except (CapacityError, QuotaError) as exc:
                code = str(exc.details.get("aws_code", ""))
                if code in SPOT_QUOTA or (isinstance(exc, QuotaError) and code not in SPOT_REFUSED):
                    raise _quota_error(exc, instance_type, region, spot=True) from None
                if code not in SPOT_REFUSED:
                    raise
                self._cancel_open_spot_requests(client, spec.intent_id)
                self._fallback(ctx, client, spec, instance_type, region, code, on_demand)
        ctx.report(f"launching an on-demand {instance_type} in {region}")
        params = self._run_params(ctx, spec, instance_type, image, tags, False, root_device)
        try:
            ec2 = self._run_instances(ctx, client, params)
        except QuotaError as exc:
            raise _quota_error(exc, instance_type, region, spot=False) from None
        self._write_state(ctx, ec2.id, created=time.time())
        return self._to_instance(ec2, region)

    def _run_instances(self, ctx: ProviderContext, client: Any, params: dict[str, Any]) -> Ec2Instance:
        """RunInstances; "Invalid IAM Instance Profile name" is retried for a bounded time, because IAM is
        eventually consistent and a profile created a moment ago may not be visible to EC2 yet
        (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html). The prerequisite check has
        already seen the profile in IAM, so this is propagation, not a wrong name."""
        deadline = time.monotonic() + PROFILE_WAIT
        delay = max(0.05, _settings(ctx).retry_base_delay * 4)
        while True:
            try:
                ec2: Ec2Instance = client.run_instances(params)
                return ec2
            except ProviderError as exc:
                if PROFILE_PROPAGATION not in exc.message or time.monotonic() + delay > deadline:
                    raise
            ctx.report("the instance profile is not visible to EC2 yet (IAM propagation); retrying RunInstances")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _cancel_open_spot_requests(self, client: Any, intent_id: str) -> None:
        try:
            open_requests = [
                r["SpotInstanceRequestId"]
                for r in client.spot_requests(intent_id=intent_id)
                if r.get("State") in ("open", "active")
            ]
            client.cancel_spot_requests(open_requests)
        except RunctlError:
            pass

    def _fallback(
        self,
        ctx: ProviderContext,
        client: Any,
        spec: InstanceSpec,
        instance_type: str,
        region: str,
        code: str,
        on_demand: float | None,
    ) -> None:
        spot = self._spot_price(client, instance_type)
        od_text = f"${on_demand:.4f}/h" if on_demand is not None else "an unknown price (not in runctl's table)"
        spot_text = f"${spot:.4f}/h" if spot is not None else "unknown"
        ratio = f" ({on_demand / spot:.1f}x the spot price)" if on_demand and spot else ""
        comparison = f"on-demand {od_text} vs spot {spot_text}{ratio}"
        policy = spec.on_demand_fallback
        if policy == "always" or (
            policy == "ask"
            and ctx.confirm(f"Spot {instance_type} refused ({code}). Launch on-demand instead: {comparison}?")
        ):
            ctx.warn(
                f"spot capacity for {instance_type} in {region} refused ({code}); falling back to on-demand: "
                f"{comparison}"
            )
            return
        raise CapacityError(
            f"spot capacity for {instance_type} in {region} was refused ({code}); no instance was created",
            f"retry later, try another --instance-type/--region, or allow on-demand with --on-demand-fallback always "
            f"({comparison})",
            details={"aws_code": code, "on_demand_hourly": on_demand, "spot_hourly": spot},
        )

    # ------------------------------------------------------------------------------------------ ready / status

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        client, ec2 = self._describe(ctx, instance)
        region = str(client.region)
        if ec2 is None:
            if self._young(ctx, instance):
                return self._not_visible_yet(instance)
            return instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "instance not found"})
        current = self._to_instance(ec2, region, instance)
        if ec2.state != "running":
            if current.state is InstanceState.RUNNING:  # pragma: no cover - guarded above
                current = current.model_copy(update={"state": InstanceState.PENDING})
            if ec2.state == "pending":
                return current.model_copy(update={"message": "EC2 instance is starting"})
            return current
        waiting = current.model_copy(update={"state": InstanceState.PENDING})
        ping = client.ping_status(instance.id)
        if ping != "Online":
            what = "not registered yet" if ping is None else ping
            return waiting.model_copy(update={"message": f"waiting for the SSM agent ({what})"})
        from runctl_aws.remote import tools_tarball

        state = self._read_state(ctx, instance.id)
        digest = tools_tarball()[1]
        if state.get("ready") and state.get("tools") == digest:
            return current
        probe = state.get("probe")
        if probe:
            result = client.command_result(probe, instance.id)
            if result is None:
                return waiting.model_copy(update={"message": "waiting for the first SSM command to answer"})
            if result.ok and "runctl-ready" in result.stdout:
                self._write_state(ctx, instance.id, ready=True, tools=digest, probe=None)
                return current.model_copy(update={"message": "running; SSM answers"})
            self._write_state(ctx, instance.id, probe=None)
            raise self._fail(client, instance.id, "the first SSM command", result)
        command_id = client.send_command(instance.id, self._bootstrap_script(ctx, client), 300, "runctl bootstrap")
        self._write_state(ctx, instance.id, probe=command_id)
        return waiting.model_copy(update={"message": "SSM agent online; sent the first command"})

    def _job_from_s3(self, ctx: ProviderContext, client: Any, job_id: str) -> JobStatus | None:
        settings = _settings(ctx)
        if not settings.bucket:
            return None
        data = client.get_bytes(settings.bucket, self._job_prefix(settings, job_id) + "job.json")
        if not data:
            return None
        try:
            return _job_status(job_id, json.loads(data))
        except ValueError:
            return None

    def _job_on_dead_instance(
        self, ctx: ProviderContext, client: Any, ec2: Ec2Instance | None, job: JobStatus
    ) -> JobStatus:
        recorded = self._job_from_s3(ctx, client, job.job_id)
        if recorded is not None and recorded.state.terminal:
            return recorded
        if ec2 is not None and ec2.state_reason in SPOT_RECLAIMED:
            return job.model_copy(
                update={"state": JobState.INTERRUPTED, "message": "the spot instance was reclaimed by AWS"}
            )
        return job.model_copy(
            update={"state": JobState.LOST, "message": "the instance ended without the job recording an exit code"}
        )

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        client, ec2 = self._describe(ctx, instance)
        region = str(client.region)
        if ec2 is None and self._young(ctx, instance):
            return StatusReport(instance=self._not_visible_yet(instance), job=job)
        if ec2 is None:
            gone = instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "instance not found"})
            if job is None or job.state.terminal:
                return StatusReport(instance=gone, job=job)
            return StatusReport(instance=gone, job=self._job_on_dead_instance(ctx, client, None, job))
        current = self._to_instance(ec2, region, instance)
        if job is None or job.state.terminal:
            return StatusReport(instance=current, job=job)
        if ec2.state != "running":
            if current.state.alive and ec2.state_reason not in SPOT_RECLAIMED and ec2.state == "pending":
                return StatusReport(instance=current, job=job)
            recorded = self._job_from_s3(ctx, client, job.job_id)
            if recorded is not None and recorded.state.terminal:
                return StatusReport(instance=current, job=recorded)
            if current.state.alive and ec2.state_reason not in SPOT_RECLAIMED:
                return StatusReport(instance=current, job=job)  # shutting down: the record may still come
            return StatusReport(instance=current, job=self._job_on_dead_instance(ctx, client, ec2, job))
        settings = _settings(ctx)
        try:
            result = self._run(
                client, instance.id, scripts.job_status(settings.remote_dir, job.job_id), "status", timeout=60
            )
        except NotFoundError:  # SSM does not reach it (any more)
            return StatusReport(
                instance=current, job=job.model_copy(update={"message": "SSM cannot reach the instance"})
            )
        if not result.ok:
            return StatusReport(
                instance=current, job=job.model_copy(update={"message": "could not read the job state"})
            )
        try:
            record = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return StatusReport(instance=current, job=job)
        return StatusReport(instance=current, job=_job_status(job.job_id, record))

    # ------------------------------------------------------------------------------------------ sync / train

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        from runctl_core.files import changed_files, pack_tar

        settings = _settings(ctx)
        bucket = self._bucket(settings)
        if project.total_bytes > S3_PUT_LIMIT:
            raise UsageError(
                f"the project is {project.total_bytes / 1024**3:.1f} GiB; runctl syncs at most 5 GiB",
                "add large data to .runctlignore and read it from S3 in the script",
            )
        client, _ec2 = self._require_running(ctx, instance)
        self._ensure_tools(ctx, client, instance.id)
        staging = self._staging(settings, instance.id)
        previous_raw = client.get_bytes(bucket, staging + "manifest.json")
        previous: dict[str, str] = json.loads(previous_raw) if previous_raw else {}
        send, delete = changed_files(project, previous)
        remote_path = settings.remote_dir + "/project"
        if not send and not delete:
            return SyncResult(remote_path=remote_path, files_total=len(project.files), files_sent=0, bytes_sent=0)
        ctx.report(f"syncing {len(send)} file(s) to {instance.id} through S3")
        stamp = f"{time.time_ns()}"
        tar_key, meta_key = staging + f"sync-{stamp}.tar.gz", staging + f"sync-{stamp}.json"
        tar_url = ""
        if send:
            client.put_bytes(bucket, tar_key, pack_tar(project, send))
            tar_url = client.presign_get(bucket, tar_key)
        client.put_bytes(bucket, meta_key, json.dumps({"delete": delete, "manifest": project.manifest()}).encode())
        meta_url = client.presign_get(bucket, meta_key)
        try:
            result = self._run(client, instance.id, scripts.sync(settings.remote_dir, tar_url, meta_url), "sync")
            if not result.ok:
                raise self._fail(client, instance.id, "sync", result)
            client.put_bytes(bucket, staging + "manifest.json", json.dumps(project.manifest()).encode())
        finally:
            for key in (tar_key, meta_key):
                try:
                    client.delete_object(bucket, key)
                except RunctlError:
                    pass
        return SyncResult(
            remote_path=remote_path,
            files_total=len(project.files),
            files_sent=len(send),
            bytes_sent=sum(f.size for f in send),
            files_deleted=len(delete),
        )

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        settings = _settings(ctx)
        if not JOB_ID_RE.match(job.job_id):
            raise UsageError(
                f"job id {job.job_id!r} has characters runctl cannot use on AWS", "use letters, digits, -_."
            )
        bucket = self._bucket(settings)
        client, ec2 = self._require_running(ctx, instance)
        self._ensure_tools(ctx, client, instance.id)
        staging = self._staging(settings, instance.id)
        expiry = settings.upload_url_expiry
        bundle: dict[str, Any] = {
            "env": job.env,
            "upload": client.presign_post(bucket, self._job_prefix(settings, job.job_id), expiry),
        }
        keys = [staging + f"{job.job_id}-bundle.json"]
        has_resume = bool(job.resume_dir and job.resume_dir.is_dir())
        if has_resume and job.resume_dir is not None:
            keys.append(staging + f"{job.job_id}-resume.tar.gz")
            client.put_bytes(bucket, keys[1], _tar_directory(job.resume_dir))
            bundle["resume_url"] = client.presign_get(bucket, keys[1])
        client.put_bytes(bucket, keys[0], json.dumps(bundle).encode())
        script = scripts.train(
            settings.remote_dir,
            job,
            client.presign_get(bucket, keys[0]),
            grace=settings.grace_period,
            use_uv=settings.use_uv,
            spot=ec2.lifecycle == "spot",
            interrupt_every=settings.interrupt_check_every,
            has_resume=has_resume,
        )
        try:
            result = self._run(client, instance.id, script, f"train {job.job_id}")
        finally:
            for key in keys:
                try:
                    client.delete_object(bucket, key)
                except RunctlError:
                    pass
        if result.exit_code == scripts.EXIT_SCRIPT_MISSING:
            raise UsageError(
                f"{job.script} is not in the synced project on {instance.id}",
                f"sync first (runctl sync {instance.id}) or check the script path",
            )
        if result.exit_code == scripts.EXIT_JOB_EXISTS:
            raise UsageError(f"a job {job.job_id} already exists on {instance.id}", "use a new job id")
        if not result.ok:
            raise self._fail(client, instance.id, f"starting job {job.job_id}", result)
        try:
            record = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            record = {"state": "pending"}
        return _job_status(job.job_id, record)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        settings = _settings(ctx)
        client, ec2 = self._describe(ctx, instance)
        if ec2 is None or ec2.state != "running":
            return job if job.state.terminal else self.status(ctx, instance, job).job or job
        try:
            result = self._run(
                client,
                instance.id,
                scripts.stop_job(settings.remote_dir, job.job_id, settings.grace_period),
                "stop",
                timeout=settings.grace_period + 60,
            )
        except NotFoundError:
            return job
        if not result.ok:
            raise self._fail(client, instance.id, f"stopping job {job.job_id}", result)
        try:
            return _job_status(job.job_id, json.loads(result.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return job

    # ------------------------------------------------------------------------------------------ logs

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
        settings = _settings(ctx)
        client, ec2 = self._describe(ctx, instance)
        if ec2 is not None and ec2.state == "running":
            try:
                result = self._run(
                    client,
                    instance.id,
                    scripts.read_log(settings.remote_dir, job.job_id, offset, LOG_SSM_CHUNK),
                    "logs",
                    timeout=60,
                )
            except NotFoundError:
                result = None
            if result is not None and result.ok:
                reply = json.loads(result.stdout.strip().splitlines()[-1])
                data = base64.b64decode(reply["data"])
                size = int(reply.get("size", 0))
                at_end = offset + len(data) >= size
                terminal = reply["record"].get("state") in {s.value for s in JobState if s.terminal}
                data = _utf8_cut(data, at_end and terminal)
                return LogChunk(
                    data=data.decode("utf-8", errors="replace"),
                    offset=offset,
                    next_offset=offset + len(data),
                    complete=terminal and at_end,
                )
        # the instance is gone (or SSM cannot reach it): the log the job pushed to S3 when it ended
        if not settings.bucket:
            return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
        key = self._job_prefix(settings, job.job_id) + "log"
        size = client.object_size(settings.bucket, key)
        alive = ec2 is not None and ec2.state in ("pending", "running")
        if size is None or offset >= size:
            return LogChunk(data="", offset=offset, next_offset=offset, complete=not alive)
        data = client.get_bytes(settings.bucket, key, f"bytes={offset}-{offset + LOG_S3_CHUNK - 1}") or b""
        at_end = offset + len(data) >= size
        data = _utf8_cut(data, at_end)
        return LogChunk(
            data=data.decode("utf-8", errors="replace"),
            offset=offset,
            next_offset=offset + len(data),
            complete=at_end and not alive,
        )

    # ------------------------------------------------------------------------------------------ terminate / list

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        settings = _settings(ctx)
        client, ec2 = self._describe(ctx, instance)
        if (
            ec2 is not None
            and ec2.state == "running"
            and settings.stop_jobs_on_terminate
            and self._read_state(ctx, instance.id).get("tools")
        ):
            ctx.report(f"stopping jobs on {instance.id} (checkpoints go to S3)")
            try:
                if client.ping_status(instance.id) == "Online":
                    self._run(
                        client,
                        instance.id,
                        scripts.stop_all(settings.remote_dir, settings.grace_period),
                        "stop jobs",
                        timeout=settings.grace_period + 60,
                    )
            except RunctlError:
                pass  # best effort: terminating stops everything anyway
        new_state: str | None = "terminated"
        if ec2 is None or ec2.state != "terminated":
            # always asked, even when EC2 did not list it: NotFound right after creation does not mean gone
            ctx.report(f"terminating {instance.id}")
            new_state = self._send_terminate(ctx, client, instance)
        self._cleanup(ctx, client, instance.id, ec2)
        final = self._to_instance(ec2, str(client.region), instance) if ec2 is not None else instance
        if new_state is None:
            return final.model_copy(update={"state": InstanceState.TERMINATED, "message": "instance not found"})
        if new_state == "shutting-down":  # EC2 stops billing the instance here; it is gone for runctl's purposes
            return final.model_copy(
                update={"state": InstanceState.TERMINATED, "message": "EC2 state shutting-down (no longer billed)"}
            )
        return final.model_copy(
            update={"state": EC2_STATES.get(new_state, InstanceState.STOPPING), "message": f"EC2 state {new_state}"}
        )

    def _cleanup(self, ctx: ProviderContext, client: Any, instance_id: str, ec2: Ec2Instance | None) -> None:
        settings = _settings(ctx)
        try:
            requests = {
                r["SpotInstanceRequestId"]
                for r in client.spot_requests(instance_id=instance_id)
                if r.get("State") in ("open", "active", "disabled")
            }
            if ec2 is not None and ec2.spot_request_id:
                requests.add(ec2.spot_request_id)
            client.cancel_spot_requests(sorted(requests))
        except RunctlError as exc:
            if isinstance(exc, TransientError):
                raise
        if settings.bucket:
            try:
                client.delete_prefix(settings.bucket, self._staging(settings, instance_id))
            except RunctlError as exc:
                if isinstance(exc, TransientError):
                    raise
        self._state_file(ctx, instance_id).unlink(missing_ok=True)

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        client = self._client(ctx)
        found = [
            self._to_instance(ec2, str(client.region))
            for ec2 in client.tagged_instances("runctl:owner")
            if "runctl:owner" in ec2.tags
        ]
        window = _settings(ctx).consistency_window
        for instance in found:  # EC2 listed it: NotFound for its id soon after launch means "not visible yet"
            launched = instance.created_at.timestamp() if instance.created_at else None
            young = launched is not None and instance.state.alive and time.time() - launched < window
            if young and "created" not in self._read_state(ctx, instance.id):
                self._write_state(ctx, instance.id, created=launched)
        return found

    # ------------------------------------------------------------------------------------------ checkpoints

    def _s3_checkpoints(self, ctx: ProviderContext, client: Any, job_id: str) -> list[Checkpoint]:
        settings = _settings(ctx)
        if not settings.bucket:
            return []
        prefix = self._job_prefix(settings, job_id) + "checkpoints/"
        return [
            Checkpoint(
                name=item["Key"][len(prefix) :],
                size=int(item.get("Size", 0)),
                modified_at=_parse_time(item.get("LastModified")),
                location=f"s3://{settings.bucket}/{item['Key']}",
            )
            for item in client.list_objects(settings.bucket, prefix)
            if item["Key"] != prefix
        ]

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        settings = _settings(ctx)
        client, ec2 = self._describe(ctx, instance)
        found = self._s3_checkpoints(ctx, client, job.job_id)
        if found or ec2 is None or ec2.state != "running" or not self._read_state(ctx, instance.id).get("tools"):
            return found
        try:
            result = self._run(client, instance.id, scripts.list_files(settings.remote_dir, job.job_id), "list", 60)
        except NotFoundError:
            return []
        if not result.ok:
            return []
        where = f"{settings.remote_dir}/jobs/{job.job_id}/checkpoints"
        return [
            Checkpoint(
                name=item["name"],
                size=int(item["size"]),
                modified_at=datetime.fromtimestamp(float(item["mtime"]), timezone.utc),
                location=f"{instance.id}:{where}/{item['name']}",
            )
            for item in json.loads(result.stdout.strip().splitlines()[-1])
        ]

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        settings = _settings(ctx)
        client, ec2 = self._describe(ctx, instance)
        found = self._s3_checkpoints(ctx, client, job.job_id)
        if not found and ec2 is not None and ec2.state == "running" and self._read_state(ctx, instance.id).get("tools"):
            try:  # the job is still running (or never pushed): push what exists now
                self._run(client, instance.id, scripts.push(settings.remote_dir, job.job_id), "push", 600)
            except NotFoundError:
                pass
            found = self._s3_checkpoints(ctx, client, job.job_id)
        written: list[Path] = []
        root = dest.resolve()
        for item in found:
            target = (dest / item.name).resolve()
            if not str(target).startswith(str(root) + os.sep):
                continue
            data = client.get_bytes(str(settings.bucket), item.location.split("/", 3)[3])
            if data is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
        return Collected(directory=dest, files=written)

    # ------------------------------------------------------------------------------------------ price

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        from runctl_aws.credentials import quick_credentials

        settings = _settings(ctx)
        region = query.region or resolve_region(settings)[0] or "us-east-1"
        note = ""
        if query.instance_type:
            names = [query.instance_type]
        elif query.gpu:
            from runctl_aws.offers import available_counts, resolve

            names = [info.name for info in prices.types_for_gpu(query.gpu, query.gpu_count)]
            if not names and query.gpu_count is not None and prices.normalize_gpu(query.gpu):
                try:  # no exact count: the machines create would launch (the smallest count above), said so
                    chosen = resolve(settings, None, query.gpu, query.gpu_count)
                except UsageError:  # no count above either
                    chosen = None
                    note = f"AWS has no {query.gpu_count}x {prices.normalize_gpu(query.gpu)} machine; " + (
                        available_counts(str(prices.normalize_gpu(query.gpu)))
                    )
                if chosen is not None:
                    note = chosen.note
                    names = [info.name for info in prices.types_for_gpu(query.gpu, chosen.gpu_count)]
        else:
            names = prices.known_types()
        if not names:
            if note:
                raise UsageError(note, "pass a --gpu-count AWS has, or another --gpu")
            return []
        od_source = f"bundled table {prices.table_date()} ({prices.table_age_days()} days old)"
        spot: dict[str, float] = {}
        spot_source = "spot: not asked"
        if query.spot is not False:
            spot_source = "spot: no credentials"
            if quick_credentials(settings.profile).found:
                try:
                    spot = self._client(ctx, region).spot_prices(names)
                    spot_source = "spot: describe_spot_price_history"
                except RunctlError as exc:
                    spot_source = f"spot: unavailable ({exc.code})"
        offers = []
        for name in names:
            info = prices.type_info(name)
            offers.append(
                Offer(
                    provider="aws",
                    instance_type=name,
                    gpu=info.gpu if info else None,
                    gpu_count=info.gpu_count if info else 0,
                    vcpus=info.vcpus if info else None,
                    memory_gb=info.memory_gb if info else None,
                    on_demand_hourly=prices.on_demand(name, region),
                    spot_hourly=spot.get(name),
                    availability="unknown",
                    region=region,
                    source=(f"{note}. " if note else "") + f"on-demand: {od_source}; {spot_source}",
                )
            )
        return offers

    # ------------------------------------------------------------------------------------------ plan

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        from runctl_aws.offers import default_image, resolve

        settings = _settings(ctx)
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
                tags = self._tags(spec, "<now>")
                params = self._run_params(
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
                    fallback = self._run_params(
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
                tools_key = f"{settings.prefix}/_tools/tools-<hash>.tar.gz"
                add(step, "s3", "HeadObject", Bucket=bucket, Key=tools_key)
                add(step, "s3", "PutObject", Bucket=bucket, Key=tools_key, note="only if HeadObject found nothing")
                add(
                    step,
                    "ssm",
                    "SendCommand",
                    InstanceIds=[target],
                    DocumentName="AWS-RunShellScript",
                    Parameters={"commands": ["<check python3; install runner.py and agent.py from a presigned URL>"]},
                )
            elif step == "sync":
                staging = self._staging(settings, target)
                add(step, "s3", "GetObject", Bucket=bucket, Key=staging + "manifest.json")
                add(
                    step,
                    "s3",
                    "PutObject",
                    Bucket=bucket,
                    Key=staging + "sync-<n>.tar.gz",
                    files=request.project_files,
                    bytes=request.project_bytes,
                    note="only files whose hash changed",
                )
                add(
                    step,
                    "ssm",
                    "SendCommand",
                    InstanceIds=[target],
                    DocumentName="AWS-RunShellScript",
                    Parameters={
                        "commands": [
                            f"python3 {settings.remote_dir}/bin/agent.py sync --url <presigned> "
                            f"--dest {settings.remote_dir}/project"
                        ]
                    },
                )
                add(step, "s3", "DeleteObject", Bucket=bucket, Key=staging + "sync-<n>.*", note="staging, after")
            elif step == "train" and request.job is not None:
                job = request.job
                add(
                    step,
                    "s3",
                    "PutObject",
                    Bucket=bucket,
                    Key=self._staging(settings, target) + f"{job.job_id}-bundle.json",
                    note="job env and a presigned POST for s3://"
                    + bucket
                    + "/"
                    + self._job_prefix(settings, job.job_id),
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
                            f"nohup setsid python3 {settings.remote_dir}/bin/runner.py supervise "
                            f"... -- {job.script} {' '.join(job.args)} &"
                        ]
                    },
                    runs=[runner, job.script, *job.args],
                    timeout=job.timeout,
                )
                add(
                    step,
                    "ssm",
                    "SendCommand (polled)",
                    InstanceIds=[target],
                    DocumentName="AWS-RunShellScript",
                    Parameters={"commands": ["python3 runner.py status --job-dir ..."]},
                )
                add(step, "s3", "DeleteObject", Bucket=bucket, Key=self._staging(settings, target) + f"{job.job_id}-*")
            elif step == "collect":
                prefix = self._job_prefix(settings, request.job.job_id if request.job else "<job>")
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
                add(step, "s3", "DeleteObjects", Bucket=bucket, Prefix=self._staging(settings, target))
            else:
                add(step, "aws", step)
        return _with_polling(calls)


def _quota_error(exc: RunctlError, instance_type: str, region: str, *, spot: bool) -> QuotaError:
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


def _with_polling(calls: list[PlannedCall]) -> list[PlannedCall]:
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


def _tar_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()

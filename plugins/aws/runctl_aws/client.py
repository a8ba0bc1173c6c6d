"""Every AWS call of the provider (EC2, SSM, S3, IAM, STS) behind typed methods, and nothing else.

boto3 is imported lazily. botocore's own retries are switched off; :meth:`AwsClient._call` retries instead, so
that the policy is the same for every call and configurable (tests use millisecond delays):

* throttling (``RequestLimitExceeded``, ``Throttling``...) is retried for every call: the request was refused,
  nothing happened;
* 5xx errors and connection failures are retried only for calls that are safe to repeat (reads, and
  ``RunInstances`` which carries a ``ClientToken``).

Errors are mapped onto runctl's types. Messages are scrubbed of credentials and presigned URLs.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runctl_aws.models import CommandResult, Ec2Instance
from runctl_aws.settings import AwsSettings, resolve_region
from runctl_core.errors import (
    AuthError,
    CapacityError,
    CredentialsError,
    NotFoundError,
    ProviderError,
    QuotaError,
    RunctlError,
    TransientError,
)

THROTTLING = {
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "ThrottledException",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
}
SERVER_ERRORS = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "InternalServerError"}
AUTH = {
    "AuthFailure",
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "OptInRequired",
    "Blocked",
}
CAPACITY = {
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "UnfulfillableCapacity",
    "InsufficientFreeAddressesInSubnet",
}
QUOTA = {
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "ResourceLimitExceeded",
    "VolumeLimitExceeded",
    "MaxSpotFleetRequestCountExceeded",
}
NOT_FOUND = {
    "InvalidInstanceID.NotFound",
    "InvalidInstanceID.Malformed",
    "NoSuchKey",
    "NoSuchBucket",
    "NoSuchEntity",
    "ParameterNotFound",
    "InvalidInstanceId",
    "InvocationDoesNotExist",
    "404",
    "NotFound",
}
TERMINAL_COMMAND = {"Success", "Failed", "Cancelled", "TimedOut", "Cancelling", "Undeliverable", "Terminated"}
URL_RE = re.compile(r"https?://[^\s'\"<>]+")
HTML_RE = re.compile(r"<\s*(!doctype|html|head|body|title|h1|p|div|center)\b", re.IGNORECASE)
TAG_RE = re.compile(r"<[^>]*>")


def scrub_urls(text: str) -> str:
    """Replace URLs (presigned ones carry credentials in their query) by a placeholder."""
    return URL_RE.sub("<url>", text)


def plain_text(text: str, limit: int = 300) -> str:
    """An HTML page (a proxy's or load balancer's error page) reduced to its words: errors never carry markup."""
    if not HTML_RE.search(text):
        return text
    words = " ".join(TAG_RE.sub(" ", text).split())
    return (words[:limit] + "...") if len(words) > limit else words


_LOADER: Any = None


def _shared_loader() -> Any:
    global _LOADER
    if _LOADER is None:
        from botocore.loaders import create_loader

        _LOADER = create_loader()
    return _LOADER


class AwsClient:
    """boto3 clients for one region, with runctl's retries and error mapping."""

    def __init__(
        self,
        settings: AwsSettings,
        region: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        region_cache: Path | None = None,
    ):
        import boto3
        import botocore.session

        self.settings = settings
        self._sleep = sleep
        core = botocore.session.Session(profile=settings.profile)
        core.register_component("data_loader", _shared_loader())  # parse the service models once per process
        self.session = boto3.Session(botocore_session=core)
        self.region: str | None = region or resolve_region(settings)[0]
        self._clients: dict[tuple[str, str], Any] = {}
        self._secrets: list[str] | None = None
        self.bucket_regions: dict[str, str] = {}
        self._region_cache = region_cache  # bucket -> region, kept on the laptop (a bucket never moves)
        if region_cache is not None:
            try:
                self.bucket_regions.update(json.loads(region_cache.read_text()))
            except (OSError, ValueError):
                pass

    # ------------------------------------------------------------------------------------------ plumbing

    def client(self, service: str, region: str | None = None) -> Any:
        """The boto3 client of ``service`` for ``region`` (default: runctl's region). An S3 client for a bucket's
        own region talks to that region's endpoint (``s3.REGION.amazonaws.com``), so that what it signs, presigned
        URLs included, is valid where the bucket lives."""
        region = region or self.region or ""
        if (service, region) not in self._clients:
            from botocore.config import Config

            if not region:
                raise CredentialsError(
                    "no AWS region is configured",
                    "set one: runctl config set providers.aws.region us-east-1 (or export AWS_REGION=us-east-1)",
                )
            config = Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                s3={"addressing_style": "path" if self.settings.endpoint_url else "virtual"},
                signature_version="s3v4" if service == "s3" else None,
            )
            kwargs: dict[str, Any] = {"region_name": region, "config": config}
            if self.settings.endpoint_url:
                kwargs["endpoint_url"] = self.settings.endpoint_url
            elif service == "s3":
                kwargs["endpoint_url"] = f"https://s3.{region}.amazonaws.com"
            self._clients[(service, region)] = self.session.client(service, **kwargs)
        return self._clients[(service, region)]

    def secrets(self) -> list[str]:
        """The credential values in use (to scrub from any text runctl shows)."""
        if self._secrets is None:
            found: list[str] = []
            creds = self.session.get_credentials()
            if creds is not None:
                frozen = creds.get_frozen_credentials()
                found = [v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v]
            self._secrets = found
        return self._secrets

    def scrub(self, text: str) -> str:
        text = scrub_urls(text)
        for secret in self.secrets():
            text = text.replace(secret, "<redacted>")
        return text

    def _call(
        self, service: str, operation: str, *, idempotent: bool = True, region: str | None = None, **kwargs: Any
    ) -> Any:
        method = getattr(self.client(service, region), operation)
        attempt = 1
        while True:
            try:
                return method(**kwargs)
            except Exception as exc:  # mapped below; anything unknown becomes a ProviderError
                error = self._map(exc, service, operation)
                retry = isinstance(error, TransientError) and (idempotent or error.details.get("throttled"))
                if not retry or attempt >= self.settings.retry_attempts:
                    if isinstance(error, TransientError) and attempt > 1:
                        error.message = f"{error.message} (gave up after {attempt} tries)"
                    raise error from None
                ceiling = self.settings.retry_base_delay * (2 ** (attempt - 1))
                self._sleep(min(20.0, random.uniform(ceiling / 2, ceiling)))
                attempt += 1

    def _map(self, exc: Exception, service: str, operation: str) -> RunctlError:
        from botocore.exceptions import (
            ClientError,
            NoCredentialsError,
            NoRegionError,
            PartialCredentialsError,
            ReadTimeoutError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        where = f"{service}:{operation}"
        if isinstance(exc, RunctlError):
            return exc
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return CredentialsError(
                "no usable AWS credentials were found",
                "configure them: `aws configure` (or aws sso login, or export AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE); then check with `runctl providers --check`",
            )
        if isinstance(exc, NoRegionError):
            return CredentialsError("no AWS region is configured", "set providers.aws.region or AWS_REGION")
        if isinstance(exc, BotoConnectionError | ReadTimeoutError):
            return TransientError(
                f"{where}: could not reach AWS ({type(exc).__name__})",
                "check the network; runctl retries such failures",
            )
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = self.scrub(plain_text(f"{where}: {code}: {err.get('Message', '')}".rstrip(": ")))
            details: dict[str, object] = {"aws_code": code, "operation": where}
            if code in THROTTLING or status == 429:
                details["throttled"] = True
                return TransientError(
                    message, "AWS is throttling requests; runctl retries with backoff", details=details
                )
            if code in CAPACITY:
                return CapacityError(
                    message,
                    "try another instance type, region or availability zone, "
                    "or on-demand (--on-demand / --on-demand-fallback always)",
                    details=details,
                )
            if code in QUOTA:
                return QuotaError(
                    message,
                    "ask AWS for a higher quota: Service Quotas console > EC2 "
                    "(e.g. 'Running On-Demand G and VT instances'), or use a smaller type",
                    details=details,
                )
            if code in AUTH or status in (401, 403):
                return AuthError(
                    message,
                    "the credentials were refused or lack a permission; check them with "
                    "`aws sts get-caller-identity` and the IAM policy (see the runctl-aws README)",
                    details=details,
                )
            if code in NOT_FOUND or status == 404:
                return NotFoundError(message, details=details)
            if code in SERVER_ERRORS or status >= 500:
                return TransientError(message, "AWS had a server error; runctl retries such failures", details=details)
            return ProviderError(message, details=details)
        return ProviderError(self.scrub(plain_text(f"{where}: {type(exc).__name__}: {exc}")))

    # ------------------------------------------------------------------------------------------ credentials

    def caller_identity(self) -> str:
        reply = self._call("sts", "get_caller_identity")
        return str(reply.get("Arn", ""))

    # ------------------------------------------------------------------------------------------ EC2

    def run_instances(self, params: dict[str, Any]) -> Ec2Instance:
        reply = self._call("ec2", "run_instances", idempotent=True, **params)  # ClientToken makes it safe
        return self._instance(reply["Instances"][0])

    def _instance(self, raw: dict[str, Any]) -> Ec2Instance:
        return Ec2Instance(
            id=raw["InstanceId"],
            state=raw.get("State", {}).get("Name", "unknown"),
            instance_type=raw.get("InstanceType", ""),
            region=self.region or "",
            launch_time=raw.get("LaunchTime"),
            lifecycle=raw.get("InstanceLifecycle", "") or "",
            spot_request_id=raw.get("SpotInstanceRequestId", "") or "",
            state_reason=(raw.get("StateReason") or {}).get("Code", "") or "",
            image_id=raw.get("ImageId", "") or "",
            availability_zone=(raw.get("Placement") or {}).get("AvailabilityZone", "") or "",
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", []) or []},
        )

    def describe_instance(self, instance_id: str) -> Ec2Instance | None:
        """The instance, or None when EC2 does not know it (any more)."""
        try:
            reply = self._call("ec2", "describe_instances", InstanceIds=[instance_id])
        except NotFoundError:
            return None
        for reservation in reply.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                if raw.get("InstanceId") == instance_id:
                    return self._instance(raw)
        return None

    def tagged_instances(self, tag_key: str) -> list[Ec2Instance]:
        """Every instance carrying the tag key ``tag_key`` (any value)."""
        found: list[Ec2Instance] = []
        token: str | None = None
        for _ in range(100):
            kwargs: dict[str, Any] = {"Filters": [{"Name": "tag-key", "Values": [tag_key]}], "MaxResults": 200}
            if token:
                kwargs["NextToken"] = token
            reply = self._call("ec2", "describe_instances", **kwargs)
            for reservation in reply.get("Reservations", []):
                found.extend(self._instance(raw) for raw in reservation.get("Instances", []))
            token = reply.get("NextToken")
            if not token:
                break
        return found

    def terminate_instance(self, instance_id: str) -> str | None:
        """Terminate; returns the new state name, or None when the instance does not exist."""
        try:
            reply = self._call("ec2", "terminate_instances", InstanceIds=[instance_id])
        except NotFoundError:
            return None
        changes = reply.get("TerminatingInstances", [])
        return str(changes[0]["CurrentState"]["Name"]) if changes else None

    def spot_requests(self, *, instance_id: str | None = None, intent_id: str | None = None) -> list[dict[str, Any]]:
        filters = []
        if instance_id:
            filters.append({"Name": "instance-id", "Values": [instance_id]})
        if intent_id:
            filters.append({"Name": "tag:runctl:intent", "Values": [intent_id]})
        reply = self._call("ec2", "describe_spot_instance_requests", Filters=filters)
        return list(reply.get("SpotInstanceRequests", []))

    def cancel_spot_requests(self, request_ids: list[str]) -> None:
        if request_ids:
            try:
                self._call("ec2", "cancel_spot_instance_requests", SpotInstanceRequestIds=request_ids)
            except NotFoundError:
                pass

    def spot_prices(self, instance_types: list[str]) -> dict[str, float]:
        """The lowest current Linux spot price per instance type over the region's zones."""
        from datetime import datetime, timezone

        reply = self._call(
            "ec2",
            "describe_spot_price_history",
            InstanceTypes=instance_types,
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=datetime.now(timezone.utc),
            MaxResults=1000,
        )
        prices: dict[str, float] = {}
        for item in reply.get("SpotPriceHistory", []):
            value = float(item["SpotPrice"])
            kind = item["InstanceType"]
            prices[kind] = min(value, prices.get(kind, value))
        return prices

    def latest_image(self, name_pattern: str, owners: list[str]) -> str | None:
        reply = self._call(
            "ec2",
            "describe_images",
            Owners=owners,
            Filters=[{"Name": "name", "Values": [name_pattern]}, {"Name": "state", "Values": ["available"]}],
        )
        images = sorted(reply.get("Images", []), key=lambda image: image.get("CreationDate", ""))
        return str(images[-1]["ImageId"]) if images else None

    def root_device_name(self, image_id: str) -> str:
        try:
            reply = self._call("ec2", "describe_images", ImageIds=[image_id])
        except NotFoundError:
            return "/dev/xvda"
        images = reply.get("Images", [])
        return str(images[0].get("RootDeviceName") or "/dev/xvda") if images else "/dev/xvda"

    # ------------------------------------------------------------------------------------------ SSM

    def get_parameter(self, name: str) -> str | None:
        try:
            reply = self._call("ssm", "get_parameter", Name=name)
        except NotFoundError:
            return None
        return str(reply["Parameter"]["Value"])

    def ping_status(self, instance_id: str) -> str | None:
        """SSM's view of the instance's agent ("Online", "ConnectionLost", ...), None when not registered."""
        reply = self._call(
            "ssm", "describe_instance_information", Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )
        for item in reply.get("InstanceInformationList", []):
            if item.get("InstanceId") == instance_id:
                return str(item.get("PingStatus", "Unknown"))
        return None

    def send_command(self, instance_id: str, script: str, timeout: float, comment: str) -> str:
        reply = self._call(
            "ssm",
            "send_command",
            idempotent=False,
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [script], "executionTimeout": [str(max(1, int(timeout)))]},
            Comment=comment[:100],
            TimeoutSeconds=max(30, int(timeout)),
        )
        return str(reply["Command"]["CommandId"])

    def command_result(self, command_id: str, instance_id: str) -> CommandResult | None:
        """The command's result once it has ended, None while it is pending/running (or not yet registered)."""
        try:
            reply = self._call("ssm", "get_command_invocation", CommandId=command_id, InstanceId=instance_id)
        except NotFoundError:
            return None
        status = str(reply.get("Status", ""))
        if status not in TERMINAL_COMMAND:
            return None
        return CommandResult(
            command_id=command_id,
            status=status,
            exit_code=int(reply.get("ResponseCode", -1)),
            stdout=str(reply.get("StandardOutputContent", "")),
            stderr=str(reply.get("StandardErrorContent", "")),
        )

    def run_command(
        self, instance_id: str, script: str, timeout: float | None = None, comment: str = "runctl"
    ) -> CommandResult:
        """Send a shell script with AWS-RunShellScript and poll until it ends (bounded by ``timeout``)."""
        limit = timeout or self.settings.command_timeout
        command_id = self.send_command(instance_id, script, limit, comment)
        deadline = time.monotonic() + limit + 30
        delay = self.settings.ssm_poll_interval
        while True:
            result = self.command_result(command_id, instance_id)
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise TransientError(
                    f"SSM command {command_id} on {instance_id} did not finish in {limit:g}s",
                    "the instance may be overloaded; check it in the SSM console",
                )
            self._sleep(delay)
            delay = min(delay * 1.5, 2.0)

    # ------------------------------------------------------------------------------------------ S3

    def bucket_error(self, bucket: str) -> RunctlError | None:
        """None when the bucket is usable, else the error (NotFoundError, AuthError, ...). Learns its region."""
        try:
            self.bucket_region(bucket, fresh=True)
        except RunctlError as exc:
            return exc
        return None

    def bucket_region(self, bucket: str, fresh: bool = False) -> str:
        """The bucket's region, from HeadBucket's ``x-amz-bucket-region`` header (sent by S3 also when the
        request went to another region and was answered 301/400, as the HeadBucket API reference documents)."""
        if bucket in self.bucket_regions and not fresh:
            return self.bucket_regions[bucket]
        from botocore.exceptions import ClientError

        client = self.client("s3")
        found = ""
        for attempt in range(1, self.settings.retry_attempts + 1):
            try:
                reply = client.head_bucket(Bucket=bucket)
                found = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region", "")
                break
            except ClientError as exc:
                found = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region", "")
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                if found and status in (301, 307, 400):
                    break
                error = self._map(exc, "s3", "HeadBucket")
                if not isinstance(error, TransientError) or attempt >= self.settings.retry_attempts:
                    raise error from None
            except Exception as exc:
                error = self._map(exc, "s3", "HeadBucket")
                if not isinstance(error, TransientError) or attempt >= self.settings.retry_attempts:
                    raise error from None
            self._sleep(self.settings.retry_base_delay * (2 ** (attempt - 1)))
        self.bucket_regions[bucket] = found or str(self.region)
        if self._region_cache is not None and found:
            try:
                self._region_cache.parent.mkdir(parents=True, exist_ok=True)
                self._region_cache.write_text(json.dumps(self.bucket_regions))
            except OSError:
                pass
        return self.bucket_regions[bucket]

    def _s3(self, operation: str, bucket: str, **kwargs: Any) -> Any:
        """An S3 call on ``bucket``, made in the bucket's own region."""
        return self._call("s3", operation, region=self.bucket_region(bucket), Bucket=bucket, **kwargs)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        self._s3("put_object", bucket, Key=key, Body=data)

    def object_size(self, bucket: str, key: str) -> int | None:
        try:
            reply = self._s3("head_object", bucket, Key=key)
        except NotFoundError:
            return None
        return int(reply.get("ContentLength", 0))

    def get_bytes(self, bucket: str, key: str, byte_range: str | None = None) -> bytes | None:
        kwargs: dict[str, Any] = {"Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        try:
            reply = self._s3("get_object", bucket, **kwargs)
        except NotFoundError:
            return None
        except ProviderError as exc:
            if exc.details.get("aws_code") == "InvalidRange":
                return b""
            raise
        return bytes(reply["Body"].read())

    def list_objects(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        for _ in range(1000):
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            reply = self._s3("list_objects_v2", bucket, **kwargs)
            yield from reply.get("Contents", [])
            token = reply.get("NextContinuationToken")
            if not reply.get("IsTruncated") or not token:
                return

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = [item["Key"] for item in self.list_objects(bucket, prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._s3("delete_objects", bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def delete_object(self, bucket: str, key: str) -> None:
        self._s3("delete_object", bucket, Key=key)

    def presign_get(self, bucket: str, key: str, expires: int = 900) -> str:
        return str(
            self.client("s3", self.bucket_region(bucket)).generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
            )
        )

    def presign_put(self, bucket: str, key: str, expires: int = 900) -> str:
        """A presigned PUT of one key (the instance uploads an answer too large for SSM's output)."""
        return str(
            self.client("s3", self.bucket_region(bucket)).generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
            )
        )

    def presign_post(self, bucket: str, prefix: str, expires: int) -> dict[str, Any]:
        """A presigned POST letting the holder upload any key under ``prefix`` (and nothing else)."""
        reply = self.client("s3", self.bucket_region(bucket)).generate_presigned_post(
            bucket, prefix + "${filename}", Conditions=[["starts-with", "$key", prefix]], ExpiresIn=expires
        )
        return {"url": reply["url"], "fields": reply["fields"], "prefix": prefix}

    # ------------------------------------------------------------------------------------------ Price List

    def list_price(self, instance_type: str, region: str) -> float | None:
        """The Linux on-demand list price of ``instance_type`` in ``region`` (USD/h) from the Price List Query
        API (its endpoint is in us-east-1), None when it lists no such product."""
        filters = {
            "instanceType": instance_type,
            "regionCode": region,
            "operatingSystem": "Linux",
            "tenancy": "Shared",
            "preInstalledSw": "NA",
            "capacitystatus": "Used",
        }
        reply = self._call(
            "pricing",
            "get_products",
            region="us-east-1",
            ServiceCode="AmazonEC2",
            FormatVersion="aws_v1",
            Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            MaxResults=10,
        )
        for raw in reply.get("PriceList", []):
            product = json.loads(raw) if isinstance(raw, str) else raw
            for term in (product.get("terms", {}).get("OnDemand") or {}).values():
                for dimension in (term.get("priceDimensions") or {}).values():
                    usd = (dimension.get("pricePerUnit") or {}).get("USD")
                    if usd is not None and dimension.get("unit", "Hrs") == "Hrs" and float(usd) > 0:
                        return float(usd)
        return None

    # ------------------------------------------------------------------------------------------ IAM

    def instance_profile_roles(self, name: str) -> list[str] | None:
        """Role names in the instance profile, None when it does not exist."""
        try:
            reply = self._call("iam", "get_instance_profile", InstanceProfileName=name)
        except NotFoundError:
            return None
        return [str(role["RoleName"]) for role in reply["InstanceProfile"].get("Roles", [])]

    def role_policies(self, role: str) -> list[str]:
        reply = self._call("iam", "list_attached_role_policies", RoleName=role)
        return [str(p["PolicyArn"]) for p in reply.get("AttachedPolicies", [])]

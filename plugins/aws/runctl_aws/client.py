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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runctl_aws.aws_errors import TERMINAL_COMMAND, map_error, scrub_urls
from runctl_aws.client_s3 import S3Calls
from runctl_aws.models import CommandResult, Ec2Instance
from runctl_aws.settings import AwsSettings, resolve_region
from runctl_core.errors import (
    CredentialsError,
    NotFoundError,
    RunctlError,
    TransientError,
)

_LOADER: Any = None


def _shared_loader() -> Any:
    global _LOADER
    if _LOADER is None:
        from botocore.loaders import create_loader

        _LOADER = create_loader()
    return _LOADER


class AwsClient(S3Calls):
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
        return map_error(exc, service, operation, self.scrub)

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

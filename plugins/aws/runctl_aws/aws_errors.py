"""How AWS errors become runctl's: the error-code tables (throttling, capacity, quota, auth, not found, server),
:func:`map_error`, and the scrubbing of URLs, credentials and HTML pages from messages."""

from __future__ import annotations

import re
from collections.abc import Callable

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


def map_error(exc: Exception, service: str, operation: str, scrub: Callable[[str], str]) -> RunctlError:
    """A botocore exception (or anything else) as runctl's error type, its message scrubbed."""
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
        message = scrub(plain_text(f"{where}: {code}: {err.get('Message', '')}".rstrip(": ")))
        details: dict[str, object] = {"aws_code": code, "operation": where}
        if code in THROTTLING or status == 429:
            details["throttled"] = True
            return TransientError(message, "AWS is throttling requests; runctl retries with backoff", details=details)
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
    return ProviderError(scrub(plain_text(f"{where}: {type(exc).__name__}: {exc}")))

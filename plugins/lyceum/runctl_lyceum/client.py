"""Every call runctl makes to Lyceum: the REST API (httpx), the output stream (server-sent events) and the storage
bucket (S3-compatible, boto3 imported lazily). Typed methods, runctl's error types, nothing else.

Error mapping: 401/403 -> AuthError (hint names LYCEUM_API_KEY), 402 -> QuotaError (credits), 404 ->
NotFoundError, 400/413/422 -> UsageError with the API's ``detail``, 429/5xx and connection failures ->
TransientError (with Retry-After). Idempotent GETs are retried here a few times; POSTs never (the API has no
idempotency token). The key is sent only as ``Authorization: Bearer`` to the API's own host and is scrubbed from
every message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from runctl_core.errors import (
    AuthError,
    NotFoundError,
    PrerequisiteError,
    ProviderError,
    QuotaError,
    RunctlError,
    TransientError,
    UsageError,
)
from runctl_lyceum.auth import KEY_HINT, TokenSource
from runctl_lyceum.models import (
    ExecutionRecord,
    ExecutionStarted,
    ExecutionStatus,
    LogEntry,
    MachineType,
    StorageCredentials,
    Workload,
)

if TYPE_CHECKING:
    import httpx

# fields of a start request that the user controls: a 422 about them is a usage error, about others a runctl bug
USER_FIELDS = {"timeout", "execution_type", "docker_image_ref", "docker_run_cmd", "requirements_content"}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def format_detail(detail: Any) -> str:
    """FastAPI's ``detail``: a string, or a list of ``{loc, msg, type}`` validation errors."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, dict):
        return json.dumps(detail)
    return str(detail)


def _detail_fields(detail: Any) -> set[str]:
    fields: set[str] = set()
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict):
                fields.update(str(p) for p in item.get("loc", []) if p != "body")
    return fields


class LyceumClient:
    """Lyceum's REST API under ``base_url`` (``.../api/v2/external``)."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        org: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        token: TokenSource | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._token = token  # a CLI login: refreshed before a request when it is about to expire (auth.py)
        self._retries = retries
        self._base_delay = base_delay
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "runctl-lyceum/0.1"}
        if org:
            headers["X-Org-Slug"] = org
        self._http = httpx.Client(timeout=timeout, headers=headers, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    # -------------------------------------------------------------------------------- plumbing

    def scrub(self, text: str) -> str:
        """``text`` without the API key in it (error bodies could echo a header back)."""
        if self._key is not None:
            secret = self._key.get_secret_value()
            if secret and secret in text:
                text = text.replace(secret, "****")
        return text

    def _auth(self) -> dict[str, str]:
        if self._token is not None:
            self._key = self._token.current()
        if self._key is None:
            from runctl_core.errors import CredentialsError

            raise CredentialsError("no Lyceum API key found", KEY_HINT)
        return {"Authorization": f"Bearer {self._key.get_secret_value()}"}

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        import httpx

        url = f"{self.base_url}{path}"
        idempotent = method == "GET"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, url, json=json_body, params=params, headers=self._auth())
            except httpx.TimeoutException as exc:
                error: RunctlError = TransientError(
                    f"Lyceum API timed out on {method} {path}", "try again", details={"error": type(exc).__name__}
                )
            except httpx.HTTPError as exc:
                error = TransientError(
                    f"cannot reach the Lyceum API ({type(exc).__name__}) on {method} {path}",
                    f"check the network and the base URL ({self.base_url})",
                )
            else:
                if response.status_code in ok:
                    return response
                error = self._error(method, path, response)
            if not (idempotent and isinstance(error, TransientError) and attempt <= self._retries):
                raise error
            delay = error.retry_after if error.retry_after is not None else self._base_delay * 2 ** (attempt - 1)
            self._sleep(min(delay, 30.0))

    def _error(self, method: str, path: str, response: httpx.Response) -> RunctlError:
        status = response.status_code
        try:
            body = response.json()
            raw_detail = body.get("detail", body) if isinstance(body, dict) else body
        except ValueError:
            raw_detail = response.text[:500]
        detail = self.scrub(format_detail(raw_detail))
        what = f"Lyceum API {method} {path}: HTTP {status}"
        details: dict[str, object] = {"status": status, "detail": detail}
        if status in (401, 403):
            return AuthError(f"{what}: {detail or 'not authorised'}", KEY_HINT, details=details)
        if status == 402:
            return QuotaError(
                f"{what}: {detail or 'insufficient credits'}",
                "top up credits at https://dashboard.lyceum.technology",
                details=details,
            )
        if status == 404:
            return NotFoundError(f"{what}: {detail or 'not found'}", "", details=details)
        if status == 413:
            return UsageError(
                f"{what}: the request is too large ({detail})",
                "send fewer files: add large ones to .runctlignore and put data into Lyceum storage",
                details=details,
            )
        if status in (400, 422):
            fields = _detail_fields(raw_detail)
            if status == 400 or not fields or fields & USER_FIELDS:
                return UsageError(
                    f"{what}: {detail}",
                    "check --instance-type/--gpu (runctl price --provider lyceum) and --timeout",
                    details=details,
                )
            return ProviderError(
                f"{what}: Lyceum refused runctl's request: {detail}",
                "this looks like a runctl-lyceum bug or an API change; please report it",
                details=details,
            )
        if status == 429 or status >= 500:
            return TransientError(
                f"{what}: {detail or 'try again later'}",
                "Lyceum is busy or down; try again later",
                retry_after=_retry_after(response.headers.get("Retry-After")),
                details=details,
            )
        return ProviderError(f"{what}: {detail}", "", details=details)

    @staticmethod
    def _parse(model: Any, data: Any, what: str) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(
                f"unexpected answer from Lyceum to {what}: {exc.error_count()} problem(s)",
                "the API may have changed; please report it",
            ) from exc

    # -------------------------------------------------------------------------------- account, hardware

    def machine_types(self) -> list[MachineType]:
        data = self._request("GET", "/machine-types").json()
        items = data.get("machine_types", []) if isinstance(data, dict) else []
        return [self._parse(MachineType, item, "GET /machine-types") for item in items]

    def available_hardware(self) -> list[str]:
        """Profiles this account may use; ``[]`` when the API does not say (then every profile is allowed)."""
        try:
            data = self._request("GET", "/user/quotas/available-hardware").json()
        except NotFoundError:
            return []
        profiles = data.get("available_hardware_profiles", []) if isinstance(data, dict) else []
        return [p for p in profiles if isinstance(p, str)]

    def whoami(self) -> str:
        """The org these credentials act as (cheap, read-only); falls back to listing machine types."""
        try:
            data = self._request("GET", "/user/org").json()
        except NotFoundError:
            self.machine_types()
            return ""
        if isinstance(data, dict):
            return str(data.get("slug") or data.get("name") or data.get("org_id") or "")
        return ""

    # -------------------------------------------------------------------------------- executions

    def start_python(self, body: dict[str, Any]) -> ExecutionStarted:
        data = self._request("POST", "/execution/streaming/start", json_body=body).json()
        return self._parse(ExecutionStarted, data, "POST /execution/streaming/start")

    def start_image(self, body: dict[str, Any]) -> ExecutionStarted:
        data = self._request("POST", "/execution/image/start", json_body=body).json()
        return self._parse(ExecutionStarted, data, "POST /execution/image/start")

    def execution_status(self, execution_id: str) -> ExecutionStatus:
        data = self._request("GET", f"/execution/streaming/{execution_id}/status").json()
        return self._parse(ExecutionStatus, data, "GET /execution/streaming/{id}/status")

    def execution(self, execution_id: str) -> ExecutionRecord:
        data = self._request("GET", f"/execution/{execution_id}").json()
        return self._parse(ExecutionRecord, data, "GET /execution/{id}")

    def execution_logs(self, execution_id: str, limit: int = 10000, hours: int = 168) -> list[LogEntry]:
        data = self._request("GET", f"/logs/execution/{execution_id}", params={"limit": limit, "hours": hours}).json()
        items = data.get("logs", []) if isinstance(data, dict) else []
        return [self._parse(LogEntry, item, "GET /logs/execution/{id}") for item in items]

    def abort(self, execution_id: str) -> bool:
        """Hard-stop an execution. False when Lyceum does not know it (any more)."""
        try:
            self._request("POST", f"/workloads/abort/{execution_id}")
        except NotFoundError:
            return False
        return True

    def stop(self, execution_id: str) -> bool:
        """Gracefully stop an execution. False when Lyceum does not know it (any more)."""
        try:
            self._request("POST", f"/workloads/stop/{execution_id}")
        except NotFoundError:
            return False
        return True

    def workloads(self) -> list[Workload]:
        data = self._request("GET", "/workloads/list").json()
        items = data if isinstance(data, list) else (data.get("workloads", []) if isinstance(data, dict) else [])
        return [self._parse(Workload, item, "GET /workloads/list") for item in items]

    def stream_url(self, execution_id: str, streaming_url: str | None) -> str:
        if streaming_url:
            return streaming_url
        root = self.base_url.split("/api/v2/")[0]
        return f"{root}/api/v1/stream/{execution_id}"

    def stream_events(self, url: str, read_timeout: float) -> Iterator[dict[str, Any]]:
        """The execution's server-sent events (each ``data:`` line's JSON) until the stream ends.

        The streaming URL is a per-execution address handed out by the API; like Lyceum's CLI, runctl does not
        send the API key to it. Raises NotFoundError (404), TransientError (network, 5xx).
        """
        import httpx

        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            with httpx.stream("POST", url, headers=headers, timeout=httpx.Timeout(10.0, read=read_timeout)) as response:
                if response.status_code == 404:
                    raise NotFoundError("Lyceum output stream not found", "the execution may have ended long ago")
                if response.status_code != 200:
                    raise TransientError(f"Lyceum output stream answered HTTP {response.status_code}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        yield event
        except httpx.HTTPError as exc:
            raise TransientError(f"Lyceum output stream broke ({type(exc).__name__})") from exc

    # -------------------------------------------------------------------------------- storage

    def storage_credentials(self) -> StorageCredentials:
        data = self._request("POST", "/storage/credentials").json()
        return self._parse(StorageCredentials, data, "POST /storage/credentials")


class StorageClient:
    """The account's S3-compatible bucket, with the temporary credentials from ``POST /storage/credentials``."""

    def __init__(self, creds: StorageCredentials) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise PrerequisiteError(
                "reading or writing Lyceum storage needs boto3, which is not installed",
                "pip install 'runctl-lyceum[storage]'",
            ) from exc
        self.bucket = creds.bucket_name
        token = creds.session_token.get_secret_value() if creds.session_token else None
        self._s3 = boto3.client(
            "s3",
            endpoint_url=creds.endpoint_url(),
            aws_access_key_id=creds.access_key.get_secret_value(),
            aws_secret_access_key=creds.secret_key.get_secret_value(),
            aws_session_token=token,
            region_name=creds.region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 3}),
        )

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                raise AuthError(f"Lyceum storage refused {what}: {code}", KEY_HINT) from None
            if code in ("NoSuchKey", "NoSuchBucket", "404"):
                raise NotFoundError(f"Lyceum storage: {what}: {code}") from None
            if status == 429 or status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise TransientError(f"Lyceum storage failed {what}: {code}") from None
            raise ProviderError(f"Lyceum storage failed {what}: {code}") from None
        except BotoCoreError as exc:
            raise TransientError(f"Lyceum storage unreachable during {what} ({type(exc).__name__})") from None

    def list(self, prefix: str) -> list[dict[str, Any]]:
        """Objects under ``prefix``: ``{Key, Size, LastModified}``."""

        def run() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(page.get("Contents", []))
            return found

        result: list[dict[str, Any]] = self._call(f"listing {prefix}", run)
        return result

    def download(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._call(f"downloading {key}", lambda: self._s3.download_file(self.bucket, key, str(dest)))

    def upload(self, path: Path, key: str) -> None:
        self._call(f"uploading {key}", lambda: self._s3.upload_file(str(path), self.bucket, key))

"""The S3 calls of :class:`runctl_aws.client.AwsClient` (a mixin): every call on a bucket is made in the bucket's
own region on its regional endpoint, and presigned URLs are signed for it, so that a bucket in another region
(or a new one outside us-east-1, which answers 307 on the global name) works from the instance too."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runctl_aws.settings import AwsSettings
from runctl_core.errors import NotFoundError, ProviderError, RunctlError, TransientError


class S3Calls:
    """S3 methods; the plumbing (``client``, ``_call``, ``_map``) is :class:`runctl_aws.client.AwsClient`'s."""

    settings: AwsSettings
    region: str | None
    bucket_regions: dict[str, str]
    _region_cache: Path | None
    _sleep: Callable[[float], None]

    def client(self, service: str, region: str | None = None) -> Any:
        raise NotImplementedError

    def _call(
        self, service: str, operation: str, *, idempotent: bool = True, region: str | None = None, **kwargs: Any
    ) -> Any:
        raise NotImplementedError

    def _map(self, exc: Exception, service: str, operation: str) -> RunctlError:
        raise NotImplementedError

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

    def presign_delete(self, bucket: str, key: str, expires: int = 900) -> str:
        """A presigned DELETE of one key (the instance removes a staged object as soon as it has read it). A presigned
        URL grants the one operation it was signed for, DeleteObject included (boto3 ``generate_presigned_url`` with
        ``ClientMethod="delete_object"``; S3 User Guide, "Sharing objects with presigned URLs"), within the signer's
        own rights (runctl's ``s3:DeleteObject`` on the bucket, README setup step 5)."""
        return str(
            self.client("s3", self.bucket_region(bucket)).generate_presigned_url(
                "delete_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
            )
        )

    def presign_post(self, bucket: str, prefix: str, expires: int) -> dict[str, Any]:
        """A presigned POST letting the holder upload any key under ``prefix`` (and nothing else)."""
        reply = self.client("s3", self.bucket_region(bucket)).generate_presigned_post(
            bucket, prefix + "${filename}", Conditions=[["starts-with", "$key", prefix]], ExpiresIn=expires
        )
        return {"url": reply["url"], "fields": reply["fields"], "prefix": prefix}

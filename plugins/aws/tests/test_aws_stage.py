"""The AWS ``stage`` hook (issue 15.3): the first sync's bundle is uploaded to S3 while the instance boots; the sync
of the same project then fetches it (no upload once the instance answers), and a project that changed in between is
synced as it is at sync time (the staged object is simply not used, and terminate deletes it)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import boto3
import pytest
from aws_standin import AwsStandIn
from aws_testlib import BUCKET, aws_settings

from runctl_core.files import scan_project
from runctl_core.models import Instance, InstanceSpec, InstanceState, ProviderContext
from runctl_core.plugins import Provider, load_provider
from runctl_core.retry import RetryPolicy


@pytest.fixture
def provider(standin: AwsStandIn, tmp_path: Path) -> Provider:
    ctx = ProviderContext(
        provider="aws", state_dir=tmp_path / "state", settings=aws_settings(standin.url), owner="tester"
    )
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    return load_provider("aws", ctx, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))


def _created(provider: Provider) -> Instance:
    spec = InstanceSpec(intent_id=f"intent-{uuid.uuid4().hex[:10]}", owner="tester", instance_type="t3.micro")
    return provider.create(spec)


def _ready(provider: Provider, created: Instance) -> Instance:
    deadline = time.monotonic() + 60
    while True:
        current = provider.ready(created)
        if current.state is not InstanceState.PENDING:
            return current
        assert time.monotonic() < deadline, "the stand-in instance never became ready"
        time.sleep(0.05)


def _staged(standin: AwsStandIn, instance_id: str) -> list[str]:
    reply = boto3.client("s3", endpoint_url=standin.url).list_objects_v2(
        Bucket=BUCKET, Prefix=f"runctl/_staging/{instance_id}/"
    )
    return [o["Key"] for o in reply.get("Contents", [])]


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text("print('v1')\n")
    (root / "data.txt").write_text("one\n")
    return root


def test_the_staged_bundle_is_what_sync_applies_without_uploading(
    provider: Provider, standin: AwsStandIn, tmp_path: Path
) -> None:
    root = _project(tmp_path)
    created = _created(provider)
    standin.calls.clear()
    assert provider.stage(created, scan_project(root))  # while it boots: S3 only, nothing asked of the instance
    assert standin.calls == [("s3", "PutObject")] and len(_staged(standin, created.id)) == 1
    instance = _ready(provider, created)
    standin.calls.clear()
    result = provider.sync(instance, scan_project(root))
    assert result.files_sent == 2
    assert {op for _, op in standin.calls} == {"SendCommand", "GetCommandInvocation"}  # one SSM command, no upload
    remote = standin.instance_dir(instance.id) / "runctl" / "project"
    assert (remote / "train.py").read_text() == "print('v1')\n" and (remote / "data.txt").read_text() == "one\n"
    assert _staged(standin, instance.id) == []  # the instance deleted the bundle after reading it
    provider.terminate(instance)


def test_a_file_changed_after_staging_is_synced_as_it_is_at_sync_time(
    provider: Provider, standin: AwsStandIn, tmp_path: Path
) -> None:
    root = _project(tmp_path)
    created = _created(provider)
    provider.stage(created, scan_project(root))
    (root / "train.py").write_text("print('v2')\n")  # edited while the instance booted
    instance = _ready(provider, created)
    standin.calls.clear()
    provider.sync(instance, scan_project(root))
    assert ("s3", "PutObject") in standin.calls  # the staged bundle was not this project's: sync uploaded its own
    remote = standin.instance_dir(instance.id) / "runctl" / "project"
    assert (remote / "train.py").read_text() == "print('v2')\n"
    assert len(_staged(standin, instance.id)) == 1  # the unused staged bundle, until terminate
    provider.terminate(instance)
    assert _staged(standin, instance.id) == []

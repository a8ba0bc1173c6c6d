"""Hook-level tests of the AWS provider against the stand-in: the details the CLI tests do not pin down."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from aws_standin import DLAMI_ID, AwsStandIn
from aws_testlib import BUCKET, DUMMY_KEY_ID, DUMMY_SECRET, aws_settings
from pydantic import ValidationError

from runctl_aws import prices
from runctl_aws.client import AwsClient
from runctl_aws.models import AwsSettings
from runctl_core.errors import CapacityError, RunctlError, UsageError
from runctl_core.files import scan_project
from runctl_core.models import (
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    PriceQuery,
    ProviderContext,
)
from runctl_core.plugins import Provider, load_provider
from runctl_core.retry import RetryPolicy

T = TypeVar("T")


class Warnings:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.answer = False

    def update(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        self.lines.append(message)

    def confirm(self, question: str) -> bool:
        self.lines.append("? " + question)
        return self.answer


@pytest.fixture
def progress() -> Warnings:
    return Warnings()


@pytest.fixture
def make_provider(standin: AwsStandIn, tmp_path: Path, progress: Warnings) -> Callable[..., Provider]:
    def make(interactive: bool = False, **extra: Any) -> Provider:
        ctx = ProviderContext(
            provider="aws",
            state_dir=tmp_path / "state",
            settings=aws_settings(standin.url, **extra),
            owner="tester",
            interactive=interactive,
            progress=progress,
        )
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
        return load_provider("aws", ctx, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))

    return make


@pytest.fixture
def provider(make_provider: Callable[..., Provider]) -> Provider:
    return make_provider()


def _spec(**extra: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "intent_id": f"intent-{uuid.uuid4().hex[:10]}",
        "owner": "tester",
        "job_id": f"job-{uuid.uuid4().hex[:6]}",
        "instance_type": "t3.micro",
    }
    fields.update(extra)
    return InstanceSpec(**fields)


def _wait(poll: Callable[[], T], done: Callable[[T], bool], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting; last: {value!r}"
        time.sleep(0.05)


def _ready(provider: Provider, spec: InstanceSpec) -> Instance:
    created = provider.create(spec)
    return _wait(lambda: provider.ready(created), lambda i: i.state is not InstanceState.PENDING)


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _finish(provider: Provider, instance: Instance, status: JobStatus) -> JobStatus:
    return _wait(lambda: provider.status(instance, status).job or status, lambda s: s.state.terminal)


def test_ready_never_sleeps_and_waits_for_ssm(
    provider: Provider, standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standin, "boot_delay", 2.0)  # long enough that a slow machine still sees each stage
    monkeypatch.setattr(standin, "ssm_delay", 1.0)
    created = provider.create(_spec())
    assert created.state is InstanceState.PENDING and created.id.startswith("i-")
    messages = []
    slept: list[float] = []
    real_sleep = time.sleep
    main = threading.main_thread()

    def sleep(seconds: float) -> None:  # the stand-in's own threads keep sleeping normally
        if threading.current_thread() is main:
            slept.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    for _ in range(400):
        current = provider.ready(created)
        assert slept == []  # one check, no waiting inside (asserted without timing the machine)
        messages.append(current.message)
        if current.state is InstanceState.RUNNING:
            break
        real_sleep(0.02)
    assert current.state is InstanceState.RUNNING
    assert any("EC2 instance is starting" in m for m in messages)
    assert any("waiting for the SSM agent" in m for m in messages)
    assert ("ssm", "SendCommand") not in standin.calls  # ready = SSM online; tools go with the first command
    provider.terminate(created)


def test_create_is_idempotent_per_intent_and_tags_everything(provider: Provider, standin: AwsStandIn) -> None:
    spec = _spec()
    first = provider.create(spec)
    again = provider.create(spec)
    assert first.id == again.id
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    (raw,) = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags["runctl:intent"] == spec.intent_id and tags["runctl:job"] == spec.job_id
    assert tags["runctl:owner"] == "tester" and tags["Name"] == f"runctl-{spec.job_id}" and tags["runctl:created"]
    volumes = ec2.describe_volumes()["Volumes"]
    assert volumes and all({t["Key"] for t in v.get("Tags", [])} >= {"runctl:job", "runctl:owner"} for v in volumes)
    attribute = ec2.describe_instance_attribute(InstanceId=first.id, Attribute="instanceInitiatedShutdownBehavior")
    assert attribute["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    provider.terminate(first)


def _listed(ec2: Any, instance_id: str) -> dict[str, Any]:
    """The instance from EC2's unfiltered listing (a call naming a new id may answer NotFound for a while)."""
    return next(
        i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"] if i["InstanceId"] == instance_id
    )


def test_default_images_per_family_and_override(provider: Provider, standin: AwsStandIn) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=standin.url)
    al2023 = ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    arm = ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
    cases = {"t3.micro": al2023["Parameter"]["Value"], "g5.xlarge": DLAMI_ID, "m7g.large": arm["Parameter"]["Value"]}
    for instance_type, image in cases.items():
        created = provider.create(_spec(instance_type=instance_type))
        raw = _listed(ec2, created.id)
        assert raw["ImageId"] == image, instance_type
        provider.terminate(created)
    custom = provider.create(_spec(image="ami-0123456789abcdef0", gpu="A10G", instance_type=None))
    raw = _listed(ec2, custom.id)
    assert raw["ImageId"] == "ami-0123456789abcdef0" and raw["InstanceType"] == "g5.xlarge"
    assert custom.gpu == "A10G" and custom.gpu_count == 1
    provider.terminate(custom)


def test_fallback_ask_uses_confirm_and_refusal_raises(
    make_provider: Callable[..., Provider], standin: AwsStandIn, progress: Warnings
) -> None:
    provider = make_provider(interactive=True)
    standin.spot_prices = {"g4dn.xlarge": 0.2}
    standin.faults.refuse_spot = 2
    standin.faults.refuse_spot_code = "SpotMaxPriceTooLow"
    with pytest.raises(CapacityError) as refused:
        provider.create(_spec(instance_type="g4dn.xlarge", spot=True, on_demand_fallback="ask", max_price=0.1))
    assert "SpotMaxPriceTooLow" in refused.value.message
    assert progress.lines and progress.lines[0].startswith("? ") and "$0.5260/h" in progress.lines[0]
    assert "2.6x" in progress.lines[0]
    progress.answer = True
    created = provider.create(_spec(instance_type="g4dn.xlarge", spot=True, on_demand_fallback="ask"))
    assert not created.spot and created.hourly_price == pytest.approx(0.526)
    assert any("falling back to on-demand" in line for line in progress.lines)
    provider.terminate(created)


def test_sync_sends_changes_and_deletes_removed_files(provider: Provider, standin: AwsStandIn, tmp_path: Path) -> None:
    instance = _ready(provider, _spec())
    root = _project(tmp_path, {"train.py": "print('hi')\n", "pkg/a.py": "A = 1\n", "pkg/b.py": "B = 2\n"})
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    first = provider.sync(instance, scan_project(root))
    assert first.files_sent == 4 and first.files_total == 4
    remote = standin.instance_dir(instance.id) / "runctl" / "project"
    assert (remote / "pkg" / "b.py").read_text() == "B = 2\n"
    assert (remote / "run.sh").stat().st_mode & 0o777 == 0o755
    (root / "pkg" / "b.py").unlink()
    (root / "pkg" / "a.py").write_text("A = 3\n")
    second = provider.sync(instance, scan_project(root))
    assert (second.files_sent, second.files_deleted) == (1, 1)
    assert not (remote / "pkg" / "b.py").exists() and (remote / "pkg" / "a.py").read_text() == "A = 3\n"
    # each bundle was deleted by the instance as soon as it had read it (a presigned DELETE: no round trip here)
    assert "Contents" not in boto3.client("s3", endpoint_url=standin.url).list_objects_v2(
        Bucket=BUCKET, Prefix=f"runctl/_staging/{instance.id}/"
    )
    assert ("s3", "DeleteObject") not in standin.calls
    standin.calls.clear()
    unchanged = provider.sync(instance, scan_project(root))  # the laptop remembers the instance's manifest
    assert unchanged.files_sent == 0 and standin.calls == []
    provider.terminate(instance)
    assert "Contents" not in boto3.client("s3", endpoint_url=standin.url).list_objects_v2(
        Bucket=BUCKET, Prefix=f"runctl/_staging/{instance.id}/"
    )


LOG_SCRIPT = """\
import os, pathlib, sys
for i in range(900):
    print(f"line {i:04d} \u00e9\u00e8\u20ac {'x' * 40}")
pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"], "ckpt-0001.json").write_text("{}")
"""


def test_logs_by_offset_over_ssm_then_s3_without_repeats_or_gaps(
    provider: Provider, standin: AwsStandIn, tmp_path: Path
) -> None:
    instance = _ready(provider, _spec())
    provider.sync(instance, scan_project(_project(tmp_path, {"log.py": LOG_SCRIPT})))
    status = provider.train(instance, JobSpec(job_id="job-logs01", script="log.py"))
    final = _finish(provider, instance, status)
    assert final.state is JobState.SUCCEEDED
    expected = "".join(f"line {i:04d} \u00e9\u00e8\u20ac {'x' * 40}\n" for i in range(900))
    text, offset, chunks = "", 0, 0
    while chunks < 50:  # over SSM: small chunks in SSM's output (24,000 characters at most), large ones via S3
        chunk = provider.logs(instance, final, offset)
        assert chunk is not None and chunk.offset == offset
        text += chunk.data
        offset, chunks = chunk.next_offset, chunks + 1
        if chunk.complete:
            break
    assert text.startswith(expected)  # then the --after hook's own line (checkpoints uploaded to S3)
    # once the instance is gone the log comes from S3, from any offset, with the same bytes
    provider.terminate(instance)
    middle = len(expected[:20000].encode())  # a character boundary past the first SSM chunks
    rest, offset = "", middle
    for _ in range(10):
        chunk = provider.logs(instance, final, offset)
        assert chunk is not None and chunk.offset == offset
        rest += chunk.data
        offset = chunk.next_offset
        if chunk.complete:
            break
    assert chunk is not None and chunk.complete
    assert rest.encode() == text.encode()[middle:]
    assert provider.logs(instance, final, offset).data == ""  # type: ignore[union-attr]


def test_terminate_on_exit_and_status_from_s3(provider: Provider, standin: AwsStandIn, tmp_path: Path) -> None:
    instance = _ready(provider, _spec())
    provider.sync(instance, scan_project(_project(tmp_path, {"job.py": LOG_SCRIPT})))
    status = provider.train(instance, JobSpec(job_id="job-exit01", script="job.py", terminate_on_exit=True))
    report = _wait(lambda: provider.status(instance, status), lambda r: r.instance.state is InstanceState.TERMINATED)
    assert report.job is not None and report.job.state is JobState.SUCCEEDED and report.job.exit_code == 0
    raw = standin.ec2_instance(instance.id)
    assert raw.state_reason.code == "Client.InstanceInitiatedShutdown"  # it ended itself (fake `shutdown`)
    names = {c.name for c in provider.list_checkpoints(instance, report.job) or []}
    assert names == {"ckpt-0001.json"}
    collected = provider.collect(instance, report.job, tmp_path / "out")
    assert collected is not None and [p.name for p in collected.files] == ["ckpt-0001.json"]


def test_spot_reclaimed_by_aws_is_interrupted(provider: Provider, standin: AwsStandIn, tmp_path: Path) -> None:
    instance = _ready(provider, _spec(spot=True))
    assert instance.spot
    script = "import time\nprint('working', flush=True)\ntime.sleep(600)\n"
    provider.sync(instance, scan_project(_project(tmp_path, {"slow.py": script})))
    # reclaimed with no notice period: the runner gets no chance to record it; EC2's state reason tells
    status = provider.train(instance, JobSpec(job_id="job-spot01", script="slow.py"))
    _wait(lambda: provider.status(instance, status).job or status, lambda s: s.state is JobState.RUNNING)
    standin.interrupt(instance.id, notice_seconds=0.0)  # reclaimed at once
    report = _wait(lambda: provider.status(instance, status), lambda r: r.job is not None and r.job.state.terminal)
    assert report.job is not None and report.job.state is JobState.INTERRUPTED
    assert report.instance.state is InstanceState.TERMINATED and "reclaimed" in report.instance.message
    assert _wait(lambda: standin.live_processes(instance.id), lambda pids: pids == [], timeout=10) == []
    provider.terminate(instance)


def test_spot_reclaim_that_killed_the_job_is_interrupted_not_failed(
    provider: Provider, standin: AwsStandIn, tmp_path: Path
) -> None:
    """When EC2 reclaims a spot instance the OS shuts down: the job and its supervisor get SIGTERM, and the
    supervisor may still record (and push) "failed, killed by signal 15" before the machine halts. That is the
    reclaim, not the script failing: the job is interrupted (so --recover applies). A job that had already
    ended on its own keeps its own result."""
    instance = _ready(provider, _spec(spot=True))
    script = "import time\nprint('working', flush=True)\ntime.sleep(600)\n"
    provider.sync(instance, scan_project(_project(tmp_path, {"slow.py": script})))
    job_id = f"job-{uuid.uuid4().hex[:6]}"
    status = provider.train(instance, JobSpec(job_id=job_id, script="slow.py"))
    _wait(lambda: provider.status(instance, status).job or status, lambda s: s.state is JobState.RUNNING)
    # the supervisor's final push, as it lands when SIGTERM reached the job first (deterministic here)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=standin.url)
    record = {"job_id": job_id, "state": "failed", "exit_code": -15, "message": "killed by signal 15"}
    s3.put_object(Bucket=BUCKET, Key=f"runctl/{job_id}/job.json", Body=json.dumps(record).encode())
    standin.interrupt(instance.id, notice_seconds=0.0)
    report = _wait(lambda: provider.status(instance, status), lambda r: r.job is not None and r.job.state.terminal)
    assert report.job is not None and report.job.state is JobState.INTERRUPTED, report.job
    assert "reclaimed" in report.job.message
    provider.terminate(instance)


def test_list_instances_only_tagged(provider: Provider, standin: AwsStandIn) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro")  # not runctl's
    ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "runctl:job", "Value": "x"}]}],
    )
    created = provider.create(_spec())
    listed = provider.list_instances()
    assert listed is not None and [i.id for i in listed] == [created.id]
    assert listed[0].tags["runctl:owner"] == "tester"
    provider.terminate(created)


def test_errors_and_credentials_never_show_secrets(provider: Provider, standin: AwsStandIn, tmp_path: Path) -> None:
    status = provider.check_credentials(probe=True)
    assert status.found and status.identity.startswith("arn:aws:") and "environment" in status.source
    assert DUMMY_SECRET not in status.model_dump_json() and DUMMY_KEY_ID not in status.model_dump_json()
    instance = _ready(provider, _spec())
    with pytest.raises(UsageError):
        provider.train(instance, JobSpec(job_id="job-nope01", script="missing.py"))
    # a failing SSM command whose output carries a presigned URL: the message shows no credential
    client = AwsClient(AwsSettings.model_validate(aws_settings(standin.url)))
    url = client.presign_get(BUCKET, "x")
    assert DUMMY_KEY_ID in url
    result = client.run_command(instance.id, f"echo 'failed to fetch {url}' >&2; exit 3")
    assert result.exit_code == 3
    shown = client.scrub(result.stderr)  # what SsmTransport's errors show of a failed command's output
    assert DUMMY_KEY_ID not in shown and "<url>" in shown
    provider.terminate(instance)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "instances" not in path.parts:
            assert DUMMY_SECRET.encode() not in path.read_bytes()


def test_price_table_and_gpu_names(provider: Provider, standin: AwsStandIn) -> None:
    standin.spot_prices = {"p5.48xlarge": 31.0, "g6.xlarge": 0.35}
    (h100,) = provider.price(PriceQuery(gpu="H100"))
    assert h100.instance_type == "p5.48xlarge" and h100.gpu_count == 8 and h100.on_demand_hourly == 98.32
    assert h100.spot_hourly == 31.0 and "bundled table 2025-05-01" in h100.source
    l4 = provider.price(PriceQuery(gpu="L4", gpu_count=1))
    assert l4[0].instance_type == "g6.xlarge" and {o.gpu for o in l4} == {"L4"} and all(o.gpu_count == 1 for o in l4)
    assert {o.instance_type for o in provider.price(PriceQuery(gpu="V100"))} == {
        "p3.2xlarge",
        "p3.8xlarge",
        "p3.16xlarge",
    }
    assert provider.price(PriceQuery(gpu="RTX 4090")) == []
    (eu,) = provider.price(PriceQuery(instance_type="m5.large", region="eu-west-1"))
    assert eu.on_demand_hourly == 0.107 and eu.region == "eu-west-1"
    a100 = prices.choose_type_for_gpu("A100", 1)
    assert a100 is not None and a100.name == "p4d.24xlarge"
    assert prices.choose_type_for_gpu("T4", 4).name == "g4dn.12xlarge"  # type: ignore[union-attr]
    with pytest.raises(RunctlError):
        provider.create(_spec(instance_type=None, gpu="TPU"))


def test_settings_are_strict() -> None:
    with pytest.raises(ValidationError):
        AwsSettings.model_validate({"buckett": "x"})
    with pytest.raises(ValidationError):
        AwsSettings.model_validate({"remote_dir": "relative/dir"})
    with pytest.raises(ValidationError):
        AwsSettings.model_validate({"bucket": "Not_A_Bucket"})
    assert AwsSettings.model_validate({"remote_dir": "$HOME/x/"}).remote_dir == "$HOME/x"


def test_price_table_is_dated_and_complete() -> None:
    table = json.loads(prices.TABLE_PATH.read_text())
    assert table["date"] and table["source"]
    for region, rows in table["on_demand"].items():
        assert set(rows) <= set(table["types"]), region
    us = table["on_demand"]["us-east-1"]
    for name in (
        "t3.micro",
        "m5.large",
        "m6i.large",
        "m7i.large",
        "c5.large",
        "c6i.large",
        "g4dn.xlarge",
        "g5.xlarge",
        "g6.xlarge",
        "p3.2xlarge",
        "p4d.24xlarge",
        "p5.48xlarge",
    ):
        assert us[name] > 0, name


UV_SCRIPT = """\
# /// script
# requires-python = ">=3.8"
# dependencies = ["six"]
# ///
import os, six
print("six", six.__version__, "imported from", six.__file__, flush=True)
open(os.path.join(os.environ["RUNCTL_CHECKPOINT_DIR"], "done.txt"), "w").write("ok")
"""


def test_the_instances_uv_builds_the_environment(
    make_provider: Callable[..., Provider], standin: AwsStandIn, tmp_path: Path
) -> None:
    """With uv on the instance's PATH, the environment step (the supervisor, before the script) builds the
    script's PEP 723 environment with it and installs no uv of its own."""
    from runctl_core.remote.runner import find_uv

    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed here")
    link = standin.fakebin / "uv"
    link.symlink_to(uv)
    try:
        provider = make_provider(use_uv=True)
        instance = _ready(provider, _spec())
        provider.sync(instance, scan_project(_project(tmp_path, {"uvjob.py": UV_SCRIPT})))
        final = _finish(provider, instance, provider.train(instance, JobSpec(job_id="job-uv0001", script="uvjob.py")))
        assert final.state is JobState.SUCCEEDED, final
        root = standin.instance_dir(instance.id) / "runctl"
        record = json.loads((root / "jobs/job-uv0001/job.json").read_text())
        assert record["setup"]["state"] == "installed" and "uv" in record["setup"]["summary"], record["setup"]
        assert record["command"][0].startswith(str(root / "envs"))  # the environment's python, not the machine's
        assert not (root / "tools").exists()  # the instance's uv was used, none installed
        provider.terminate(instance)
    finally:
        link.unlink()

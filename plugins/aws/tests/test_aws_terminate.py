"""`runctl terminate` of AWS jobs through the CLI against the stand-in: the graceful stop (the job writes and pushes
its checkpoints) happens whatever this laptop remembers of the instance, and the shutdown a detached job's supervisor
makes after the stop is not an error."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_standin import AwsStandIn
from aws_testlib import BUCKET, aws_settings

from runctl_core.testing.cli import CliResult, isolate, run_runctl

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Path:
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "train.py", root / "examples" / "train.py")
    settings = aws_settings(standin.url)
    lines = ["[providers.aws]", *(f"{key} = {json.dumps(value)}" for key, value in settings.items())]
    (root / ".runctl.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def _cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    return run_runctl("--provider", "aws", *args, env=env, timeout=180)


def _s3_keys(standin: AwsStandIn, prefix: str) -> set[str]:
    listing = boto3.client("s3", endpoint_url=standin.url).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for o in listing.get("Contents", [])}


def _running_job(standin: AwsStandIn, job_id: str, timeout: float = 90) -> str:
    """The instance id once the job's script runs and has written a checkpoint (polled, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for instance_id, machine in list(standin.machines.items()):
            record = machine.sandbox / "runctl" / "jobs" / job_id / "job.json"
            try:
                doc = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("state") == "running" and list(record.parent.glob("checkpoints/ckpt-*.json")):
                return instance_id
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not start on the stand-in")


def _instance_state(standin: AwsStandIn, instance_id: str) -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservation["Instances"][0]["State"]["Name"])


def _start_detached(project: Path) -> str:
    started = _cli(
        "run",
        "examples/train.py",
        "--instance-type",
        "t3.micro",
        "--detach",
        "--output",
        "id",
        "--",
        "--epochs",
        "200",
        "--sleep",
        "0.2",
    )
    assert started.code == 0, started.err
    return started.out.strip()


def test_terminate_a_detached_job_stops_it_collects_and_exits_0(project: Path, standin: AwsStandIn) -> None:
    """The stop makes the detached supervisor run `shutdown -h now`, which may cut the stop's own SSM command."""
    job_id = _start_detached(project)
    instance_id = _running_job(standin, job_id)
    result = _cli("-o", "json", "terminate", job_id, "--yes")
    assert result.code == 0, result.err
    assert _instance_state(standin, instance_id) in ("shutting-down", "terminated")
    pushed = _s3_keys(standin, f"runctl/{job_id}/checkpoints/")
    assert any(k.rsplit("/", 1)[-1].startswith("ckpt-") for k in pushed), pushed
    collected = sorted(p.name for p in (project.parent / "home").rglob("ckpt-*.json"))
    assert collected, "no checkpoint collected on the laptop"
    job = _cli("-o", "json", "status", job_id)
    assert job.code == 0, job.err
    assert job.json()["state"] in ("cancelled", "succeeded", "failed", "interrupted"), job.out


def test_terminate_from_another_runctl_home_stops_the_job_gracefully(
    project: Path, standin: AwsStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty RUNCTL_HOME (another laptop) knows nothing of the instance's tools: `resources cleanup` of the orphan
    still stops the job first (terminate's graceful stop), so its checkpoints and final record reach S3."""
    job_id = _start_detached(project)
    instance_id = _running_job(standin, job_id)
    other = tmp_path / "other-laptop"
    isolate(monkeypatch, other / "home", other / "xdg-config")
    result = _cli("-o", "json", "resources", "cleanup", "--yes")
    assert result.code == 0, result.err
    assert instance_id in result.out, result.out
    assert _instance_state(standin, instance_id) in ("shutting-down", "terminated")
    pushed = _s3_keys(standin, f"runctl/{job_id}/")
    assert f"runctl/{job_id}/job.json" in pushed, pushed
    assert any("/checkpoints/ckpt-" in k for k in pushed), pushed
    record: dict[str, Any] = json.loads(
        boto3.client("s3", endpoint_url=standin.url)
        .get_object(Bucket=BUCKET, Key=f"runctl/{job_id}/job.json")["Body"]
        .read()
    )
    assert record["state"] in ("cancelled", "succeeded"), record

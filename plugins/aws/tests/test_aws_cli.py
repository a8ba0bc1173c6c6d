"""The AWS provider through the real CLI (``runctl`` subprocesses) against the stand-in: moto for EC2/S3/IAM/STS/
SSM state, with every SSM command, the user data and the job really executed in a per-instance sandbox."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_standin import AwsStandIn
from aws_testlib import BUCKET, DUMMY_KEY_ID, DUMMY_SECRET, aws_settings

from runctl_core.testing.cli import CliResult, isolate, run_runctl, runctl_executable
from runctl_core.testing.faults import pids_alive

REPO = Path(__file__).resolve().parents[3]
RUNCTL = runctl_executable()


Result = CliResult


def _toml(settings: dict[str, Any]) -> str:
    lines = ["[providers.aws]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Path:
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "train.py", root / "examples" / "train.py")
    (root / ".runctl.toml").write_text(_toml(aws_settings(standin.url)))
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


@pytest.fixture
def cli(project: Path) -> Callable[..., Result]:
    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        return run_runctl("--provider", "aws", *args, env=env, timeout=timeout)

    return run


@pytest.fixture
def ec2(standin: AwsStandIn) -> Iterator[Any]:
    yield boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)


def _instances(ec2: Any) -> list[dict[str, Any]]:
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def _assert_no_secret(*texts: str, home: Path | None = None) -> None:
    for text in texts:
        assert DUMMY_SECRET not in text and DUMMY_KEY_ID not in text
    if home is not None:
        for path in home.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert DUMMY_SECRET.encode() not in data and DUMMY_KEY_ID.encode() not in data, path


def test_run_spot_end_to_end(cli: Callable[..., Result], standin: AwsStandIn, ec2: Any, project: Path) -> None:
    standin.spot_prices = {"t3.micro": 0.0031}
    result = cli(
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--spot",
        "--instance-type",
        "t3.micro",
        "--max-runtime",
        "3600",
        "--",
        "--epochs",
        "3",
    )
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["job"]["state"] == "succeeded" and doc["job"]["exit_code"] == 0
    assert doc["instance"]["state"] == "terminated"
    names = sorted(Path(p).name for p in doc["checkpoints"])
    assert names == ["ckpt-0001.json", "ckpt-0002.json", "ckpt-0003.json", "metrics.json"]
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["val_acc"] > 0.85  # it really trained, on the "instance"
    # at AWS: one spot instance, tagged, terminated; checkpoints and the log in S3; no staging objects left
    (instance,) = _instances(ec2)
    assert instance["State"]["Name"] == "terminated" and instance["InstanceLifecycle"] == "spot"
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["runctl:job"] == doc["job"]["job_id"] and tags["runctl:owner"] and tags["runctl:intent"]
    assert tags["Name"] == f"runctl-{doc['job']['job_id']}" and tags["runctl:created"]
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=standin.url).list_objects_v2(Bucket=BUCKET)["Contents"]}
    job_prefix = f"runctl/{doc['job']['job_id']}/"
    assert {job_prefix + "checkpoints/metrics.json", job_prefix + "log", job_prefix + "job.json"} <= keys
    assert not [k for k in keys if k.startswith(f"runctl/_staging/{instance['InstanceId']}/")]
    # what ran on the instance: user data armed the self-termination timer; no process is left
    sandbox = standin.instance_dir(instance["InstanceId"])
    assert "shutdown -h +60" in (sandbox / ".cloud-init" / "user-data").read_text()
    deadline = time.monotonic() + 10
    while standin.live_processes(instance["InstanceId"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert standin.live_processes(instance["InstanceId"]) == []
    assert ("ec2", "RunInstances") in standin.calls and ("ssm", "SendCommand") in standin.calls
    _assert_no_secret(result.out, result.err, home=project.parent / "home")


def _wait_for_job(standin: AwsStandIn, min_checkpoints: int = 0, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """The instance id and job record once a job on some instance runs its script (and has written checkpoints)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for instance_id, machine in list(standin.machines.items()):
            if machine.ended:
                continue
            for record_path in machine.sandbox.glob("runctl/jobs/*/job.json"):
                try:
                    record = json.loads(record_path.read_text())
                except ValueError:
                    continue
                checkpoints = list((record_path.parent / "checkpoints").glob("ckpt-*.json"))
                if record.get("pid") and record.get("state") == "running" and len(checkpoints) >= min_checkpoints:
                    return instance_id, record
        time.sleep(0.05)
    raise AssertionError("no job started on the stand-in")


def test_spot_refused_falls_back_to_on_demand_with_prices(
    cli: Callable[..., Result], standin: AwsStandIn, ec2: Any
) -> None:
    standin.spot_prices = {"t3.micro": 0.0031}
    standin.faults.refuse_spot = 1
    result = cli(
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--spot",
        "--on-demand-fallback",
        "always",
        "--instance-type",
        "t3.micro",
        "--",
        "--epochs",
        "1",
    )
    assert result.code == 0, result.err
    warning = next(line for line in result.err.splitlines() if "falling back to on-demand" in line)
    assert "InsufficientInstanceCapacity" in warning
    assert "$0.0104/h" in warning and "$0.0031/h" in warning and "3.4x" in warning
    (instance,) = _instances(ec2)  # the refused spot request created nothing; one on-demand instance
    assert "InstanceLifecycle" not in instance and instance["State"]["Name"] == "terminated"
    assert [c for c in standin.calls if c == ("ec2", "RunInstances")] == [("ec2", "RunInstances")] * 2
    assert ec2.describe_spot_instance_requests()["SpotInstanceRequests"] == []
    assert result.json()["job"]["state"] == "succeeded"


def test_spot_refused_without_fallback_exits_4_and_leaves_nothing(
    cli: Callable[..., Result], standin: AwsStandIn, ec2: Any
) -> None:
    standin.spot_prices = {"t3.micro": 0.0031}
    standin.faults.refuse_spot = 5
    result = cli(
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--spot",
        "--on-demand-fallback",
        "never",
        "--instance-type",
        "t3.micro",
    )
    assert result.code == 4, result.err
    error = result.error()
    assert error["code"] == "capacity" and "InsufficientInstanceCapacity" in error["message"]
    assert "--on-demand-fallback always" in error["hint"] and "$0.0104/h" in error["hint"]
    assert _instances(ec2) == []
    assert ec2.describe_spot_instance_requests()["SpotInstanceRequests"] == []
    assert [c for c in standin.calls if c == ("ec2", "RunInstances")] == [("ec2", "RunInstances")]


def test_throttling_and_a_lost_response_are_retried_safely(
    cli: Callable[..., Result], standin: AwsStandIn, ec2: Any
) -> None:
    standin.faults.throttle = {
        "RunInstances": 2,
        "DescribeInstances": 2,
        "SendCommand": 1,
        "DescribeInstanceInformation": 1,
    }
    standin.faults.lose_response = {"RunInstances": 1}  # RunInstances succeeds, the answer is a 500
    result = cli("-o", "json", "run", "examples/train.py", "--instance-type", "t3.micro", "--", "--epochs", "1")
    assert result.code == 0, result.err
    assert result.json()["job"]["state"] == "succeeded"
    assert len(_instances(ec2)) == 1  # the retry with the same ClientToken got the same instance
    assert standin.calls.count(("ec2", "RunInstances")) == 4  # 2 throttled, 1 answer lost, 1 replayed
    assert standin.faults.throttle == {
        "RunInstances": 0,
        "DescribeInstances": 0,
        "SendCommand": 0,
        "DescribeInstanceInformation": 0,
    }


def test_ctrl_c_exits_130_and_terminates_the_instance(project: Path, standin: AwsStandIn, ec2: Any) -> None:
    proc = subprocess.Popen(
        [
            RUNCTL,
            "--provider",
            "aws",
            "-o",
            "json",
            "run",
            "examples/train.py",
            "--instance-type",
            "t3.micro",
            "--",
            "--epochs",
            "200",
            "--sleep",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )
    try:
        instance_id, record = _wait_for_job(standin, min_checkpoints=1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert json.loads(err.strip().splitlines()[-1])["error"]["code"] == "interrupted"
    (instance,) = _instances(ec2)
    assert instance["InstanceId"] == instance_id and instance["State"]["Name"] == "terminated"
    assert pids_alive([record["pid"], record["supervisor_pid"]]) == []
    deadline = time.monotonic() + 10
    while standin.live_processes(instance_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert standin.live_processes(instance_id) == []
    # the job was stopped before termination, so its checkpoints reached S3
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=standin.url).list_objects_v2(Bucket=BUCKET, Prefix="runctl/job-")[
            "Contents"
        ]
    ]
    assert any("/checkpoints/ckpt-" in key for key in keys)


def test_dry_run_needs_no_credentials_and_shows_calls_and_price(project: Path, standin: AwsStandIn) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/c",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/s",
        }
    )
    proc = subprocess.run(
        [
            RUNCTL,
            "--provider",
            "aws",
            "-o",
            "json",
            "run",
            "examples/train.py",
            "--dry-run",
            "--instance-type",
            "g4dn.xlarge",
            "--max-runtime",
            "2h",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    operations = [(c["api"], c["operation"]) for c in doc["calls"]]
    for expected in [
        ("s3", "HeadBucket"),
        ("iam", "GetInstanceProfile"),
        ("ssm", "GetParameter"),
        ("ec2", "RunInstances"),
        ("ssm", "SendCommand"),
        ("s3", "PutObject"),
        ("ec2", "TerminateInstances"),
    ]:
        assert expected in operations, expected
    run = next(c for c in doc["calls"] if c["operation"] == "RunInstances")
    assert run["paid"] and run["params"]["InstanceType"] == "g4dn.xlarge"
    assert run["params"]["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert "shutdown -h +120" in run["params"]["UserData"]
    gpu_ami = next(c for c in doc["calls"] if c["operation"] == "GetParameter")["params"]["Name"]
    assert "deeplearning" in gpu_ami
    assert "0.526" in json.dumps(doc)  # g4dn.xlarge on-demand $/h from the bundled table
    assert standin.calls == []  # nothing reached "AWS"
    text = subprocess.run(
        [RUNCTL, "--provider", "aws", "run", "examples/train.py", "--dry-run", "--instance-type", "g4dn.xlarge"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert text.returncode == 0 and "$0.5260/h" in text.stdout and "RunInstances" in text.stdout


def test_spot_interruption_is_reported_and_recovered(
    cli: Callable[..., Result], standin: AwsStandIn, ec2: Any, project: Path
) -> None:
    standin.spot_prices = {"t3.micro": 0.0031}
    proc = subprocess.Popen(
        [
            RUNCTL,
            "--provider",
            "aws",
            "-o",
            "json",
            "run",
            "examples/train.py",
            "--spot",
            "--instance-type",
            "t3.micro",
            "--recover",
            "--max-restarts",
            "1",
            "--",
            "--epochs",
            "12",
            "--sleep",
            "0.15",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )
    try:
        first_id, _record = _wait_for_job(standin, min_checkpoints=2)
        standin.interrupt(first_id, notice_seconds=1.5)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["job"]["state"] == "succeeded"
    instances = {i["InstanceId"]: i for i in _instances(ec2)}
    assert len(instances) == 2 and all(i["State"]["Name"] == "terminated" for i in instances.values())
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["epochs"] == 12
    assert "was interrupted" in err and "resuming from its newest checkpoint" in err
    # the first job's newest checkpoint was pushed to S3 on the notice, before the instance went away
    s3 = boto3.client("s3", endpoint_url=standin.url)
    first_job = next(i for i in instances.values() if i["InstanceId"] == first_id)
    job_id = {t["Key"]: t["Value"] for t in first_job["Tags"]}["runctl:job"]
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runctl/{job_id}/job.json")["Body"].read())
    assert record["state"] == "interrupted"
    second_log = s3.get_object(Bucket=BUCKET, Key=f"runctl/{doc['job']['job_id']}/log")["Body"].read().decode()
    assert "resumed from ckpt-" in second_log and "epoch 12/12" in second_log


def test_max_runtime_makes_the_instance_end_itself(cli: Callable[..., Result], standin: AwsStandIn, ec2: Any) -> None:
    standin.minute_seconds = 4.0  # long enough for --wait to see it ready first
    created = cli("-o", "id", "create", "--instance-type", "t3.micro", "--max-runtime", "60", "--wait")
    assert created.code == 0, created.err
    instance_id = created.out.strip()
    assert instance_id.startswith("i-")
    deadline = time.monotonic() + 30  # "shutdown -h +1" in user data; a stand-in minute is 4 seconds
    state = ""
    while time.monotonic() < deadline:
        (instance,) = _instances(ec2)
        state = instance["State"]["Name"]
        if state == "terminated":
            break
        time.sleep(0.1)
    assert state == "terminated"
    assert instance["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    status = cli("-o", "json", "status", instance_id)
    assert status.code == 0 and status.json()["state"] == "terminated"


def test_prerequisites_are_checked_before_anything_is_paid(
    cli: Callable[..., Result], standin: AwsStandIn, project: Path, ec2: Any
) -> None:
    settings = aws_settings(standin.url)
    (project / ".runctl.toml").write_text(_toml({**settings, "bucket": "no-such-bucket"}))
    missing_bucket = cli("-o", "json", "create", "--instance-type", "t3.micro")
    assert missing_bucket.code == 3
    assert "aws s3 mb s3://no-such-bucket" in missing_bucket.error()["hint"]
    (project / ".runctl.toml").write_text(_toml({**settings, "instance_profile": "absent-profile"}))
    missing_profile = cli("-o", "json", "create", "--instance-type", "t3.micro")
    assert missing_profile.code == 3
    hint = missing_profile.error()["hint"]
    assert "aws iam create-instance-profile --instance-profile-name absent-profile" in hint
    assert "AmazonSSMManagedInstanceCore" in hint
    (project / ".runctl.toml").write_text(_toml({k: v for k, v in settings.items() if k != "bucket"}))
    no_bucket = cli("-o", "json", "create", "--instance-type", "t3.micro")
    assert no_bucket.code == 3 and "providers.aws.bucket" in no_bucket.error()["hint"]
    (project / ".runctl.toml").write_text(_toml(settings))
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    no_credentials = cli("-o", "json", "create", "--instance-type", "t3.micro", env=env)
    assert no_credentials.code == 3 and no_credentials.error()["code"] == "credentials"
    assert "aws configure" in no_credentials.error()["hint"]
    assert ("ec2", "RunInstances") not in standin.calls and _instances(ec2) == []


def test_providers_check_and_price(cli: Callable[..., Result], standin: AwsStandIn) -> None:
    checked = cli("-o", "json", "providers", "--check")
    assert checked.code == 0, checked.err
    assert "arn:aws:" in checked.out and "environment" in checked.out
    _assert_no_secret(checked.out, checked.err)
    standin.spot_prices = {"p4d.24xlarge": 9.8, "p5.48xlarge": 30.1}
    a100 = cli("-o", "json", "price", "--gpu", "A100")
    assert a100.code == 0, a100.err
    assert "p4d.24xlarge" in a100.out and "32.7726" in a100.out and "9.8" in a100.out
    t4 = cli("-o", "json", "price", "--gpu", "T4")
    assert "g4dn.xlarge" in t4.out and "p4d" not in t4.out


def test_providers_check_says_refused_for_a_key_aws_rejects(cli: Callable[..., Result], standin: AwsStandIn) -> None:
    accepted = cli("-o", "json", "providers", "--check")
    assert accepted.code == 0, accepted.err
    row = next(r for r in json.loads(accepted.out)["providers"] if r["name"] == "aws")
    assert row["status"] == "accepted", row
    standin.refused_keys.add(DUMMY_KEY_ID)
    refused = cli("-o", "json", "providers", "--check")
    assert refused.code == 3, refused.err
    row = next(r for r in json.loads(refused.out)["providers"] if r["name"] == "aws")
    assert row["status"] == "refused", row
    assert DUMMY_SECRET not in refused.out + refused.err
    text = cli("providers", "--check")
    assert text.code == 3 and "refused" in text.out, text.out

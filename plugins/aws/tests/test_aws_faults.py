"""Fault injection on the AWS provider through the real CLI, checked at the stand-in (EC2's instance states in moto
and the processes on each "instance"), not through runctl:

* ``runctl run`` killed with SIGKILL at each step -> ``runctl resources cleanup --yes`` leaves no instance
  running and no process on any instance; including a kill while RunInstances is in flight (EC2 has made the
  instance, runctl never got its id: it is found by its runctl tags);
* a spot interruption mid-training -> ``run --recover`` resumes on a new instance from the newest checkpoint and
  ends with the same weights as an uninterrupted run; the journal shows both attempts;
* instances runctl did not tag, or another owner's, survive ``runctl resources cleanup --yes --all``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_standin import AwsStandIn
from aws_testlib import BUCKET, aws_settings

from runctl_core.testing.cli import CliResult, isolate, make_project, run_runctl, runctl_executable
from runctl_core.testing.faults import KILL_STEPS, kill_run_at

REPO = Path(__file__).resolve().parents[3]
OWNER = "fault-tester"
TYPE = "t3.micro"
ALIVE = ("pending", "running", "stopping", "stopped")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Path:
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "aws", aws_settings(standin.url))
    config = root / ".runctl.toml"
    config.write_text(f'owner = "{OWNER}"\n' + config.read_text())
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def cli(*args: str, timeout: float = 120) -> CliResult:
    return run_runctl("--provider", "aws", *args, timeout=timeout)


def instances(standin: AwsStandIn) -> dict[str, dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    return {i["InstanceId"]: i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}


def alive(standin: AwsStandIn) -> list[str]:
    """Instances EC2 would bill (or could start again), read from EC2 itself."""
    return sorted(i for i, d in instances(standin).items() if d["State"]["Name"] in ALIVE)


def processes(standin: AwsStandIn) -> list[int]:
    return [pid for machine in list(standin.machines) for pid in standin.live_processes(machine)]


def wait_no_processes(standin: AwsStandIn, timeout: float = 10) -> list[int]:
    """An ended instance's processes get SIGTERM, a moment, then SIGKILL (as a halt does)."""
    deadline = time.monotonic() + timeout
    while processes(standin) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes(standin)


def slow_run_instances(standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """From now on RunInstances is carried out at once but answered 2 s later; the event is set when the instance
    exists. Killing runctl then is a kill in the middle of the create call, with an instance it never heard of."""
    made = threading.Event()
    original = standin._run_instances

    def run_instances(*args: Any, **kwargs: Any) -> Any:
        reply = original(*args, **kwargs)
        made.set()
        time.sleep(2.0)
        return reply

    monkeypatch.setattr(standin, "_run_instances", run_instances)
    return made


EPOCHS = {"during-collect": ["--epochs", "1"]}


@pytest.mark.parametrize("step", list(KILL_STEPS))
def test_kill_9_at_each_step_then_cleanup_leaves_no_instance_running(
    project: Path, standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    args = EPOCHS.get(step, ["--epochs", "200", "--sleep", "0.1"])
    made = slow_run_instances(standin, monkeypatch) if step == "during-create" else None
    report = kill_run_at(
        ["--provider", "aws", "run", "examples/train.py", "--instance-type", TYPE, "--", *args],
        step,
        provider="aws",
        when=made.is_set if made else None,
    )
    assert report.killed, f"the run never reached {step}:\n{report.stderr[-3000:]}"
    assert report.returncode == -9
    if made:  # killed with RunInstances in flight: the instance exists, runctl never got its id
        assert "aws.create ->" not in report.stderr and len(alive(standin)) == 1
    if "aws.terminate(" not in report.stderr:  # killed before it could clean up: the instance is left running
        assert alive(standin), f"no instance left after a kill {step}"
    if step == "during-train":
        assert processes(standin), "the job outlives its killed CLI (it runs on the instance)"

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")
    assert cleaned.code == 0, cleaned.err
    if made:  # found by its runctl tags alone
        assert [(t["kind"], t["in_journal"]) for t in cleaned.json()["targets"]] == [("orphan", False)]
    assert alive(standin) == []  # at EC2: every instance is terminated (or shutting down) ...
    assert wait_no_processes(standin) == []  # ... and nothing runs on any of them
    assert cli("-o", "json", "resources", "list").json()["resources"] == []
    assert cli("-o", "json", "status").json()["summary"] == {"instances_running": 0, "hourly_cost": 0, "jobs_active": 0}


def _wait_for_checkpoint(standin: AwsStandIn, name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for instance_id, machine in list(standin.machines.items()):
            if not machine.ended and list(machine.sandbox.glob(f"runctl/jobs/*/checkpoints/{name}")):
                return instance_id
        time.sleep(0.05)
    raise AssertionError(f"no job wrote {name} on the stand-in")


def test_spot_interruption_recovers_from_the_newest_checkpoint_with_the_same_result(
    project: Path, standin: AwsStandIn
) -> None:
    standin.spot_prices = {TYPE: 0.0031}
    straight = cli("-o", "json", "run", "examples/train.py", "--instance-type", TYPE, "--", "--epochs", "6")
    assert straight.code == 0, straight.err
    expected = json.loads(Path(straight.json()["outputs_dir"], "metrics.json").read_text())

    args = ["-o", "json", "run", "examples/train.py", "--spot", "--instance-type", TYPE, "--recover"]
    proc = subprocess.Popen(
        [runctl_executable(), "--provider", "aws", *args, "--", "--epochs", "6", "--sleep", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    try:
        first = _wait_for_checkpoint(standin, "ckpt-0002.json")  # mid-training: 2 of 6 epochs done
        standin.interrupt(first, notice_seconds=1.0)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    doc = json.loads(out)
    attempts = doc["attempts"]
    assert [a["state"] for a in attempts] == ["interrupted", "succeeded"]
    assert attempts[0]["instance_id"] == first and attempts[1]["instance_id"] != first  # a new instance
    assert doc["job"]["parent_id"] == attempts[0]["job_id"] and doc["job"]["attempt"] == 2
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["weights"] == expected["weights"] and metrics["bias"] == expected["bias"]
    resumed_at = metrics["history"][0]["epoch"] - 1  # attempt 2 trained only the epochs after its checkpoint
    assert resumed_at >= 2 and [h["epoch"] for h in metrics["history"]] == list(range(resumed_at + 1, 7))
    s3 = boto3.client("s3", endpoint_url=standin.url)
    log = s3.get_object(Bucket=BUCKET, Key=f"runctl/{attempts[1]['job_id']}/log")["Body"].read().decode()
    assert f"resumed from ckpt-{resumed_at:04d}.json" in log
    assert alive(standin) == [] and len(instances(standin)) == 3  # the straight run's, attempt 1's, attempt 2's


def _foreign(standin: AwsStandIn, image: str, tags: dict[str, str] | None) -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    kwargs: dict[str, Any] = {"ImageId": image, "InstanceType": TYPE, "MinCount": 1, "MaxCount": 1}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    instance_id: str = ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
    return instance_id


def test_foreign_instances_survive_cleanup_all(project: Path, standin: AwsStandIn) -> None:
    ours = cli("-o", "id", "create", "--instance-type", TYPE).out.strip()  # kept: only --all removes it
    assert ours.startswith("i-")
    image = instances(standin)[ours]["ImageId"]
    untagged = _foreign(standin, image, None)
    other_owner = _foreign(
        standin,
        image,
        {"runctl:owner": "someone-else", "runctl:job": "job-0ther1", "runctl:intent": "intent-0ther1", "Name": "x"},
    )
    lookalike = _foreign(standin, image, {"runctl:job": "job-abc123", "Name": "runctl-job-abc123"})  # no owner tag
    listed = cli("-o", "json", "resources", "list").json()
    assert {r["id"] for r in listed["resources"]} == {ours}

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes", "--all")
    assert cleaned.code == 0, cleaned.err
    assert [t["id"] for t in cleaned.json()["terminated"]] == [ours]
    assert alive(standin) == sorted([untagged, other_owner, lookalike])
    assert instances(standin)[ours]["State"]["Name"] in ("shutting-down", "terminated")

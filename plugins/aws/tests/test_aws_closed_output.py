"""`runctl --provider aws run long.py 2>&1 | head -4`: when the output pipe closes, the instance is still
terminated (after its checkpoints are collected), and runctl exits 130 - through the CLI against the stand-in."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import boto3
from aws_standin import AwsStandIn
from test_aws_cli import _instances, _wait_for_job, project  # noqa: F401 - fixtures

from runctl_core.testing.cli import run_runctl, runctl_executable
from runctl_core.testing.faults import pids_alive


def test_closed_output_pipe_still_terminates_the_instance(project: Path, standin: AwsStandIn) -> None:  # noqa: F811
    read_end, write_end = os.pipe()
    command = ["--provider", "aws", "run", "examples/train.py", "--instance-type", "t3.micro"]
    proc = subprocess.Popen(  # stdout and stderr one pipe, as with `2>&1 | head -4`
        [runctl_executable(), *command, "--", "--epochs", "300", "--sleep", "0.2"],
        stdout=write_end,
        stderr=write_end,
        stdin=subprocess.DEVNULL,
        env=os.environ,
    )
    os.close(write_end)
    try:
        instance_id, record = _wait_for_job(standin, min_checkpoints=1)
        reader = os.fdopen(read_end, "rb")
        for _ in range(4):
            reader.readline()
        reader.close()  # `head -4` is done: every later write gets EPIPE
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    (instance,) = _instances(ec2)
    assert instance["InstanceId"] == instance_id and instance["State"]["Name"] == "terminated"
    deadline = time.monotonic() + 20
    while pids_alive([record["pid"]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive([record["pid"]]) == []
    listed = run_runctl("--provider", "aws", "-o", "json", "resources", "list").json()["resources"]
    assert [r for r in listed if r.get("state") in ("running", "pending")] == [], listed

"""The price shown before spending is the machine's that will be created, and --max-price caps on-demand runs on a
named provider (not only --provider auto and the spot fallback), through the real CLI against the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_standin import AwsStandIn
from test_aws_cli import _instances, cli, project  # noqa: F401 - fixtures

from runctl_core.testing.cli import CliResult, runctl_executable

RUNCTL = runctl_executable()


def _no_credentials_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/c",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/s",
        }
    )
    return env


@pytest.mark.parametrize("extra", [[], ["--gpu", "A10G"], ["--instance-type", "g4dn.xlarge"]])
def test_dry_run_prices_the_type_run_instances_creates(project: Path, extra: list[str]) -> None:  # noqa: F811
    proc = subprocess.run(
        [RUNCTL, "--provider", "aws", "-o", "json", "run", "examples/train.py", "--dry-run", *extra],
        capture_output=True,
        text=True,
        env=_no_credentials_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    created = next(c for c in doc["calls"] if c["operation"] == "RunInstances")["params"]["InstanceType"]
    assert doc["estimate"].split()[0] == created, (doc["estimate"], created)


def test_max_price_caps_an_on_demand_run_before_anything_is_created(
    cli: Callable[..., CliResult],  # noqa: F811
    standin: AwsStandIn,
) -> None:
    ec2: Any = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url)
    result = cli("run", "examples/train.py", "--instance-type", "g5.xlarge", "--max-price", "0.01")
    assert result.code == 2, result.err
    assert "g5.xlarge" in result.err and "1.0060" in result.err and "0.01" in result.err
    assert "raise --max-price" in result.err and "cheaper" in result.err
    assert "Traceback" not in result.err
    assert _instances(ec2) == []
    assert not [c for c in standin.calls if "RunInstances" in str(c)]
    dry = cli("run", "examples/train.py", "--instance-type", "g5.xlarge", "--max-price", "0.01", "--dry-run")
    assert dry.code == 2 and "above --max-price" in dry.err, dry.err  # the dry run says what the run would do
    as_json = cli("-o", "json", "run", "examples/train.py", "--max-price", "0.001")  # the default t3.medium
    assert as_json.code == 2 and "t3.medium" in as_json.error()["message"], as_json.err
    assert _instances(ec2) == []

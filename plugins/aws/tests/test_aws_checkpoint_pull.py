"""`checkpoint pull JOB` fetches what `checkpoint list JOB` shows in S3 after the instance is gone (the provider
answers from its durable storage), through the real CLI against the stand-in."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from aws_standin import AwsStandIn
from test_aws_cli import cli, project  # noqa: F401 - fixtures

from runctl_core.testing.cli import CliResult


def test_pull_reads_s3_once_the_instance_is_gone(
    cli: Callable[..., CliResult],  # noqa: F811
    standin: AwsStandIn,
    tmp_path: Path,
) -> None:
    run = cli("-o", "json", "run", "examples/train.py", "--instance-type", "t3.micro", "--", "--epochs", "2")
    assert run.code == 0, run.err
    doc = run.json()
    job_id = doc["job"]["job_id"]
    assert doc["instance"]["state"] == "terminated"
    shutil.rmtree(doc["outputs_dir"])  # the collected copy is gone (another laptop, a cleaned disk)
    listed = cli("-o", "json", "checkpoint", "list", job_id)
    assert listed.code == 0, listed.err
    in_s3 = sorted(c["name"] for c in listed.json()["checkpoints"] if c["where"] == "aws")
    assert "metrics.json" in in_s3 and "ckpt-0002.json" in in_s3, listed.out
    dest = tmp_path / "pulled"
    pulled = cli("checkpoint", "pull", job_id, str(dest))
    assert pulled.code == 0, pulled.err
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == in_s3
    assert json.loads((dest / "metrics.json").read_text())["epochs"] == 2

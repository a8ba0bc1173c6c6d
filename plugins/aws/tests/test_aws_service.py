"""The AWS provider against what the real services document and the stand-in now models (issue 11), through the
real CLI: eventual consistency after RunInstances, the region from AWS_REGION, region-bound presigned URLs,
quota versus capacity, a failed ``create --wait``, GPU resolution and prices, and honest plans."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_standin import AwsStandIn
from aws_testlib import aws_settings

from runctl_core.testing.cli import CliResult, isolate, make_project, run_runctl

REPO = Path(__file__).resolve().parents[3]
ALIVE = ("pending", "running", "stopping", "stopped")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Path:
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "aws", aws_settings(standin.url))
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> CliResult:
    return run_runctl("--provider", "aws", *args, timeout=timeout, env=env)


def write_settings(project: Path, standin: AwsStandIn, **extra: Any) -> None:
    import tomli_w

    settings = {k: v for k, v in aws_settings(standin.url, **extra).items() if v is not None}
    (project / ".runctl.toml").write_text(tomli_w.dumps({"providers": {"aws": settings}}))


def ec2_states(standin: AwsStandIn, region: str = "us-east-1") -> dict[str, str]:
    """Every instance's state, read from EC2's unfiltered listing (not subject to the consistency window)."""
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=standin.url)
    return {
        i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }


def wait_until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ 1. eventual consistency


def test_not_found_right_after_create_means_pending_and_terminate_still_terminates(
    project: Path, standin: AwsStandIn
) -> None:
    standin.consistency_window = 4.0  # EC2 names the new instance NotFound for 4 s (reset after the test)
    created = cli("-o", "json", "create", "--instance-type", "t3.micro")
    assert created.code == 0, created.err
    instance_id = created.json()["id"]
    status = cli("-o", "json", "status", instance_id)
    assert status.code == 0, status.err
    assert status.json()["state"] == "pending", status.out  # not "terminated": it is merely not visible yet
    ended = cli("-o", "json", "terminate", instance_id, "--yes")
    assert ended.code == 0, ended.err
    assert ended.json()["state"] == "terminated"
    assert ("ec2", "TerminateInstances") in standin.calls
    # at EC2: the instance really is ending, not billing until its 24 h timer
    assert ec2_states(standin)[instance_id] in ("shutting-down", "terminated")


def test_create_wait_survives_the_consistency_window(project: Path, standin: AwsStandIn) -> None:
    standin.consistency_window = 2.0
    created = cli("-o", "json", "create", "--instance-type", "t3.micro", "--wait")
    assert created.code == 0, created.err
    instance_id = created.json()["id"]
    assert created.json()["state"] == "running"
    assert cli("terminate", instance_id, "--yes").code == 0
    assert ec2_states(standin)[instance_id] not in ALIVE


# ------------------------------------------------------------------------------------------ 2. region


def _bare_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": "/nonexistent/c", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/s"}, **extra)
    return env


def test_dry_run_takes_the_region_from_aws_region_without_botocore(project: Path, standin: AwsStandIn) -> None:
    import json
    import subprocess
    import sys

    write_settings(project, standin, region=None)
    code = (
        "import sys\nfrom runctl_core.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))))"
    )
    args = ["--provider", "aws", "-o", "json", "create", "--dry-run", "--instance-type", "g4dn.xlarge"]
    proc = subprocess.run(
        [sys.executable, "-c", "import json\n" + code, *args],
        capture_output=True,
        text=True,
        env=_bare_env(AWS_REGION="eu-west-1"),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    plan_text, imported = proc.stdout.rsplit("\n", 2)[:2] if proc.stdout.count("\n") > 1 else (proc.stdout, "[]")
    doc = json.loads(plan_text)
    assert json.loads(imported) == []  # no AWS SDK imported for a dry run
    identity = next(c for c in doc["calls"] if c["operation"] == "GetCallerIdentity")
    assert identity["params"]["region"] == "eu-west-1" and identity["params"]["region_from"] == "AWS_REGION"
    assert "0.587" in json.dumps(doc) and "0.526" not in json.dumps(doc)  # eu-west-1's price, not us-east-1's
    text = cli("create", "--dry-run", "--instance-type", "g4dn.xlarge", env=_bare_env(AWS_REGION="eu-west-1"))
    assert text.code == 0 and "$0.5870/h in eu-west-1" in text.out, text.out


def test_aws_region_alone_is_honoured_by_a_real_create(
    project: Path, standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_settings(project, standin, region=None)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    created = cli("-o", "json", "create", "--instance-type", "t3.micro")
    assert created.code == 0, created.err
    doc = created.json()
    assert doc["region"] == "us-west-2"
    assert doc["id"] in ec2_states(standin, "us-west-2") and doc["id"] not in ec2_states(standin)
    assert cli("terminate", doc["id"], "--yes").code == 0


# ------------------------------------------------------------------------------------------ 7. plan = reality


def _planned(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["api"], c["operation"].split(" (")[0]) for c in doc["calls"] if c["api"] != "runctl"}


def test_the_dry_run_lists_every_call_the_real_run_makes(project: Path, standin: AwsStandIn) -> None:
    standin.spot_prices = {"t3.micro": 0.0031}
    args = [
        "run",
        "examples/train.py",
        "--spot",
        "--instance-type",
        "t3.micro",
        "--disk-gb",
        "12",
        "--",
        "--epochs",
        "1",
    ]
    plan = cli("-o", "json", *args[:2], "--dry-run", *args[2:])
    assert plan.code == 0, plan.err
    planned = _planned(plan.json())
    standin.calls.clear()
    real = cli("-o", "json", *args)
    assert real.code == 0, real.err
    made = set(standin.calls)
    assert made - planned == set(), f"calls made but not in the plan: {sorted(made - planned)}"
    # and terminate --output json reports the terminated state
    instance_id = real.json()["instance"]["id"]
    assert real.json()["instance"]["state"] == "terminated"
    again = cli("-o", "json", "terminate", instance_id, "--yes")
    assert again.code == 0 and again.json()["state"] == "terminated"


# ------------------------------------------------------------------------------------------ 4. quota is not capacity


def test_spot_quota_is_a_quota_error_with_the_service_quotas_hint(project: Path, standin: AwsStandIn) -> None:
    # a zero spot quota (new accounts) answers MaxSpotInstanceCountExceeded: never "try later", never a fallback
    standin.faults.refuse_spot, standin.faults.refuse_spot_code = 1, "MaxSpotInstanceCountExceeded"
    refused = cli("-o", "json", "create", "--gpu", "T4", "--spot", "--on-demand-fallback", "always")
    assert refused.code == 4, refused.err
    error = refused.error()
    assert error["code"] == "quota", error
    assert "All G and VT Spot Instance Requests" in error["hint"] and "Service Quotas" in error["hint"]
    assert "retry later" not in (error["message"] + error["hint"]).lower()
    assert [c for c in standin.calls if c == ("ec2", "RunInstances")] == [("ec2", "RunInstances")]  # no fallback
    assert ec2_states(standin) == {}


def test_a_just_created_instance_profile_is_given_time_to_propagate(project: Path, standin: AwsStandIn) -> None:
    standin.faults.profile_not_propagated = 2
    created = cli("-o", "json", "create", "--instance-type", "t3.micro")
    assert created.code == 0, created.err
    assert standin.calls.count(("ec2", "RunInstances")) == 3
    assert list(ec2_states(standin)) == [created.json()["id"]]  # one instance, not three
    assert cli("terminate", created.json()["id"], "--yes").code == 0


# ------------------------------------------------------------------------------------------ 5. create --wait fails


def test_create_wait_that_fails_terminates_the_instance_and_names_it(
    project: Path, standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standin, "ssm_delay", 1000.0)  # the SSM agent never comes online
    failed = cli("-o", "json", "create", "--instance-type", "t3.micro", "--wait", "--wait-timeout", "3s")
    assert failed.code == 5, failed.err
    error = failed.error()
    instance_id = error["details"]["instance_id"]
    assert instance_id in error["message"] and error["details"]["instance_state"] == "terminated"
    assert ec2_states(standin)[instance_id] not in ALIVE
    text = cli("create", "--instance-type", "t3.micro", "--wait", "--wait-timeout", "3s")
    assert text.code == 5 and "was terminated, nothing is left running" in text.err


def test_create_wait_whose_terminate_fails_too_is_named_and_cleaned_up(project: Path, standin: AwsStandIn) -> None:
    # a proxy answers HTML pages for DescribeInstances and TerminateInstances: waiting fails, ending it fails too
    standin.faults.html_errors = {"DescribeInstances": 10_000, "TerminateInstances": 10_000}
    failed = cli("-o", "json", "create", "--instance-type", "t3.micro", "--wait", "--wait-timeout", "20s")
    assert failed.code == 4, failed.err
    error = failed.error()
    instance_id = error["details"]["instance_id"]
    assert instance_id in error["message"] and "resources cleanup" in error["hint"]
    assert "<" not in failed.err and "html" not in failed.err.lower()  # no markup reaches the user
    standin.faults.html_errors = {}
    assert ec2_states(standin)[instance_id] in ALIVE
    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")  # no --all: it is not a kept instance
    assert cleaned.code == 0, cleaned.err
    assert [t["id"] for t in cleaned.json()["targets"]] == [instance_id]
    assert ec2_states(standin)[instance_id] not in ALIVE


# ------------------------------------------------------------------------------------------ 3. region-bound S3


def test_a_bucket_in_another_region_is_signed_for_its_own_region(project: Path, standin: AwsStandIn) -> None:
    s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=standin.url)
    s3.create_bucket(Bucket="runctl-eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    write_settings(project, standin, bucket="runctl-eu-bucket")  # instances in us-east-1, the bucket in eu-west-1
    done = cli("-o", "json", "run", "examples/train.py", "--instance-type", "t3.micro", "--", "--epochs", "2")
    assert done.code == 0, done.err
    doc = done.json()
    assert sorted(Path(p).name for p in doc["checkpoints"]) == ["ckpt-0001.json", "ckpt-0002.json", "metrics.json"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="runctl-eu-bucket")["Contents"]}
    assert f"runctl/{doc['job']['job_id']}/log" in keys  # uploaded from the instance through the presigned POST


# ------------------------------------------------------------------------------------------ 6. GPUs and prices


@pytest.mark.parametrize(
    ("request_args", "launched", "gpus"),
    [
        (["--gpu", "A100"], "p4d.24xlarge", "8x A100"),  # AWS has no 1x A100: said, priced, before spending
        (["--gpu", "T4"], "g4dn.xlarge", "1x T4"),
        (["--gpu", "A10G", "--gpu-count", "2"], "g5.12xlarge", "4x A10G"),
        (["--instance-type", "g6.xlarge"], "g6.xlarge", "1x L4"),
    ],
)
def test_one_resolution_serves_price_dry_run_and_create(
    project: Path, standin: AwsStandIn, request_args: list[str], launched: str, gpus: str
) -> None:
    plan = cli("-o", "json", "create", "--dry-run", *request_args)
    assert plan.code == 0, plan.err
    doc = plan.json()
    run = next(c for c in doc["calls"] if c["operation"] == "RunInstances")
    assert run["params"]["InstanceType"] == launched
    assert doc["hourly_price"] is not None  # never "price unknown" for what would be launched
    text = cli("create", "--dry-run", *request_args)
    assert f"{launched} ({gpus}) on-demand $" in text.out, text.out
    created = cli("-o", "json", "create", *request_args)
    assert created.code == 0, created.err
    assert created.json()["instance_type"] == launched
    if launched == "p4d.24xlarge":
        assert "AWS has no 1x A100" in created.err  # warned before RunInstances
    assert cli("terminate", created.json()["id"], "--yes").code == 0


def test_price_says_aws_has_no_single_a100_and_how_old_the_table_is(project: Path, standin: AwsStandIn) -> None:
    priced = cli("-o", "json", "price", "--gpu", "A100", "--gpu-count", "1")
    assert priced.code == 0, priced.err
    offers = priced.json()["offers"]
    assert [(o["instance_type"], o["gpu_count"]) for o in offers] == [("p4d.24xlarge", 8)]
    assert "AWS has no 1x A100" in offers[0]["source"]
    text = cli("price", "--gpu", "A100", "--gpu-count", "1")
    assert "AWS has no 1x A100" in text.out and "p4d.24xlarge" in text.out
    assert "bundled table 2025-05-01 (" in text.out and "days old)" in text.out
    none = cli("-o", "json", "price", "--gpu", "H100", "--gpu-count", "16")
    assert none.code == 2 and "AWS has no 16x H100" in none.error()["message"]


def test_graviton_gpu_gets_the_arm64_image_and_neuron_types_are_refused(project: Path, standin: AwsStandIn) -> None:
    # g5g is not in the bundled price table: runctl asks the Price List API (and caches its answer), which lists every
    # real type (a type with no product there is refused before anything is created); Linux on-demand, us-east-1
    standin.list_prices = {
        ("us-east-1", "g5g.xlarge"): 0.42,
        ("us-east-1", "inf2.xlarge"): 0.7582,
        ("us-east-1", "trn1.2xlarge"): 1.34375,
    }
    arm = cli("-o", "json", "create", "--dry-run", "--instance-type", "g5g.xlarge")
    assert arm.code == 0, arm.err
    parameter = next(c for c in arm.json()["calls"] if c["operation"] == "GetParameter")["params"]["Name"]
    assert "/deeplearning/ami/arm64/" in parameter
    created = cli("-o", "json", "create", "--instance-type", "g5g.xlarge")
    assert created.code == 0, created.err
    image = boto3.client("ec2", region_name="us-east-1", endpoint_url=standin.url).describe_instances()
    images = {i["InstanceId"]: i["ImageId"] for r in image["Reservations"] for i in r["Instances"]}
    from aws_standin import DLAMI_ARM_ID

    assert images[created.json()["id"]] == DLAMI_ARM_ID
    assert cli("terminate", created.json()["id"], "--yes").code == 0
    for kind in ("inf2.xlarge", "trn1.2xlarge"):
        refused = cli("-o", "json", "create", "--instance-type", kind)
        assert refused.code == 2 and "Neuron" in refused.error()["message"], refused.err
        assert "--image" in refused.error()["hint"]


def test_prices_come_from_the_price_list_api_when_credentials_allow_and_are_cached(
    project: Path, standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.list_prices = {("us-east-1", "g5.xlarge"): 0.9876}
    priced = cli("-o", "json", "price", "--instance-type", "g5.xlarge")
    assert priced.code == 0, priced.err
    (offer,) = priced.json()["offers"]
    assert offer["on_demand_hourly"] == 0.9876 and "AWS Price List API" in offer["source"]
    assert standin.calls.count(("pricing", "GetProducts")) == 1
    text = cli("price", "--instance-type", "g5.xlarge")  # cached on the laptop: no second call
    assert "0.9876" in text.out and "AWS Price List API (fetched" in text.out
    assert standin.calls.count(("pricing", "GetProducts")) == 1
    plan = cli("create", "--dry-run", "--instance-type", "g5.xlarge")
    assert "g5.xlarge (1x A10G) on-demand $0.9876/h in us-east-1" in plan.out
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    bare = cli("-o", "json", "price", "--instance-type", "g5.xlarge")
    assert bare.json()["offers"][0]["on_demand_hourly"] == 1.006  # no credentials: the bundled table, said so
    assert "bundled table 2025-05-01" in bare.json()["offers"][0]["source"]

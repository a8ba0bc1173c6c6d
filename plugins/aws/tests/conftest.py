"""Fixtures of the AWS provider's tests: the AWS stand-in on 127.0.0.1 and an environment that can reach nothing
else (dummy credentials, no IMDS, no ~/.aws files, every AWS endpoint forced to loopback)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from aws_standin import AwsStandIn

BUCKET = "runctl-test-bucket"
PROFILE = "runctl-ssm"
DUMMY_KEY_ID = "AKIADUMMYKEYID000042"
DUMMY_SECRET = "dummySECRETvalue/never-to-be-printed+42"


def _env(url: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/runctl-test/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/runctl-test/credentials",
    }


@pytest.fixture(scope="session")
def standin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsStandIn]:
    server = AwsStandIn(tmp_path_factory.mktemp("aws-standin")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def standin(standin_server: AwsStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStandIn]:
    """The stand-in, reset, with a bucket and the SSM instance profile, and the environment pointed at it."""
    standin_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in _env(standin_server.url).items():
        monkeypatch.setenv(name, value)
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=standin_server.url)
    s3.create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=standin_server.url)
    iam.create_role(RoleName=PROFILE, AssumeRolePolicyDocument="{}")
    # moto does not load AWS-managed policies by default; a customer policy of the same name stands in
    policy = iam.create_policy(
        PolicyName="AmazonSSMManagedInstanceCore",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}
        ),
    )
    iam.attach_role_policy(RoleName=PROFILE, PolicyArn=policy["Policy"]["Arn"])
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName=PROFILE)
    standin_server.calls.clear()
    yield standin_server
    standin_server.reset()


def aws_settings(url: str, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "region": "us-east-1",
        "bucket": BUCKET,
        "endpoint_url": url,
        "remote_dir": "$HOME/runctl",
        "use_uv": False,
        "poll_interval": 0.05,
        "ssm_poll_interval": 0.02,
        "retry_base_delay": 0.01,
        "retry_attempts": 4,
        "grace_period": 1.0,
        "interrupt_check_every": 0.2,
        "ready_timeout": 60.0,
        "command_timeout": 60.0,
    }
    settings.update(extra)
    return settings


@pytest.fixture
def settings(standin: AwsStandIn) -> dict[str, Any]:
    return aws_settings(standin.url)

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
from aws_testlib import BUCKET, PROFILE, _env, aws_settings


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


@pytest.fixture
def settings(standin: AwsStandIn) -> dict[str, Any]:
    return aws_settings(standin.url)

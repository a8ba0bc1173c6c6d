"""runctl's provider conformance suite, run against the AWS provider and the stand-in (moto + real execution)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_standin import AwsStandIn
from aws_testlib import aws_settings

from runctl_core.testing.conformance import ProviderConformance


class TestAwsConformance(ProviderConformance):
    provider_name = "aws"
    instance_options = {"instance_type": "t3.micro"}
    wait_timeout = 60.0
    poll_interval = 0.05

    @pytest.fixture
    def provider_settings(self, standin: AwsStandIn) -> dict[str, Any]:
        return aws_settings(standin.url)

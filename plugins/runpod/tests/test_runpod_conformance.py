"""runctl's provider conformance suite, against the RunPod stand-ins (REST v2 API + per-pod SSH servers)."""

from __future__ import annotations

from typing import Any

import pytest
from runpod_standin import StandIn

from runctl_core.testing.conformance import ProviderConformance


class TestRunpodConformance(ProviderConformance):
    provider_name = "runpod"
    instance_options = {"gpu": "RTX 4090"}
    wait_timeout = 60.0
    poll_interval = 0.05

    @pytest.fixture
    def provider_settings(self, standin: StandIn, runpod_settings: dict[str, Any]) -> dict[str, Any]:
        return runpod_settings

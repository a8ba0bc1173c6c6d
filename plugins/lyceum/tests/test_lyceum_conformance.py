"""runctl's provider conformance suite, run against the Lyceum provider and the local stand-in."""

from __future__ import annotations

from typing import Any

import pytest

from runctl_core.testing.conformance import ProviderConformance


class TestLyceumConformance(ProviderConformance):
    provider_name = "lyceum"
    instance_options = {"instance_type": "gpu.l40s"}
    wait_timeout = 60.0

    @pytest.fixture
    def provider_settings(self, lyceum_settings: dict[str, Any]) -> dict[str, Any]:
        return lyceum_settings

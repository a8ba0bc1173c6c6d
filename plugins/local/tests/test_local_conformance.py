from __future__ import annotations

from typing import Any

import pytest

from runctl_core.testing.conformance import ProviderConformance
from runctl_core.testing.contracts import ProcessFinder, processes_with_job_id


class TestLocalConformance(ProviderConformance):
    provider_name = "local"
    wait_timeout = 30.0

    @pytest.fixture
    def provider_settings(self) -> dict[str, Any]:
        return {"use_uv": False, "grace_period": 2.0}

    @pytest.fixture
    def observed_processes(self) -> ProcessFinder:
        return processes_with_job_id  # local jobs run on this machine: count their processes

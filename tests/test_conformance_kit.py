"""The conformance kit catches leaks and lies: it is run against the local provider broken on purpose, one
breakage at a time, and must fail the matching test with a message naming the broken contract."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from broken_providers import BREAKAGES

pytest_plugins = ["pytester"]

SUITE = '''
import sys
sys.path.insert(0, {tests!r})
import pytest
from broken_providers import BREAKAGES
from runctl_core.testing.conformance import ProviderConformance
from runctl_core.testing.contracts import processes_with_job_id


class TestBroken(ProviderConformance):
    provider_name = "local"
    plugin = BREAKAGES[{breakage!r}][0]()
    wait_timeout = 10.0
    job_timeout = 1.0

    @pytest.fixture
    def provider_settings(self):
        return {{"use_uv": False, "grace_period": 1.0}}

    @pytest.fixture
    def observed_processes(self):
        return processes_with_job_id
'''


def _kill_jobs_under(home_marker: bytes) -> None:
    """A broken provider may leave its jobs running: end every process started under this test's RUNCTL_HOME."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if home_marker in fh.read():
                    os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_kit_catches(breakage: str, pytester: pytest.Pytester) -> None:
    _cls, test_name, contract = BREAKAGES[breakage]
    pytester.makepyfile(test_broken=SUITE.format(tests=str(Path(__file__).parent), breakage=breakage))
    try:
        result = pytester.runpytest_subprocess("-k", test_name, "-p", "no:cacheprovider", "-q", timeout=120)
    finally:
        _kill_jobs_under(f"RUNCTL_HOME={pytester.path}".encode())
    output = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) >= 1, output
    assert "contract broken:" in output and f"[{contract}]" in output, output


def test_the_kit_passes_the_real_local_provider(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_local='''
import pytest
from runctl_core.testing.conformance import ProviderConformance
from runctl_core.testing.contracts import processes_with_job_id


class TestLocal(ProviderConformance):
    provider_name = "local"
    wait_timeout = 30.0

    @pytest.fixture
    def provider_settings(self):
        return {"use_uv": False, "grace_period": 1.0}

    @pytest.fixture
    def observed_processes(self):
        return processes_with_job_id
'''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=300)
    result.assert_outcomes(passed=19)

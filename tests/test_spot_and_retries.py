"""The core applies --on-demand-fallback when a provider raises SpotRefused, showing spot and on-demand prices the
same way for every provider; and one retry layer per call path: retries never outlast --wait-timeout."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runctl_core.errors import TransientError
from runctl_core.retry import RetryPolicy, call_with_retries

SPOTTY = """
import time
from runctl_core.errors import SpotRefused, TransientError
from runctl_core.hookspecs import hookimpl
from runctl_core.models import Capability, Offer
from runctl_local.provider import LocalProvider


class Spotty(LocalProvider):
    '''Local sandboxes sold as a spot market that always refuses spot.'''

    @hookimpl
    def capabilities(self):
        return super().capabilities().model_copy(update={"spot": Capability(supported=True)})

    @hookimpl
    def price(self, query):
        return [Offer(provider="spotty", instance_type="local", on_demand_hourly=1.0, spot_hourly=0.3)]

    @hookimpl
    def create(self, ctx, spec):
        if spec.spot:
            raise SpotRefused("no spot capacity for local", spot_price=0.3, on_demand_price=1.0)
        return super().create(ctx, spec)


class NeverReady(LocalProvider):
    '''Its readiness check always fails transiently.'''

    @hookimpl
    def ready(self, ctx, instance):
        raise TransientError("the agent does not answer yet")
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "runctl_spotty.py").write_text(textwrap.dedent(SPOTTY))
    info = site / "runctl_spotty-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: runctl-spotty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[runctl.providers]\nspotty = runctl_spotty:Spotty\nneverready = runctl_spotty:NeverReady\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


def test_spot_refused_without_fallback_shows_both_prices(cli, site: Path, project: Path) -> None:
    result = cli(
        "-o",
        "json",
        "--provider",
        "spotty",
        "run",
        "examples/train.py",
        "--spot",
        "--on-demand-fallback",
        "never",
        "--",
        "--epochs",
        "1",
    )
    assert result.code == 4, result.err
    error = result.error()
    assert error["code"] == "capacity"
    assert "spot $0.3000/h, on-demand $1.0000/h (3.3x)" in error["message"]
    assert "--on-demand-fallback always" in error["hint"]
    assert cli("-o", "json", "resources", "list").json()["resources"] == []


def test_spot_refused_falls_back_to_on_demand_with_a_warning(cli, site: Path, project: Path) -> None:
    result = cli(
        "-o",
        "json",
        "--provider",
        "spotty",
        "run",
        "examples/train.py",
        "--spot",
        "--on-demand-fallback",
        "always",
        "--",
        "--epochs",
        "1",
    )
    assert result.code == 0, result.err
    assert "falling back to on-demand: spot $0.3000/h, on-demand $1.0000/h (3.3x)" in result.err
    assert result.json()["instance"]["spot"] is False
    summary = cli("-o", "json", "status").json()["summary"]
    assert summary["instances_running"] == 0


def test_wait_timeout_bounds_core_retries(cli, site: Path, project: Path) -> None:
    """--wait-timeout 2s with a readiness check that always fails transiently: the core's retries stop at the
    deadline. Without it they ran the whole policy (5 tries, up to 120 s) inside one check. Counted, not timed:
    the smallest waits before a 5th try add up to 3.75 s, past a 2 s deadline."""
    import re

    result = cli("-o", "json", "--provider", "neverready", "create", "--wait", "--wait-timeout", "2s", timeout=200)
    assert result.code == 4, result.err
    tries = re.search(r"gave up after (\d+) tries", result.error()["message"])
    assert tries is not None and int(tries.group(1)) < 5, result.error()
    cli("resources", "cleanup", "--yes")


def test_retry_deadline_stops_before_waiting_past_it() -> None:
    calls: list[float] = []
    slept: list[float] = []

    def failing() -> None:
        calls.append(1)
        raise TransientError("busy")

    import time

    with pytest.raises(TransientError) as caught:
        call_with_retries(
            failing, RetryPolicy(attempts=10, base_delay=1.0), sleep=slept.append, deadline=time.monotonic() + 0.5
        )
    assert len(calls) == 1 and slept == []  # the first wait (>= 0.5 s) would pass the deadline
    assert "gave up after 1 tries" in caught.value.message

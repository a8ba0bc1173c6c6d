"""The price shown before spending on Lyceum is the default profile's that the run creates (not the cheapest
profile's), and --max-price caps it before anything starts: through the CLI against the stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lyceum_standin import StandIn
from test_lyceum_service_limits import cli, project, starts, write_settings  # noqa: F401 - fixtures

from runctl_core.testing.cli import run_runctl


def test_dry_run_prices_the_profile_the_execution_starts_on(
    project: Path,  # noqa: F811
    standin: StandIn,
    lyceum_settings: dict[str, Any],
) -> None:
    write_settings(project, {**lyceum_settings, "default_instance_type": "gpu.a100"})  # not the cheapest profile
    dry = cli("-o", "json", "run", "examples/train.py", "--dry-run")
    assert dry.code == 0, dry.err
    doc = dry.json()
    (start,) = [c for c in doc["calls"] if c["paid"]]
    assert start["params"]["execution_type"] == "gpu.a100"
    assert doc["estimate"].split()[0] == "gpu.a100", doc["estimate"]
    offers = run_runctl("--provider", "lyceum", "-o", "json", "price").json()["offers"]
    price = {o["instance_type"]: o["on_demand_hourly"] for o in offers}
    assert doc["hourly_price"] == price["gpu.a100"] > min(price.values())
    over = cli("-o", "json", "run", "examples/train.py", "--max-price", str(min(price.values())))
    assert over.code == 2 and "gpu.a100" in over.error()["message"], over.err
    assert starts(standin) == []

"""The price before spending, through the CLI, with third-party providers installed by entry point: the cost line
never claims "ends itself" for a provider that cannot end itself; a broken price hook stops a paid run before
anything is created; ``--provider auto --dry-run`` works without credentials and says so, and a credentials
problem is exit 3."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

PROVIDERS = '''
import os
from pathlib import Path

from runctl_core.errors import CredentialsError
from runctl_core.hookspecs import hookimpl
from runctl_core.models import Capability, CredentialStatus, Offer
from runctl_local.provider import LocalProvider


class Paid(LocalProvider):
    """A paid provider whose machines are local sandboxes; one "A100" offer at PRICE $/h."""

    NAME, PRICE = "", 0.0

    @hookimpl
    def price(self, query):
        return [Offer(provider=self.NAME, instance_type=f"{self.NAME}.gpu", gpu="A100", gpu_count=1,
                      on_demand_hourly=self.PRICE, source="bundled table (2026-01)")]

    @hookimpl
    def capabilities(self):
        return super().capabilities().model_copy(update={"gpu": Capability(supported=True), "paid": True})

    @hookimpl
    def create(self, ctx, spec):
        Path(os.environ["RUNCTL_TEST_CREATED"]).write_text(self.NAME)
        instance = super().create(ctx, spec.model_copy(update={"instance_type": None, "gpu": None}))
        return instance.model_copy(update={"provider": self.NAME, "hourly_price": self.PRICE})


class NoSelfEnd(Paid):
    NAME, PRICE = "noselfend", 2.0

    @hookimpl
    def capabilities(self):
        caps = super().capabilities()
        return caps.model_copy(update={"max_runtime": Capability(supported=False, reason="no shutdown timer here")})


class BrokenPrice(Paid):
    NAME, PRICE = "brokenprice", 1.0

    @hookimpl
    def price(self, query):
        return {}["no such table"]  # a bug in the plugin


class Keyed(Paid):
    """Needs KEYED_API_KEY; prices come from a bundled table, so a dry run can show them without it."""

    NAME, PRICE = "keyed", 1.5

    @hookimpl
    def check_credentials(self, ctx, probe):
        if os.environ.get("KEYED_API_KEY"):
            return CredentialStatus(found=True, source="environment KEYED_API_KEY")
        return CredentialStatus(found=False, message="KEYED_API_KEY is not set", hint="export KEYED_API_KEY=...")


class KeyedOnly(Keyed):
    """Needs a key even for prices (its price list is behind its API)."""

    NAME, PRICE = "keyedonly", 0.5

    @hookimpl
    def price(self, query):
        if not os.environ.get("KEYED_API_KEY"):
            raise CredentialsError("keyedonly needs KEYED_API_KEY to list prices", "export KEYED_API_KEY=...")
        return super().price(query)
'''


def _install(site: Path, classes: tuple[str, ...]) -> None:
    site.mkdir(parents=True, exist_ok=True)
    (site / "runctl_paid_fakes.py").write_text(textwrap.dedent(PROVIDERS))
    for cls in classes:
        name = cls.lower()
        info = site / f"runctl_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: runctl-{name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[runctl.providers]\n{name} = runctl_paid_fakes:{cls}\n")


def _env(tmp_path: Path, *names: str) -> dict[str, str]:
    site = tmp_path / "site"
    _install(site, ("NoSelfEnd", "BrokenPrice", "Keyed", "KeyedOnly"))
    return {
        "PYTHONPATH": str(site),
        "RUNCTL_LOAD_PLUGINS": ",".join(names),
        "RUNCTL_TEST_CREATED": str(tmp_path / "created"),
        "KEYED_API_KEY": "",
    }


def test_cost_line_never_claims_ends_itself_without_max_runtime(cli: Any, tmp_path: Path, project: Path) -> None:
    env = _env(tmp_path, "noselfend")
    plan = cli("--provider", "noselfend", "run", "examples/train.py", "--gpu", "A100", "--dry-run", env=env)
    assert plan.code == 0, plan.err
    assert "ends itself" not in plan.out
    assert "does not end itself" in plan.out and "no shutdown timer here" in plan.out
    ran = cli("--provider", "noselfend", "run", "examples/train.py", "--gpu", "A100", "--", "--epochs", "1", env=env)
    assert ran.code == 0, ran.err
    assert "before it ends itself" not in ran.err and "does not end itself" in ran.err


def test_run_refuses_to_spend_when_the_price_hook_is_broken(cli: Any, tmp_path: Path, project: Path) -> None:
    env = _env(tmp_path, "brokenprice")
    ran = cli("-o", "json", "--provider", "brokenprice", "run", "examples/train.py", "--gpu", "A100", env=env)
    assert ran.code == 4, ran.err
    error = ran.error()
    assert error["code"] == "price_unavailable" and "nothing was created" in error["message"]
    assert "KeyError" in error["message"] and "runctl price" in error["hint"]
    assert not (tmp_path / "created").exists()
    created = cli("-o", "json", "--provider", "brokenprice", "create", "--gpu", "A100", env=env)
    assert created.code == 4 and not (tmp_path / "created").exists()
    plan = cli("--provider", "brokenprice", "run", "examples/train.py", "--gpu", "A100", "--dry-run", env=env)
    assert plan.code == 0 and "price unknown" in plan.out  # a dry run spends nothing: it shows what it can


def test_auto_dry_run_without_credentials_offers_marked_prices(cli: Any, tmp_path: Path, project: Path) -> None:
    env = _env(tmp_path, "keyed", "keyedonly")
    plan = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--gpu", "A100", "--dry-run", env=env)
    assert plan.code == 0, plan.err
    doc = plan.json()
    assert doc["provider"] == "keyed"
    (alternative,) = doc["alternatives"]
    assert alternative["credentials"] is False and "no credentials here" in alternative["offer"]["source"]
    assert "bundled table" in alternative["offer"]["source"]
    assert [s["provider"] for s in doc["skipped"]] == ["keyedonly"] and doc["skipped"][0]["kind"] == "credentials"
    text = cli("--provider", "auto", "run", "examples/train.py", "--gpu", "A100", "--dry-run", env=env)
    assert text.code == 0 and "no credentials here" in text.out


def test_auto_without_any_usable_credentials_is_exit_3(cli: Any, tmp_path: Path, project: Path) -> None:
    env = _env(tmp_path, "keyedonly")
    plan = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--gpu", "A100", "--dry-run", env=env)
    assert plan.code == 3, plan.err
    assert plan.error()["code"] == "credentials" and "keyedonly" in plan.error()["message"]
    env = _env(tmp_path / "again", "keyed")
    ran = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--gpu", "A100", env=env)
    assert ran.code == 3, ran.err
    assert not (tmp_path / "again" / "created").exists()

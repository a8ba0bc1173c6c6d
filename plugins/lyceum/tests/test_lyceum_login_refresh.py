"""A Lyceum CLI login (`lyceum auth login`: a JWT access token + a refresh token in ~/.lyceum/config.json) is
refreshed the way the Lyceum CLI refreshes it (lyceum-cli 1.2.2, lyceum/shared/config.py), and saved back; a login
that cannot be refreshed is exit 3 with `lyceum auth login` as the next step, never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from lyceum_standin import StandIn

from runctl_core.testing.cli import CliResult, isolate, run_runctl


@pytest.fixture
def login_project(
    tmp_path: Path, lyceum_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    monkeypatch.delenv("LYCEUM_API_KEY")
    root = tmp_path / "project"
    root.mkdir()
    (root / ".runctl.toml").write_text(tomli_w.dumps({"providers": {"lyceum": lyceum_settings}}))
    isolate(monkeypatch, tmp_path / "runctl-home", tmp_path / "xdg")
    monkeypatch.chdir(root)
    config = tmp_path / "home" / ".lyceum" / "config.json"
    config.parent.mkdir(parents=True)
    return root, config


def write_login(config: Path, access: str, refresh: str | None) -> None:
    data = {"api_key": access, "base_url": "https://api.lyceum.technology", "active_org_slug": "standin-org"}
    if refresh:
        data["refresh_token"] = refresh
    config.write_text(json.dumps(data))
    config.chmod(0o600)


def cli(*args: str, secrets: tuple[str, ...] = ()) -> CliResult:
    result = run_runctl("--provider", "lyceum", *args)
    for secret in secrets:
        assert secret not in result.out and secret not in result.err
    return result


def refreshes(standin: StandIn) -> int:
    return sum(1 for r in standin.requests if r["path"].endswith("/auth/refresh"))


def test_an_expired_login_is_refreshed_and_saved_back(login_project: tuple[Path, Path], standin: StandIn) -> None:
    _, config = login_project
    access, refresh = standin.login(expires_in=-60)
    write_login(config, access, refresh)
    listed = cli("-o", "json", "price", secrets=(access, refresh))
    assert listed.code == 0, listed.err
    assert any(o["instance_type"] == "gpu.l40s" for o in listed.json()["offers"])
    assert refreshes(standin) == 1
    saved = json.loads(config.read_text())
    assert saved["api_key"] != access and saved["refresh_token"] != refresh  # rotated, as Lyceum answered
    assert saved["active_org_slug"] == "standin-org" and saved["base_url"] == "https://api.lyceum.technology"
    assert config.stat().st_mode & 0o777 == 0o600
    again = cli("price", secrets=(saved["api_key"], saved["refresh_token"]))
    assert again.code == 0 and refreshes(standin) == 1  # the saved token is still good: no second refresh
    checked = cli("-o", "json", "providers", "--check")
    row = next(r for r in checked.json()["providers"] if r["name"] == "lyceum")
    assert row["status"] == "accepted", row


def test_a_token_within_five_minutes_of_expiry_is_refreshed_first(
    login_project: tuple[Path, Path], standin: StandIn
) -> None:
    _, config = login_project
    access, refresh = standin.login(expires_in=200)  # still valid at Lyceum, but within the CLI's 300 s margin
    write_login(config, access, refresh)
    assert cli("price").code == 0 and refreshes(standin) == 1


def test_a_refused_refresh_says_to_log_in_again(login_project: tuple[Path, Path], standin: StandIn) -> None:
    _, config = login_project
    access, refresh = standin.login(expires_in=-60)
    standin.refresh_tokens.clear()  # revoked (logged out elsewhere)
    write_login(config, access, refresh)
    refused = cli("price", secrets=(access, refresh))
    assert refused.code == 3, (refused.code, refused.err)
    assert "lyceum auth login" in refused.err and "Invalid refresh token" in refused.err
    assert "Traceback" not in refused.err
    error = cli("-o", "json", "price").error()
    assert error["code"] == "credentials" and "lyceum auth login" in error["hint"]
    assert json.loads(config.read_text())["api_key"] == access  # nothing half-written


def test_an_expired_login_without_refresh_token(login_project: tuple[Path, Path], standin: StandIn) -> None:
    _, config = login_project
    access, _ = standin.login(expires_in=-60)
    write_login(config, access, None)
    listed = cli("providers")
    assert "expired" in listed.out and "lyceum auth login" in listed.out
    run = cli("price")
    assert run.code == 3 and "lyceum auth login" in run.err and "Traceback" not in run.err
    assert refreshes(standin) == 0


def test_a_long_command_refreshes_when_its_token_comes_due(
    lyceum_settings: dict[str, Any], standin: StandIn, tmp_path: Path, monkeypatch: Any
) -> None:
    """One client kept for a whole command (a run follows its job for hours): refreshed before the request that
    would go out within the margin, as the CLI refreshes before each command."""
    from runctl_core.models import ProviderContext
    from runctl_lyceum.auth import REFRESH_MARGIN, token_expiry
    from runctl_lyceum.compute import Context

    monkeypatch.delenv("LYCEUM_API_KEY")
    config = tmp_path / "home" / ".lyceum" / "config.json"
    config.parent.mkdir(parents=True)
    access, refresh = standin.login(expires_in=REFRESH_MARGIN + 1.5)  # due for refresh 1.5 s from now
    write_login(config, access, refresh)
    ctx = ProviderContext(provider="lyceum", state_dir=tmp_path / "state", settings=lyceum_settings, owner="t")
    client = Context(ctx).client
    assert client.machine_types() and refreshes(standin) == 0
    due = (token_expiry(access) or 0) - REFRESH_MARGIN
    deadline = time.monotonic() + 30
    while time.time() < due:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.machine_types() and refreshes(standin) == 1
    assert json.loads(config.read_text())["api_key"] != access

"""Every `runctl config set` refusal names the key, the accepted values or range, and an example; negative
numbers are values, not options."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("key", "value", "accepted", "example"),
    [
        ("run.max_restarts", "-1", "an integer from 0 to 100", "runctl config set run.max_restarts 3"),
        ("run.max_restarts", "abc", "an integer from 0 to 100", "runctl config set run.max_restarts 3"),
        ("run.spot", "perhaps", "true or false", "runctl config set run.spot true"),
        (
            "run.on_demand_fallback",
            "maybe",
            "'ask', 'always' or 'never'",
            "runctl config set run.on_demand_fallback ask",
        ),
        ("run.max_runtime", "forever", "a duration", "runctl config set run.max_runtime 24h"),
        ("run.timeout", "-5m", "a duration", "runctl config set run.timeout"),
        (
            "providers.local.grace_period",
            "-5",
            "a number of at least 0",
            "runctl config set providers.local.grace_period 10",
        ),
        ("providers.local.use_uv", "sometimes", "true or false", "runctl config set providers.local.use_uv true"),
    ],
)
def test_refusal_names_key_range_and_example(
    cli, project: Path, key: str, value: str, accepted: str, example: str
) -> None:
    before = (project / ".runctl.toml").read_text()
    refused = cli("config", "set", key, value)
    assert refused.code == 3, (refused.code, refused.err)
    assert key in refused.err and accepted in refused.err and example in refused.err, refused.err
    assert "Traceback" not in refused.err and "Input should be" not in refused.err
    assert (project / ".runctl.toml").read_text() == before
    doc = cli("config", "set", key, value, "--output", "json")
    error = doc.error()
    assert error["code"] == "config" and key in error["message"] and example in error["hint"]
    assert error["details"]["accepted"].startswith(accepted.split(" ")[0])


def test_unknown_key_lists_the_keys_of_its_table(cli, project: Path) -> None:
    refused = cli("config", "set", "run.nosuch", "1")
    assert refused.code == 3 and "run.nosuch" in refused.err
    assert "run.max_restarts" in refused.err and "runctl config show --defaults" in refused.err


def test_negative_numbers_are_values(cli, project: Path) -> None:
    assert cli("config", "set", "run.max_restarts", "0").code == 0
    refused = cli("config", "set", "providers.local.grace_period", "-1")
    assert refused.code == 3 and "No such option" not in refused.err


def test_default_provider_must_be_installed(cli, project: Path) -> None:
    refused = cli("config", "set", "default_provider", "nosuch")
    assert refused.code == 3 and "an installed provider" in refused.err and "local" in refused.err
    assert "runctl config set default_provider local" in refused.err
    assert "nosuch" not in (project / ".runctl.toml").read_text()
    assert cli("config", "set", "default_provider", "local").code == 0

from __future__ import annotations

from pathlib import Path

import pytest

from runctl_core.config import load_config, parse_value
from runctl_core.errors import ConfigError


def test_defaults_without_any_file(invoke, project: Path) -> None:
    (project / ".runctl.toml").unlink()
    result = invoke("-o", "json", "config", "show")
    assert result.code == 0
    doc = result.json()
    assert doc["config"]["default_provider"] == "local" and doc["sources"] == []
    assert doc["config"]["run"]["max_runtime"] == 86400


def test_init_set_show_validate(invoke, project: Path) -> None:
    (project / ".runctl.toml").unlink()
    assert invoke("config", "init").code == 0
    assert invoke("config", "init").code == 2  # exists
    assert invoke("config", "set", "run.max_runtime", "6h").code == 0
    assert invoke("config", "set", "run.spot", "true").code == 0
    assert invoke("config", "set", "providers.local.use_uv", "false").code == 0
    doc = invoke("-o", "json", "config", "show").json()
    assert doc["config"]["run"]["max_runtime"] == 6 * 3600 and doc["config"]["run"]["spot"] is True
    assert doc["config"]["providers"]["local"] == {"use_uv": False}
    valid = invoke("config", "validate")
    assert valid.code == 0 and "local" in valid.out


def test_bad_key_names_file_and_key(invoke, project: Path) -> None:
    (project / ".runctl.toml").write_text("[run]\nspto = true\n")
    result = invoke("-o", "json", "config", "validate")
    assert result.code == 3
    error = result.error()
    assert "spto" in error["message"] and ".runctl.toml" in error["message"] and error["code"] == "config"


def test_bad_value_lists_accepted_values(invoke, project: Path) -> None:
    (project / ".runctl.toml").write_text('[run]\non_demand_fallback = "maybe"\n')
    result = invoke("config", "show")
    assert result.code == 3
    assert "'ask', 'always' or 'never'" in result.err and "run.on_demand_fallback" in result.err


def test_bad_provider_setting_is_reported_with_its_key(invoke, project: Path) -> None:
    (project / ".runctl.toml").write_text("[providers.local]\nuse_uvv = true\n")
    result = invoke("run", "examples/train.py")
    assert result.code == 3
    assert "providers.local.use_uvv" in result.err


def test_set_rejects_invalid_value_and_keeps_file(invoke, project: Path) -> None:
    before = (project / ".runctl.toml").read_text()
    result = invoke("config", "set", "run.max_restarts", "--", "-4")
    assert result.code == 3
    assert (project / ".runctl.toml").read_text() == before


def test_invalid_toml(invoke, project: Path) -> None:
    (project / ".runctl.toml").write_text("[run\n")
    result = invoke("status")
    assert result.code == 3 and "not valid TOML" in result.err


def test_project_file_found_upward_and_overrides_user(project: Path, tmp_path: Path) -> None:
    user = tmp_path / "xdg-config" / "runctl" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('default_provider = "aws"\n[run]\nmax_restarts = 7\n')
    (project / ".runctl.toml").write_text('default_provider = "local"\n')
    nested = project / "a" / "b"
    nested.mkdir(parents=True)
    import os

    os.chdir(nested)
    loaded = load_config()
    assert loaded.config.default_provider == "local" and loaded.config.run.max_restarts == 7
    assert loaded.sources == [user, project / ".runctl.toml"]


def test_explicit_config_missing(invoke, project: Path) -> None:
    result = invoke("--config", "nope.toml", "status")
    assert result.code == 3 and "does not exist" in result.err


def test_parse_value() -> None:
    assert parse_value("true") is True and parse_value("3") == 3 and parse_value("eu-west-1") == "eu-west-1"
    assert parse_value('"x y"') == "x y" and parse_value("[1, 2]") == [1, 2]


def test_duration_errors() -> None:
    with pytest.raises(ConfigError):
        from runctl_core.config import Config, describe_validation_error

        try:
            Config.model_validate({"run": {"timeout": "soon"}})
        except Exception as exc:
            raise describe_validation_error(exc, "x.toml") from None  # type: ignore[arg-type]


def test_set_rejects_invalid_provider_value_and_keeps_file(invoke, project: Path) -> None:
    before = (project / ".runctl.toml").read_text()
    bad = (["providers.local.grace_period", "--", "-3"], ["providers.local.bogus", "1"], ["providers.nosuch.x", "1"])
    for args in bad:
        result = invoke("config", "set", *args)
        assert result.code == 3, (args, result.err)
        assert (project / ".runctl.toml").read_text() == before
    assert invoke("config", "validate").code == 0


def test_table_for_a_provider_not_installed_names_the_file(invoke, project: Path) -> None:
    (project / ".runctl.toml").write_text("[providers.default_provider]\n")
    result = invoke("config", "validate")
    assert result.code == 3
    assert ".runctl.toml" in result.err and "providers.default_provider" in result.err and "hint:" in result.err

"""Job-file `env` (and `args`) values are never silently converted by YAML: numbers keep their written form
(`1e-3` stays `1e-3`), booleans/nulls/lists/maps are refused with file:line, the key and how to write it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHOW = (
    "import json, os, sys\n"
    "print('ENV=' + json.dumps({k: os.environ[k] for k in sorted(os.environ) if k.startswith('X_')}))\n"
    "print('ARGS=' + json.dumps(sys.argv[1:]))\n"
)


def _job(project: Path, env_lines: str, args: str = "[]") -> None:
    (project / "show.py").write_text(SHOW)
    (project / "runctl.yaml").write_text(f"script: show.py\nargs: {args}\nenv:\n{env_lines}")


def test_numbers_keep_their_written_form(cli, project: Path) -> None:
    _job(
        project,
        "  X_LR: 1e-3\n  X_RATE: 0.0010\n  X_SEED: 010\n  X_BIG: 1_000\n  X_HEX: 0x1F\n"
        "  X_TXT: 'yes'\n  X_DATE: 2024-01-02\n",
        args="[--lr, 1e-3, --steps, 0100]",
    )
    plan = cli("run", "--dry-run", "--output", "json")
    assert plan.code == 0, plan.err
    assert plan.json()["job"]["args"] == ["--lr", "1e-3", "--steps", "0100"]
    result = cli("run", "--output", "json")
    assert result.code == 0, result.err
    log = cli("logs", result.json()["job"]["job_id"]).out
    env = json.loads(next(line for line in log.splitlines() if line.startswith("ENV="))[4:])
    assert env == {
        "X_LR": "1e-3",
        "X_RATE": "0.0010",
        "X_SEED": "010",
        "X_BIG": "1_000",
        "X_HEX": "0x1F",
        "X_TXT": "yes",
        "X_DATE": "2024-01-02",
    }
    args = json.loads(next(line for line in log.splitlines() if line.startswith("ARGS="))[5:])
    assert args == ["--lr", "1e-3", "--steps", "0100"]


@pytest.mark.parametrize(
    ("value", "kind", "quoted"),
    [
        ("yes", "a boolean", 'X_FLAG: "yes"'),
        ("True", "a boolean", 'X_FLAG: "True"'),
        ("off", "a boolean", 'X_FLAG: "off"'),
        ("~", "null", 'X_FLAG: ""'),
        ("", "null", 'X_FLAG: ""'),
        ("[1, 2]", "a list", 'X_FLAG: "[1, 2]"'),
        ("{a: 1}", "a mapping", 'X_FLAG: "{a: 1}"'),
    ],
)
def test_booleans_nulls_lists_and_maps_are_refused(cli, project: Path, value: str, kind: str, quoted: str) -> None:
    _job(project, f"  X_OK: fine\n  X_FLAG: {value}\n")
    result = cli("run", "--dry-run")
    assert result.code == 3, (result.code, result.err)
    assert "runctl.yaml:5: env.X_FLAG" in result.err and kind in result.err, result.err
    assert quoted in result.err, result.err
    error = cli("run", "--dry-run", "--output", "json").error()
    assert "env.X_FLAG" in error["message"] and "quote" in error["hint"] + error["message"]


def test_a_boolean_arg_is_refused_too(cli, project: Path) -> None:
    _job(project, "  X_OK: fine\n", args="[--verbose, yes]")
    result = cli("run", "--dry-run")
    assert result.code == 3 and "runctl.yaml:2: args.1" in result.err and '"yes"' in result.err, result.err


def test_python_api_refuses_non_text_env(project: Path) -> None:
    from runctl_core.errors import RunctlError
    from runctl_core.jobfile import Job

    assert Job(script="x.py", env={"A": 1e-3, "B": 3}).env == {"A": "0.001", "B": "3"}
    with pytest.raises((RunctlError, ValueError)) as refused:
        Job(script="x.py", env={"DEBUG": True})
    assert "DEBUG" in str(refused.value) and "string" in str(refused.value)

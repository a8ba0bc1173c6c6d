"""Errors: a message and a hint, JSON on stderr in JSON mode, the documented exit codes, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (["run", "missing.py"], 2, "usage"),
        (["run", "examples/train.py", "--spot"], 2, "unsupported"),
        (["run", "examples/train.py", "--gpu", "A100"], 2, "unsupported"),
        (["run", "examples/train.py", "--instance-type", "huge"], 2, "usage"),
        (["--provider", "nosuch", "run", "examples/train.py"], 3, "plugin"),
        (["status", "job-000000"], 2, "usage"),
        (["logs", "job-000000"], 2, "usage"),
        (["terminate", "i-000000", "--yes"], 2, "usage"),
        (["run", "examples/train.py", "--timeout", "soon"], 2, "usage"),
        (["run", "examples/train.py", "--env", "NOEQUALS"], 2, "usage"),
        (["bogus-command"], 2, "usage"),
        (["run"], 2, "usage"),
    ],
)
def test_errors_are_json_with_hint(cli, project: Path, args: list[str], code: int, kind: str) -> None:
    result = cli("--output", "json", *args)
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    error = result.error()
    assert error["code"] == kind and error["message"] and error["hint"]
    assert result.out == ""


def test_text_errors_have_hint_and_no_traceback(cli, project: Path) -> None:
    result = cli("run", "missing.py")
    assert result.code == 2
    assert result.err.startswith("error: script missing.py does not exist")
    assert "hint:" in result.err and "Traceback" not in result.err


def test_output_after_command_is_accepted(cli, project: Path) -> None:
    result = cli("status", "--output", "json", "--provider", "local")
    assert result.code == 0 and "summary" in result.json()


def test_script_outside_project(cli, project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("print(1)\n")
    result = cli("run", str(outside))
    assert result.code == 2 and "outside the project" in result.err


def test_secrets_never_printed(cli, project: Path) -> None:
    secret = "rpa_SUPERSECRET1234567890"
    result = cli("run", "missing.py", "--env", f"X={secret}", env={"RUNPOD_API_KEY": secret})
    assert secret not in result.out + result.err
    result = cli(
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--env",
        f"X={secret}",
        "--",
        "--epochs",
        "1",
        env={"MY_TOKEN": "tok_abcdefghijkl"},
    )
    assert result.code == 0
    assert secret not in result.out + result.err


def test_output_id_is_refused_before_a_command_without_id_changes_anything(cli, project: Path) -> None:
    before = (project / ".runctl.toml").read_text()
    result = cli("config", "set", "run.timeout", "2h", "--output", "id")
    assert result.code == 2 and "produces no id" in result.err
    assert (project / ".runctl.toml").read_text() == before
    instance_id = cli("-o", "id", "create").out.strip()
    result = cli("resources", "cleanup", "--all", "--yes", "--output", "id")
    assert result.code == 2 and "produces no id" in result.err
    assert cli("status").out.strip() == "1 instance running, $0.00/h, 0 jobs active"
    cli("terminate", instance_id, "--yes")


def test_unknown_id_for_status_or_terminate_is_neither_job_nor_instance(cli, project: Path) -> None:
    for args in (["status", "job-000000"], ["terminate", "job-000000", "--yes"]):
        result = cli(*args)
        assert result.code == 2
        assert "no job or instance 'job-000000'" in result.err and "runctl status --all" in result.err
    assert "no instance 'job-000000'" in cli("sync", "job-000000").err

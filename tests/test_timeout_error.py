"""A job killed by --timeout says so: the timeout, and what to do (not `exited with code 0` / `-15`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_a_job_killed_by_timeout_says_it_timed_out(project: Path, cli: Any) -> None:
    text = cli("run", "examples/train.py", "--timeout", "2s", "--", "--epochs", "100", "--sleep", "0.5")
    assert text.code == 1, text.err  # README: a failed job (exit 1), with the reason
    error = [line for line in text.err.splitlines() if line.startswith("error:")]
    assert error and "timed out" in error[0] and "--timeout 2s" in error[0], text.err
    assert "exited with code" not in error[0]
    hint = [line for line in text.err.splitlines() if line.startswith("hint:")]
    assert hint and "raise --timeout" in hint[0] and "checkpoint" in hint[0], text.err
    as_json = cli(
        "-o", "json", "run", "examples/train.py", "--timeout", "2s", "--", "--epochs", "100", "--sleep", "0.5"
    )
    assert as_json.code == 1
    assert "timed out" in as_json.error()["message"] and as_json.error()["code"] == "job_timed_out", as_json.err


def test_the_python_api_raises_job_timed_out(project: Path) -> None:
    import pytest

    import runctl

    with pytest.raises(runctl.JobTimedOut) as timed_out:
        runctl.run("examples/train.py", args=["--epochs", "100", "--sleep", "0.5"], timeout="2s")
    assert isinstance(timed_out.value, runctl.JobFailed) and "--timeout 2s" in timed_out.value.message

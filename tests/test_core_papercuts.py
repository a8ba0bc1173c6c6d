"""Papercuts found by review, through the real CLI: a command's option written before the command gets the
corrected line; every mistake in a job file exits 3 (README); a RunPod dry run without a GPU is a usage error."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_a_command_option_before_the_command_gets_the_corrected_line(cli: Any, project: Path) -> None:
    result = cli("-f", "x.yaml", "run")
    assert result.code == 2
    assert "hint: `-f` goes after the command: runctl run -f x.yaml" in result.err, result.err
    as_json = cli("-o", "json", "--file=x.yaml", "run", "--dry-run")
    assert as_json.code == 2
    assert as_json.error()["hint"] == "`--file` goes after the command: runctl -o json run --file=x.yaml --dry-run"


def test_every_job_file_mistake_exits_3(cli: Any, project: Path) -> None:
    (project / "empty.yaml").write_text("")
    (project / "typo.yaml").write_text("scrpt: examples/train.py\n")
    (project / "both.yaml").write_text("script: examples/train.py\ncommand: echo hi\n")
    for name, words in (("empty", "no script to run"), ("typo", "unknown key"), ("both", "not both")):
        result = cli("-o", "json", "run", "-f", f"{name}.yaml", "--dry-run")
        assert result.code == 3 and words in result.error()["message"], (name, result.err)
        assert result.error()["code"] == "config", result.err
    assert cli("run", "--dry-run").code == 2  # no job file and no SCRIPT: a command-line mistake


def test_runpod_dry_run_without_a_gpu_is_a_usage_error(cli: Any, project: Path) -> None:
    result = cli("--provider", "runpod", "-o", "json", "run", "examples/train.py", "--dry-run")
    assert result.code == 2, result.out
    assert "--gpu" in result.error()["hint"] and "GPU" in result.error()["message"]
    assert "<--gpu required>" not in result.out
    planned = cli("--provider", "runpod", "-o", "json", "run", "examples/train.py", "--dry-run", "--gpu", "RTX 4090")
    assert planned.code == 0, planned.err

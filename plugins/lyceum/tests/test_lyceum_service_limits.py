"""Through the CLI, against the stand-in behaving as Lyceum documents (and, where Lyceum documents nothing, in each
reading): the 600 s cap on Python executions, import_files landing elsewhere, code run off the main thread, no
storage mount, system_errors as objects, a refused abort, a refused key."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from lyceum_standin import API_KEY, StandIn

from runctl_core.testing.cli import CliResult, isolate, run_runctl

REPO = Path(__file__).resolve().parents[3]


def write_settings(root: Path, settings: dict[str, Any]) -> None:
    (root / ".runctl.toml").write_text(tomli_w.dumps({"providers": {"lyceum": settings}}))


@pytest.fixture
def project(tmp_path: Path, lyceum_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "train.py", root / "examples" / "train.py")
    write_settings(root, lyceum_settings)
    isolate(monkeypatch, tmp_path / "runctl-home", tmp_path / "xdg")
    monkeypatch.chdir(root)
    return root


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> CliResult:
    result = run_runctl("--provider", "lyceum", *args, env=env, timeout=timeout)
    assert API_KEY not in result.out and API_KEY not in result.err
    return result


def starts(standin: StandIn) -> list[dict[str, Any]]:
    return [r for r in standin.requests if r["method"] == "POST" and r["path"].endswith("/start")]


# ------------------------------------------------------------------------------------------ Lyceum 1: the 600 s cap


def test_python_execution_timeout_follows_timeout_and_ends_visibly(project: Path, standin: StandIn) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--timeout", "2s", "--", "--epochs", "50", "--sleep", "0.5")
    assert result.code == 1, result.err
    (execution,) = standin.executions.values()
    assert execution.kind == "python" and execution.body["timeout"] == 2
    assert execution.status == "timeout"
    job = result.json()["job"]
    assert job["state"] == "failed" and "timeout of 2 s" in job["message"]


def test_a_job_longer_than_600s_runs_as_an_image_execution(project: Path, standin: StandIn) -> None:
    dry = cli("-o", "json", "run", "examples/train.py", "--timeout", "2h", "--dry-run", env={"LYCEUM_API_KEY": ""})
    assert dry.code == 0, dry.err
    assert "/execution/image/start" in dry.out and "/execution/streaming/start" not in dry.out
    result = cli("-o", "json", "run", "examples/train.py", "--timeout", "2h", "--", "--epochs", "2")
    assert result.code == 0, result.err
    (execution,) = standin.executions.values()
    assert execution.kind == "image" and execution.body["timeout"] == 7200
    assert execution.body["docker_image_ref"] == "python:3.12-slim"
    names = sorted(Path(p).name for p in result.json()["checkpoints"])
    assert "metrics.json" in names  # the checkpoints came back through storage, as for Python executions


def test_a_long_job_is_refused_before_anything_starts(
    project: Path, standin: StandIn, lyceum_settings: dict[str, Any]
) -> None:
    write_settings(project, {**lyceum_settings, "long_job_image": ""})
    result = cli("-o", "json", "run", "examples/train.py", "--timeout", "2h")
    assert result.code == 2, result.err
    error = result.error()
    assert "600 s" in error["message"] and "nothing was started" in error["message"]
    assert "--timeout 600" in error["hint"]
    assert starts(standin) == [] and standin.executions == {}


def test_an_image_timeout_the_api_refuses_stops_the_job_before_it_runs(project: Path, standin: StandIn) -> None:
    standin.image_timeout_max = 600  # the other reading of the CLI's notebook help ("max: 600")
    result = cli("-o", "json", "run", "examples/train.py", "--timeout", "2h")
    assert result.code == 2, result.err
    assert "timeout" in result.error()["message"]
    assert standin.executions == {}
    listed = cli("-o", "json", "resources", "list")
    assert listed.code == 0 and "lyc-" not in listed.out  # the free reservation was ended too


# ------------------------------------------------------------------------------------------ Lyceum 2: undocumented


def test_project_found_by_its_marker_when_import_files_land_elsewhere(project: Path, standin: StandIn) -> None:
    standin.import_subdir = "workspace/imported"
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "2")
    assert result.code == 0, result.err
    assert "metrics.json" in [Path(p).name for p in result.json()["checkpoints"]]


def test_code_run_off_the_main_thread_still_trains(project: Path, standin: StandIn) -> None:
    standin.python_in_thread = True
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "2")
    assert result.code == 0, result.err
    (execution,) = standin.executions.values()
    assert "not the main thread" in standin.text(execution.id)


def test_no_storage_mount_fails_loudly_instead_of_succeeding_with_nothing(
    project: Path, standin: StandIn, lyceum_settings: dict[str, Any], tmp_path: Path
) -> None:
    write_settings(project, {**lyceum_settings, "storage_mount": str(tmp_path / "not-mounted")})
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "2")
    assert result.code == 1, result.err
    job = result.json()["job"]
    assert job["state"] == "failed" and "not mounted" in job["message"]
    assert "nothing was collected" in job["message"]


# ------------------------------------------------------------------------------------------ Lyceum 3


def test_system_errors_as_objects_are_reported(project: Path, standin: StandIn) -> None:
    standin.system_failure_next = True
    standin.system_error_objects = True
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "20", "--sleep", "0.2")
    assert result.code == 1, result.err
    job = result.json()["job"]
    assert job["state"] == "lost" and "node_lost: node lost" in job["message"]


def test_a_refused_abort_falls_back_to_stop(project: Path, standin: StandIn) -> None:
    started = cli("-o", "id", "run", "examples/train.py", "--detach", "--", "--epochs", "200", "--sleep", "0.3")
    assert started.code == 0, started.err
    job_id = started.out.strip()
    (execution,) = standin.executions.values()
    deadline = time.monotonic() + 60
    while "epoch 1/200" not in standin.text(execution.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    standin.fail("POST", r"/workloads/abort/", 400, times=5, detail="Execution cannot be aborted in its state")
    result = cli("-o", "json", "terminate", job_id, "--yes")
    assert result.code == 0, result.err
    assert standin.wait_terminal(execution.id).status in ("completed", "aborted", "cancelled")
    assert execution.ended_by == "stop"


# ------------------------------------------------------------------------------------------ across: --check


def test_providers_check_says_refused_for_a_rejected_key(project: Path, standin: StandIn) -> None:
    ok = cli("-o", "json", "providers", "--check")
    lyceum = next(p for p in ok.json()["providers"] if p["name"] == "lyceum")
    assert lyceum["status"] == "accepted", lyceum
    bad = cli("-o", "json", "providers", "--check", env={"LYCEUM_API_KEY": "lk_wrong_key_value"})
    assert bad.code != 0, bad.out
    lyceum = next(p for p in bad.json()["providers"] if p["name"] == "lyceum")
    assert lyceum["status"] == "refused", lyceum
    text = cli("providers", "--check", env={"LYCEUM_API_KEY": "lk_wrong_key_value"})
    assert text.code != 0 and "refused" in text.out
    found = cli("-o", "json", "providers", env={"LYCEUM_API_KEY": "lk_wrong_key_value"})
    assert found.code == 0  # without --check nothing is asked: "found" only
    assert next(p for p in found.json()["providers"] if p["name"] == "lyceum")["status"] == "found"

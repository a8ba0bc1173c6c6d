"""Never lose work (issue 10, items 3-5): checkpoints are collected before an instance is terminated on Ctrl-C
and on `terminate JOB`, --resume-from continues from them, a detached run honours --outputs, and status shows a
detached job that has ended as ended."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runctl_core.testing.cli import run_runctl, runctl_executable


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [runctl_executable(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_checkpoints(home: Path, at_least: int, timeout: float = 120) -> str:
    """The job id once its sandbox holds ``at_least`` checkpoints (polled: no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_dir in home.glob("providers/local/instances/*/jobs/*"):
            if len(list((job_dir / "checkpoints").glob("ckpt-*.json"))) >= at_least:
                return job_dir.name
        time.sleep(0.1)
    raise AssertionError("the job wrote no checkpoints in time")


def _wait_until(check, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_ctrl_c_collects_checkpoints_and_resume_from_continues(cli, home: Path, project: Path) -> None:
    proc = _start(["run", "examples/train.py", "--", "--epochs", "40", "--sleep", "0.3", "--keep", "50"])
    job_id = _wait_for_checkpoints(home, 2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert f"collecting the checkpoints of {job_id} before terminating" in err and "(at most 120s)" in err
    listed = cli("checkpoint", "list", job_id, "--output", "json").json()
    local = [c["name"] for c in listed["checkpoints"] if c["where"] == "local"]
    assert "ckpt-0002.json" in local, listed
    assert cli("status", "--output", "json").json()["summary"]["instances_running"] == 0  # nothing left running
    resumed = cli(
        "run",
        "examples/train.py",
        "--resume-from",
        job_id,
        "--output",
        "json",
        "--",
        "--epochs",
        "4",
        "--samples",
        "200",
    )
    assert resumed.code == 0, resumed.err
    log = cli("logs", resumed.json()["job"]["job_id"]).out
    assert "resumed from ckpt-" in log and "epochs 0->" not in log


@pytest.mark.slow
def test_terminate_job_collects_before_terminating(cli, home: Path, project: Path) -> None:
    started = cli("run", "examples/train.py", "--detach", "--output", "id", "--", "--epochs", "40", "--sleep", "0.3")
    assert started.code == 0, started.err
    job_id = started.out.strip()
    _wait_for_checkpoints(home, 1)
    stopped = cli("terminate", job_id, "--yes")
    assert stopped.code == 0, stopped.err
    assert f"collecting the checkpoints of {job_id}" in stopped.err
    listed = cli("checkpoint", "list", job_id, "--output", "json").json()
    assert any(c["where"] == "local" and c["name"].startswith("ckpt-") for c in listed["checkpoints"]), listed
    assert cli("status", job_id, "--output", "json").json()["state"] == "cancelled"


@pytest.mark.slow
def test_detached_run_honours_outputs_and_status_sees_it_end(cli, home: Path, project: Path) -> None:
    started = cli(
        "run",
        "examples/train.py",
        "--detach",
        "--outputs",
        "out",
        "--output",
        "json",
        "--",
        "--epochs",
        "2",
        "--samples",
        "200",
    )
    assert started.code == 0, started.err
    job_id = started.json()["job"]["job_id"]
    sandbox_job = next(home.glob(f"providers/local/instances/*/jobs/{job_id}"))
    _wait_until(lambda: json.loads((sandbox_job / "job.json").read_text()).get("state") == "succeeded")
    summary = cli("status", "--output", "json").json()  # no id: active jobs are refreshed first
    assert summary["summary"]["jobs_active"] == 0 and summary["summary"]["instances_running"] == 0, summary
    assert (project / "out" / job_id / "metrics.json").is_file()  # collected into --outputs DIR/JOB_ID
    jobs = cli("jobs", "--all", "--output", "json").json()["jobs"]
    assert [j["state"] for j in jobs if j["job_id"] == job_id] == ["succeeded"]


def test_detach_with_recover_is_refused(cli, project: Path) -> None:
    result = cli("run", "examples/train.py", "--detach", "--recover")
    assert result.code == 2 and "--recover cannot be honoured with --detach" in result.err


@pytest.mark.slow
def test_create_and_train_jobs_are_collected_when_they_end(cli, home: Path, project: Path) -> None:
    instance = cli("create", "--output", "id").out.strip()
    job_id = cli(
        "train", instance, "examples/train.py", "--output", "id", "--", "--epochs", "1", "--samples", "100"
    ).out.strip()
    _wait_until(lambda: cli("jobs", instance, "--output", "json").json()["jobs"] == [])  # refreshed: ended
    listed = cli("checkpoint", "list", job_id, "--output", "json").json()
    assert any(c["where"] == "local" and c["name"] == "metrics.json" for c in listed["checkpoints"]), listed
    assert cli("status", instance, "--output", "json").json()["state"] == "running"  # kept: not terminated
    assert cli("terminate", instance, "--yes").code == 0
    pulled = cli("checkpoint", "pull", job_id, "pulled", "--output", "json")
    assert pulled.code == 0 and (project / "pulled" / "metrics.json").is_file(), pulled.err
    assert run_runctl("status", "--output", "json").json()["summary"]["instances_running"] == 0

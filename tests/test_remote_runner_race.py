"""The runner's job_record race fixed in commit 17329e8, made deterministic.

``job_record`` reads ``job.json``, then checks whether the recorded supervisor is alive. A supervisor that
records its end and exits between those two steps used to make a finished job ``lost`` (seen once in
tests/test_parallel_runs.py, never reproduced on purpose). Here the liveness check is paused exactly there:
a real supervisor process writes the job's end and exits, then the real check runs and finds it gone. Against
the code before 17329e8 this test fails with state "lost"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runctl_core.remote import runner_records as records
from runctl_core.remote.runner_procs import start_time


def test_supervisor_ends_between_the_record_read_and_the_liveness_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_dir = str(tmp_path / "job-race01")
    Path(job_dir).mkdir()
    supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        start = start_time(supervisor.pid)
        records._write_state(
            job_dir, state="running", job_id="job-race01", supervisor_pid=supervisor.pid, supervisor_start=start
        )
        real_check = records._supervising
        paused: list[Any] = []

        def pause_at_the_liveness_check(state: dict[str, Any], directory: str) -> bool:
            # job_record has read the record ("running"); now the supervisor records the end and exits
            assert state["state"] == "running"
            records._write_state(directory, state="succeeded", exit_code=0, ended_at=records._now(), message="")
            supervisor.kill()
            supervisor.wait(timeout=60)
            alive = bool(real_check(state, directory))
            paused.append(alive)
            return alive

        monkeypatch.setattr(records, "_supervising", pause_at_the_liveness_check)
        record = records.job_record(job_dir)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=60)
    assert paused == [False]  # the pause happened and the real check found the supervisor gone
    assert record["state"] == "succeeded", record
    assert record["exit_code"] == 0


def test_a_supervisor_gone_without_an_end_is_still_lost(tmp_path: Path) -> None:
    job_dir = str(tmp_path / "job-race02")
    Path(job_dir).mkdir()
    supervisor = subprocess.Popen([sys.executable, "-c", "pass"])
    supervisor.wait(timeout=60)
    records._write_state(job_dir, state="running", job_id="job-race02", supervisor_pid=supervisor.pid)
    record = records.job_record(job_dir)
    assert record["state"] == "lost" and "supervisor is gone" in record["message"]

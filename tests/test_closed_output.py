"""A run whose output pipe closes early (``runctl run train.py 2>&1 | head -4``) still ends what it created:
no write during cleanup may abort it, and the process exits with the interrupted code, without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from runctl_core.testing.cli import runctl_executable
from runctl_core.testing.faults import pids_alive

RUNCTL = runctl_executable()


def _job_record(home: Path) -> dict[str, Any] | None:
    for path in home.glob("providers/local/instances/*/jobs/*/job.json"):
        record = json.loads(path.read_text())
        if record.get("pid"):
            return dict(record)
    return None


def test_closed_output_pipe_terminates_the_run_and_exits_130(home: Path, project: Path, cli: Any) -> None:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(  # stdout and stderr are one pipe, as with `2>&1 | head -4`
        [RUNCTL, "run", "examples/train.py", "--", "--epochs", "300", "--sleep", "0.2"],
        stdout=write_end,
        stderr=write_end,
        stdin=subprocess.DEVNULL,
        env=os.environ,
    )
    os.close(write_end)
    reader = os.fdopen(read_end, "rb")
    lines = 0
    deadline = time.monotonic() + 90
    record = None
    while time.monotonic() < deadline and (lines < 4 or record is None):
        if reader.readline():
            lines += 1
        record = record or _job_record(home)
    assert record is not None, "the job never started"
    reader.close()  # `head -4` is done: every later write gets EPIPE
    proc.wait(timeout=120)
    assert proc.returncode == 130
    deadline = time.monotonic() + 30
    while pids_alive([record["pid"]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive([record["pid"]]) == [], "the job of a run whose output closed is still running"
    listed = cli("-o", "json", "resources", "list").json()["resources"]
    assert [r for r in listed if r.get("state") in ("running", "pending", "starting")] == [], listed
    jobs = cli("-o", "json", "jobs", "--all").json()["jobs"]
    assert [job["state"] for job in jobs] == ["cancelled"], jobs

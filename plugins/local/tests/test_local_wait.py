"""The local provider's wait_change: between status polls, runctl waits on the job's supervisor process itself
(a pidfd), so a job that ends is seen ended at once; a record it cannot trust (another process now has the pid,
no pid yet) makes it fall back to the core's plain sleep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runctl_core.remote.runner import start_time
from runctl_local.sandbox import wait_for_supervisor

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfd_open is Linux-only")


def _record(job_dir: Path, **fields: object) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.json").write_text(json.dumps({"state": "running", **fields}))


def test_returns_when_the_supervisor_ends(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    try:
        _record(tmp_path / "job", supervisor_pid=proc.pid, supervisor_start=start_time(proc.pid))
        # a generous bound: it returns because the process ended, long before 120 s
        assert wait_for_supervisor(tmp_path / "job", 120) is True
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_recycled_pid_or_no_pid_is_not_waited_on(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _record(tmp_path / "other", supervisor_pid=proc.pid, supervisor_start="1")  # not this process's start
        assert wait_for_supervisor(tmp_path / "other", 120) is False
        _record(tmp_path / "pending", supervisor_pid=None)
        assert wait_for_supervisor(tmp_path / "pending", 120) is False
        assert wait_for_supervisor(tmp_path / "missing", 120) is False
        assert proc.poll() is None  # nothing was waited for: the process still runs
    finally:
        proc.kill()
        proc.wait()

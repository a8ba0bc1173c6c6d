"""Signals and a contended state store, through the real CLI: an interrupt never leaves work running."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from runctl_core.testing.cli import runctl_executable
from runctl_core.testing.faults import pids_alive

RUNCTL = runctl_executable()


def _start_long_run(home: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [RUNCTL, "-o", "json", *extra, "run", "examples/train.py", "--", "--epochs", "200", "--sleep", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = list(home.glob("providers/local/instances/*/jobs/*/job.json"))
        if found:
            record = json.loads(found[0].read_text())
            if record.get("pid"):
                return proc, record
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the job never started")


def _hold_write_lock(home: Path) -> sqlite3.Connection:
    """Another runctl writing: hold the state store's write lock (as a long transaction would)."""
    conn = sqlite3.connect(home / "state.db", isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_ctrl_c_while_another_runctl_holds_the_write_lock_still_terminates(home: Path, project: Path) -> None:
    proc, record = _start_long_run(home)
    lock = _hold_write_lock(home)
    try:
        time.sleep(2.5)  # the run's next journal write is now waiting for the lock
        proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 20
    while pids_alive([record["pid"]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive([record["pid"]]) == [], "the job of an interrupted run is still running"
    assert "Traceback" not in err


def test_sigterm_while_the_lock_is_held_terminates_too(home: Path, project: Path) -> None:
    proc, record = _start_long_run(home)
    lock = _hold_write_lock(home)
    try:
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 20
    while pids_alive([record["pid"]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive([record["pid"]]) == []


def test_a_held_lock_is_reported_and_bounded(home: Path, project: Path) -> None:
    first = subprocess.run([RUNCTL, "status"], capture_output=True, text=True, env=os.environ, timeout=60)
    assert first.returncode == 0, first.stderr
    lock = _hold_write_lock(home)
    try:
        started = time.monotonic()
        blocked = subprocess.run(
            [RUNCTL, "-o", "json", "create"],
            capture_output=True,
            text=True,
            env={**os.environ, "RUNCTL_LOCK_TIMEOUT": "3"},
            timeout=60,
        )
        waited = time.monotonic() - started
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert blocked.returncode == 5, blocked.stderr
    assert "state.db" in blocked.stderr and "waiting" in blocked.stderr
    error = json.loads(blocked.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "state_locked" and "another runctl" in error["message"]
    assert waited < 100  # bounded by RUNCTL_LOCK_TIMEOUT, not by sqlite's 25 minutes of retries

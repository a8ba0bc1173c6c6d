"""Signals and a contended state store, through the real CLI: an interrupt never leaves work running."""

from __future__ import annotations

import json
import os
import re
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


def test_sigterm_during_train_wait_is_handled(cli, home: Path, project: Path) -> None:
    instance_id = cli("-o", "id", "create").out.strip()
    proc = subprocess.Popen(
        [RUNCTL, "train", instance_id, "examples/train.py", "--wait", "--", "--epochs", "200", "--sleep", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(home.glob("providers/local/instances/*/jobs/*/job.json")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "keeps running" in err and "Traceback" not in err
    assert cli("terminate", instance_id, "--yes").code == 0


def test_sigterm_during_resources_cleanup_and_sync_exit_130(cli, home: Path, project: Path) -> None:
    # a command that is only reading or deciding: SIGTERM must end it as an interrupt (130), not kill it (-15)
    instance_id = cli("-o", "id", "create").out.strip()
    (project / "big").mkdir()
    for i in range(3000):
        (project / "big" / f"f{i}.txt").write_text(str(i) * 50)
    proc = subprocess.Popen(
        [RUNCTL, "sync", instance_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    time.sleep(0.8)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err  # 0 only when it had already finished
    assert "Traceback" not in err
    assert cli("terminate", instance_id, "--yes").code == 0


def _before_handlers(frame: str) -> bool:
    """A frame in cli/main.py's first lines, before it installs its start-up handlers."""
    match = re.search(r'runctl_core/cli/main\.py", line (\d+)', frame)
    return bool(match) and int(match.group(1)) < 20


def test_no_traceback_when_interrupted_at_start_up(home: Path, project: Path) -> None:
    for delay in (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3):
        proc = subprocess.Popen(
            [RUNCTL, "status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        # before runctl's first line runs (the interpreter's start-up, the console script's first import) Python's
        # own handler is in place: that window is documented; from runctl's first line on, no traceback
        frames = [line.strip() for line in err.splitlines() if line.strip().startswith('File "')]
        assert not [f for f in frames if "runctl_core" in f and not _before_handlers(f)], (delay, err)
        if proc.returncode == 1 and err.strip() == "KeyboardInterrupt" and not frames:
            # interrupted inside the interpreter's own start-up (site import, before any runctl frame): Python
            # prints the bare exception name and exits 1; outside runctl's reach, and documented in the README
            continue
        if "init_import_site" in err:
            continue  # the interpreter itself was still starting (it exits 1): before any runctl code ran
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err)


STUBBORN = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("started", flush=True)
for _ in range(600):
    time.sleep(0.1)
"""


def test_second_ctrl_c_never_claims_nothing_is_left_running_while_it_runs(home: Path, project: Path) -> None:
    (project / ".runctl.toml").write_text("[providers.local]\nuse_uv = false\ngrace_period = 20.0\n")
    (project / "stubborn.py").write_text(STUBBORN)
    proc = subprocess.Popen(
        [RUNCTL, "run", "stubborn.py"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    record: dict[str, object] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not record.get("pid"):
        found = list(home.glob("providers/local/instances/*/jobs/*/job.json"))
        record = json.loads(found[0].read_text()) if found else {}
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)  # cleanup is now waiting for the job, which ignores SIGTERM, to end
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    alive = pids_alive([record["pid"]])  # type: ignore[list-item]
    try:
        assert proc.returncode == 130, err
        if alive:
            assert "nothing is left running" not in err, err
            assert "resources cleanup" in err
    finally:
        for pid in alive:
            os.kill(pid, signal.SIGKILL)

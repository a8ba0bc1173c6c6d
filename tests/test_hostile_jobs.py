"""Hostile or careless jobs: processes that escape their group, huge logs, and runctl's own variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runctl_core.testing.cli import runctl_executable
from runctl_core.testing.faults import pids_alive

RUNCTL = runctl_executable()

ESCAPE = """\
import os, sys, time
pidfile = sys.argv[1]
mode = sys.argv[2]
if mode == "double-fork":
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(300)
            os._exit(0)
        os._exit(0)
elif mode == "setpgid":
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        time.sleep(300)
        os._exit(0)
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(str(pid))
    os.rename(pidfile + ".tmp", pidfile)
while not os.path.exists(pidfile):
    time.sleep(0.05)
print("escaped", flush=True)
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))
"""


def _escaped_pid(pidfile: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pidfile.exists():
        time.sleep(0.05)
    return int(pidfile.read_text())


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 20
    while pids_alive([pid]) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = pids_alive([pid])
    for leftover in alive:
        os.kill(leftover, signal.SIGKILL)
    return not alive


def test_escaped_processes_end_with_their_run(cli, project: Path, tmp_path: Path) -> None:
    (project / "escape.py").write_text(ESCAPE)
    for mode in ("double-fork", "setpgid"):
        pidfile = tmp_path / f"{mode}.pid"
        result = cli("run", "escape.py", "--", str(pidfile), mode)
        assert result.code == 0, result.err
        assert _gone(_escaped_pid(pidfile)), f"a {mode} child of the job outlived its run"


def test_escaped_process_of_a_detached_job_ends_with_cleanup_all(cli, project: Path, tmp_path: Path) -> None:
    (project / "escape.py").write_text(ESCAPE)
    pidfile = tmp_path / "detached.pid"
    started = cli("run", "escape.py", "--detach", "--", str(pidfile), "double-fork", "300")
    assert started.code == 0, started.err
    escaped = _escaped_pid(pidfile)
    cleaned = cli("resources", "cleanup", "--all", "--yes")
    assert cleaned.code == 0, cleaned.err
    assert _gone(escaped), "a double-forked child of the job outlived resources cleanup --all"


def test_runctl_variables_cannot_be_overridden(cli, project: Path) -> None:
    for name in ("RUNCTL_JOB_ID", "RUNCTL_CHECKPOINT_DIR"):
        result = cli("-o", "json", "run", "examples/train.py", "--env", f"{name}=job-fake01")
        assert result.code == 2, result.err
        assert name in result.error()["message"] and "reserved" in result.error()["message"]


BIG_LOG = """\
import sys
line = "x" * 1023 + "\\n"
block = line * 1024
for _ in range(100):
    sys.stdout.write(block)
sys.stdout.flush()
"""

MEASURE = """\
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_a_100_mb_log_does_not_cost_100_mb_of_memory(cli, project: Path) -> None:
    (project / "big.py").write_text(BIG_LOG)
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, RUNCTL, "run", "big.py"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert measured.returncode == 0, measured.stderr
    peak_mb = int(measured.stdout.strip()) / 1024
    print(f"runctl peak RSS for a 100 MB log: {peak_mb:.0f} MB")
    assert peak_mb < 100, f"runctl peaked at {peak_mb:.0f} MB for a 100 MB log"

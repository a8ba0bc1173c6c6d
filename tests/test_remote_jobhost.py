"""The remote-job layer over a LocalTransport used as a remote provider would use it (every runner command a
subprocess through Transport.run): incremental sync, launch (never lost), logs by offset, stop, checkpoints."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from runctl_core.files import scan_project
from runctl_core.models import JobSpec, JobState
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.transport import LocalTransport

JOB = """\
import os, sys, time
print("start", flush=True)
sys.stdout.buffer.write(b"bad \\xff byte\\n"); sys.stdout.flush()
open(os.path.join(os.environ["RUNCTL_CHECKPOINT_DIR"], "ck.txt"), "w").write("1")
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
print("end", flush=True)
"""


def _host(tmp_path: Path) -> JobHost:
    return JobHost(LocalTransport(), str(tmp_path / "machine"), python=sys.executable)


def _wait_terminal(host: JobHost, job_id: str) -> JobState:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = host.status(job_id).state
        if state.terminal:
            return state
        time.sleep(0.1)
    raise AssertionError("the job did not end")


def test_sync_launch_logs_checkpoints(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    (project / "old.txt").write_text("x")
    host = _host(tmp_path)
    first = host.sync(scan_project(project))
    assert first.files_sent == 2
    (project / "old.txt").unlink()
    (project / "new.txt").write_text("y")
    second = host.sync(scan_project(project))
    assert (second.files_sent, second.files_deleted) == (1, 1)
    assert sorted(p.name for p in Path(host.project_dir).iterdir()) == ["job.py", "new.txt"]
    assert host.sync(scan_project(project)).files_sent == 0

    started = host.launch(JobSpec(job_id="job-aaa111", script="job.py", env={"X": "1"}))
    assert started.state is JobState.PENDING  # recorded before the supervisor started
    assert host.status("job-aaa111").state is not JobState.LOST
    assert _wait_terminal(host, "job-aaa111") is JobState.SUCCEEDED
    text, offset = "", 0
    for _ in range(100):
        chunk = host.logs("job-aaa111", offset, limit=5)  # tiny reads: characters and the bad byte cut anywhere
        text += chunk.data
        offset = chunk.next_offset
        if chunk.complete:
            break
    assert "start\nbad \ufffd byte\n" in text and text.endswith("end\n")
    assert [c.name for c in host.checkpoints("job-aaa111")] == ["ck.txt"]
    collected = host.collect("job-aaa111", tmp_path / "out")
    assert [p.name for p in collected.files] == ["ck.txt"]


def test_stop_right_after_launch_leaves_nothing(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    host = _host(tmp_path)
    host.sync(scan_project(project))
    host.launch(JobSpec(job_id="job-bbb222", script="job.py", args=["600"]))
    stopped = host.stop("job-bbb222", grace=1)
    assert stopped.state is JobState.CANCELLED, stopped
    from runctl_core.remote import runner

    assert runner._job_processes("job-bbb222", set()) == []  # no process of the job is left
    assert host.job_ids() == ["job-bbb222"]
    host.stop_all(grace=1)
    host.remove_project()
    assert not Path(host.project_dir).exists()


def test_older_recipe_status_right_after_supervise_is_not_lost(tmp_path: Path) -> None:
    """The recipe documented before the layer (``nohup setsid runner.py supervise ... &`` then ``status`` at once)
    answered "lost" whenever status ran before the supervisor's first write (here: a supervisor that takes a
    second to start, as on a loaded machine); status now waits for that record."""
    import json
    import shlex
    import subprocess

    from runctl_core.remote import RUNNER_PATH

    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text("print('hi')\n")
    job_dir = tmp_path / "job-slow"
    supervise = [sys.executable, str(RUNNER_PATH), "supervise", "--job-dir", str(job_dir), "--workdir", str(work)]
    supervise += ["--checkpoint-dir", str(job_dir / "ck"), "--no-env", "--no-uv", "--", "job.py"]
    subprocess.Popen(
        ["sh", "-c", "sleep 1; exec " + shlex.join(supervise)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    status = [sys.executable, str(RUNNER_PATH), "status", "--job-dir", str(job_dir)]
    out = subprocess.run(status, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["state"] != "lost", out


def test_stop_of_a_pending_record_without_a_supervisor(tmp_path: Path) -> None:
    """A launch that wrote its pending record but could not start the supervisor (e.g. the system refused the
    argument list) leaves no supervisor_pid: stop (and terminate, which stops every job) still records the job
    cancelled instead of failing with a KeyError."""
    host = _host(tmp_path)
    host.install_tools()
    job_dir = Path(host.job_dir("job-nopid"))
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text('{"state": "pending", "job_id": "job-nopid"}')
    assert host.stop("job-nopid", 0).state is JobState.CANCELLED


def test_deprecated_single_file_runner_still_runs_a_job(tmp_path: Path) -> None:
    """Providers written before runner.py was split into modules upload runner_source() as one file: it still
    launches a job and reports it, with no runner_*.py beside it."""
    import json
    import subprocess

    from runctl_core.remote import runner_source

    with pytest.warns(DeprecationWarning, match="RUNNER_PATHS"):
        source = runner_source()
    (tmp_path / "bin").mkdir()
    runner = tmp_path / "bin" / "runner.py"
    runner.write_text(source)
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text("print('single file ok')\n")
    job_dir = tmp_path / "jobs" / "job-single"
    launch = [sys.executable, str(runner), "launch", "--job-dir", str(job_dir), "--workdir", str(work)]
    launch += ["--checkpoint-dir", str(job_dir / "ck"), "--job-id", "job-single", "--no-env", "--no-uv", "--", "job.py"]
    assert json.loads(subprocess.run(launch, capture_output=True, text=True, check=True).stdout)["state"] == "pending"
    deadline = time.monotonic() + 120
    state = "pending"
    while state not in ("succeeded", "failed", "lost") and time.monotonic() < deadline:
        time.sleep(0.05)
        status = [sys.executable, str(runner), "status", "--job-dir", str(job_dir)]
        state = json.loads(subprocess.run(status, capture_output=True, text=True, check=True).stdout)["state"]
    assert state == "succeeded"
    assert (job_dir / "log").read_text() == "single file ok\n"


def test_runner_shipped_alone_says_what_is_missing(tmp_path: Path) -> None:
    """A provider following the recipe from before the runner was split ships runner.py alone: it must fail
    loudly and say what to ship, not with an ImportError traceback (and not run half a runner)."""
    import shutil
    import subprocess

    from runctl_core.remote import RUNNER_PATH

    shutil.copy(RUNNER_PATH, tmp_path / "runner.py")
    done = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), "status", "--job-dir", str(tmp_path / "job")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "runner_files.py" in done.stderr and "RUNNER_PATHS" in done.stderr
    assert "Traceback" not in done.stderr

"""runctl's job runner, part 1 of 5: facts about processes and how to end them (stdlib only, Python >= 3.8).

Shipped beside ``runner.py`` (see its docstring): whether a pid is alive and is this job's supervisor (by its
start time, as a pid is reused once its process is gone), which processes belong to a job (``RUNCTL_JOB_ID``
in their environment), waiting for a process to end, and stopping a process group or every process a job left
behind.
"""

import os
import signal
import subprocess
import sys
import time


def _alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def find_uv():
    import shutil

    found = shutil.which("uv")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "uv")  # a virtualenv's uv, when not activated
    return beside if os.access(beside, os.X_OK) else None


def _proc_read(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def start_time(pid):
    """When process ``pid`` started (clock ticks since boot), or None: with the pid it names one process for
    good (a pid is reused once its process is gone), and it is known from fork on, before exec."""
    try:
        return _proc_read(pid, "stat").rsplit(b")", 1)[1].split()[19].decode()
    except IndexError:
        return None


def _is_supervisor(pid, job_dir, start=None):
    """True when ``pid`` is alive *and* is this job's supervisor (a recycled pid is somebody else): by its start
    time when recorded, else by its command line (which the kernel publishes only after exec: see job_record)."""
    if not _alive(pid):
        return False
    if not os.path.isdir("/proc"):
        return True
    if start:
        return start_time(pid) == start
    marker = os.path.basename(os.path.normpath(job_dir)).encode()
    return marker in _proc_read(pid, "cmdline")


def _group_is_job(pgid, job_id):
    """True when some process of group ``pgid`` carries RUNCTL_JOB_ID=job_id: never signal a recycled group."""
    if not pgid or not job_id:
        return False
    if not os.path.isdir("/proc"):
        return True
    marker = ("RUNCTL_JOB_ID=%s" % job_id).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pgrp = int(_proc_read(int(entry), "stat").rsplit(b")", 1)[1].split()[2])
        except (IndexError, ValueError):
            continue
        if pgrp == pgid and marker in _proc_read(int(entry), "environ").split(b"\0"):
            return True
    return False


def _job_processes(job_id, exclude):
    """Pids of live processes whose environment says RUNCTL_JOB_ID=job_id (its children that left the group:
    a double fork, setsid, setpgid - they keep the variable they were started with)."""
    marker = ("RUNCTL_JOB_ID=%s" % job_id).encode()
    found = []
    for entry in os.listdir("/proc"):  # the marker first: one read for most processes (others' fail at once)
        if entry.isdigit() and int(entry) not in exclude and marker in _proc_read(int(entry), "environ").split(b"\0"):
            if _alive(int(entry)):
                found.append(int(entry))
    return found


def sweep_job(job_id, grace):
    """End every process the job left behind, in any group or session: SIGTERM, up to ``grace`` seconds, then
    SIGKILL. A job's processes end with it (the same rule as a cgroup's, found by RUNCTL_JOB_ID)."""
    if not job_id or not os.path.isdir("/proc"):
        return
    exclude = {os.getpid(), os.getppid()}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        pids = _job_processes(job_id, exclude)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _job_processes(job_id, exclude):
            time.sleep(0.05)


def _kill_group(pgid, grace, proc=None):
    """SIGTERM to the group, up to ``grace`` seconds for it to go, then SIGKILL. ``proc`` (the group's
    leader, our child) is reaped while waiting, so that a zombie leader does not look alive."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _exit_notice(pid):
    """A descriptor that becomes readable the moment process ``pid`` ends (Linux >= 5.3: a pidfd), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_a_little(proc, ended, seconds):
    """``proc``'s exit code, or None after ``seconds``. With a pidfd the end is seen at once; Popen.wait(timeout)
    polls with growing sleeps (up to 50 ms late)."""
    if ended is None:
        try:
            return proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
    import select

    try:
        select.select([ended], [], [], seconds)
    except (OSError, ValueError):
        time.sleep(seconds)
    return proc.poll()

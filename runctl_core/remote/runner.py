#!/usr/bin/env python3
"""runctl's job runner: supervises one training job on the machine that runs it.

Every provider runs jobs through this file (the local provider directly, remote providers after copying it
to the machine), so "a job" means the same thing everywhere:

* the job runs in its own process group, its stdout+stderr appended to ``JOB_DIR/log``;
* ``JOB_DIR/job.json`` holds its state: pending -> running -> succeeded | failed | cancelled | interrupted,
  with the exit code, pids and times; it is replaced atomically, so a reader never sees half a file;
* ``stop`` (or SIGTERM to the runner) sends SIGTERM to the job's group, waits ``--grace`` seconds, then
  SIGKILL, and records ``cancelled``;
* ``--timeout`` does the same after that many seconds and records ``failed`` with a message;
* ``--interrupt-check CMD`` is run every ``--interrupt-every`` seconds; when it exits 0 (e.g. a spot
  interruption notice), the job is stopped as above and recorded ``interrupted``;
* ``--after CMD`` runs once when the job has ended (e.g. upload checkpoints), with ``RUNCTL_JOB_STATE`` and
  ``RUNCTL_EXIT_CODE`` set; its output goes to the log;
* ``--shutdown-after`` runs ``--shutdown-cmd`` once everything is recorded (a remote machine ending itself).

Usage::

    runner.py supervise --job-dir D --workdir W --checkpoint-dir C [options] -- SCRIPT [ARGS...]
    runner.py status --job-dir D      # prints job.json, with a dead supervisor reported as "lost"
    runner.py stop --job-dir D [--grace S]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "lost")


def _now():
    return datetime.now(timezone.utc).isoformat()


def _write_state(job_dir, **fields):
    path = os.path.join(job_dir, "job.json")
    state = _read_state(job_dir) or {}
    state.update(fields)
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as fh:
        json.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return state


def _read_state(job_dir):
    try:
        with open(os.path.join(job_dir, "job.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


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


def _inconclusive(state):
    """A pending job whose supervisor was just started and cannot be told apart yet (alive, no start time
    recorded, command line not yet published): never call it lost from that."""
    return state.get("state") == "pending" and not state.get("supervisor_start") and _alive(state["supervisor_pid"])


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
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in exclude and _alive(int(entry)):
            if marker in _proc_read(int(entry), "environ").split(b"\0"):
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


def _command(script, args, use_uv):
    if script.startswith("-"):  # a script named -x.py is a path, never an option of uv or python
        script = "./" + script
    uv = find_uv() if use_uv else None
    if uv:
        return [uv, "run", "--quiet", script] + args
    python = os.environ.get("RUNCTL_PYTHON") or sys.executable or "python3"
    return [python, script] + args


def _copy_tree(src, dst):
    for base, _dirs, files in os.walk(src):
        rel = os.path.relpath(base, src)
        target = os.path.join(dst, rel) if rel != "." else dst
        os.makedirs(target, exist_ok=True)
        for name in files:
            shutil.copy2(os.path.join(base, name), os.path.join(target, name))


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


class _Stop(Exception):
    def __init__(self, state, message):
        Exception.__init__(self, message)
        self.state = state
        self.message = message


def supervise(opts):
    job_dir = opts.job_dir
    os.makedirs(job_dir, exist_ok=True)
    os.makedirs(opts.checkpoint_dir, exist_ok=True)
    if opts.resume_dir and os.path.isdir(opts.resume_dir):
        _copy_tree(opts.resume_dir, opts.checkpoint_dir)
    env = dict(os.environ)
    env.update({"RUNCTL_CHECKPOINT_DIR": opts.checkpoint_dir, "PYTHONUNBUFFERED": "1"})
    if opts.job_id:
        env["RUNCTL_JOB_ID"] = opts.job_id
    if opts.env_file:
        with open(opts.env_file) as fh:
            env.update(json.load(fh))
        os.unlink(opts.env_file)
    command = _command(opts.script, opts.args, not opts.no_uv)
    stop_request = []
    signal.signal(signal.SIGTERM, lambda *_: stop_request.append(("cancelled", "stopped on request")))
    signal.signal(signal.SIGINT, lambda *_: stop_request.append(("cancelled", "stopped on request")))
    log = open(os.path.join(job_dir, "log"), "ab", buffering=0)
    _write_state(job_dir, state="running", supervisor_pid=os.getpid(), supervisor_start=start_time(os.getpid()),
                 started_at=_now(), command=command[:2], job_id=opts.job_id)
    try:
        proc = subprocess.Popen(
            command, cwd=opts.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )
    except OSError as exc:
        log.write(("runctl: could not start %s: %s\n" % (command[0], exc)).encode())
        _write_state(job_dir, state="failed", exit_code=127, ended_at=_now(), message=str(exc))
        return 127
    _write_state(job_dir, pid=proc.pid, pgid=proc.pid)
    started = time.monotonic()
    next_check = started + opts.interrupt_every
    final_state, message = None, ""
    while True:
        try:
            code = proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if stop_request:
            final_state, message = stop_request[0]
        elif opts.timeout and time.monotonic() - started > opts.timeout:
            final_state, message = "failed", "killed after the %gs timeout" % opts.timeout
        elif opts.interrupt_check and time.monotonic() >= next_check:
            next_check = time.monotonic() + opts.interrupt_every
            check = subprocess.run(opts.interrupt_check, shell=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            if check.returncode == 0:
                final_state, message = "interrupted", "the machine is being reclaimed (interruption notice)"
        if final_state:
            log.write(("\nrunctl: %s\n" % message).encode())
            _kill_group(proc.pid, opts.grace, proc)
            code = proc.wait()
            break
    if final_state is None:
        final_state = "succeeded" if code == 0 else "failed"
        message = "" if code == 0 else "the script exited with code %d" % code
    if opts.after:
        after_env = dict(env, RUNCTL_JOB_STATE=final_state, RUNCTL_EXIT_CODE=str(code))
        subprocess.run(opts.after, shell=True, cwd=opts.workdir, env=after_env, stdout=log, stderr=log)
    sweep_job(opts.job_id, opts.grace)
    _write_state(job_dir, state=final_state, exit_code=code, ended_at=_now(), message=message)
    log.close()
    if opts.shutdown_after:
        subprocess.run(opts.shutdown_cmd, shell=True)
    return 0


def job_record(job_dir):
    """The job's state as a dict; a job whose supervisor died without recording an end is ``lost``."""
    state = _read_state(job_dir)
    if state is None:
        state = {"state": "lost", "message": "no job record in %s" % job_dir}
    elif state.get("state") not in TERMINAL and state.get("supervisor_pid") and not _is_supervisor(
            state["supervisor_pid"], job_dir, state.get("supervisor_start")) and not _inconclusive(state):
        state["state"] = "lost"
        state["message"] = "the job's supervisor is gone and left no exit code"
    state["log_size"] = _size(os.path.join(job_dir, "log"))
    return state


def status(opts):
    print(json.dumps(job_record(opts.job_dir)))
    return 0


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def stop_job(job_dir, grace):
    """Stop the job: SIGTERM to its supervisor (which stops the group: SIGTERM, ``grace``, SIGKILL) and wait.

    Harmless when the job already ended. Returns the final record."""
    state = _read_state(job_dir) or {}
    pid = state.get("supervisor_pid")
    start = state.get("supervisor_start")
    job_id = state.get("job_id")
    if state.get("state") in TERMINAL or not _is_supervisor(pid, job_dir, start):
        if _group_is_job(state.get("pgid"), job_id):  # leftovers of this job only, never a recycled group
            _kill_group(state["pgid"], 0)
        sweep_job(job_id, 0)
        if state and state.get("state") not in TERMINAL:
            _write_state(job_dir, state="cancelled", ended_at=_now(), message="stopped on request")
        return job_record(job_dir)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    while time.monotonic() < deadline and _is_supervisor(pid, job_dir, start):
        time.sleep(0.02)
    if _is_supervisor(pid, job_dir, start):
        os.kill(pid, signal.SIGKILL)
        if _group_is_job(state.get("pgid"), job_id):
            _kill_group(state["pgid"], 0)
        sweep_job(job_id, 0)
        _write_state(job_dir, state="cancelled", ended_at=_now(), message="killed")
    elif (_read_state(job_dir) or {}).get("state") not in TERMINAL:  # stopped before it could record anything
        _write_state(job_dir, state="cancelled", ended_at=_now(), message="stopped before it started")
    return job_record(job_dir)


def stop(opts):
    print(json.dumps(stop_job(opts.job_dir, opts.grace)))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner.py")
    sub = parser.add_subparsers(dest="cmd")
    sup = sub.add_parser("supervise")
    sup.add_argument("--job-dir", required=True)
    sup.add_argument("--workdir", required=True)
    sup.add_argument("--checkpoint-dir", required=True)
    sup.add_argument("--job-id", default="")
    sup.add_argument("--resume-dir", default="")
    sup.add_argument("--env-file", default="")
    sup.add_argument("--timeout", type=float, default=0)
    sup.add_argument("--grace", type=float, default=10)
    sup.add_argument("--no-uv", action="store_true")
    sup.add_argument("--interrupt-check", default="")
    sup.add_argument("--interrupt-every", type=float, default=5)
    sup.add_argument("--after", default="")
    sup.add_argument("--shutdown-after", action="store_true")
    sup.add_argument("--shutdown-cmd", default="shutdown -h now")
    sup.add_argument("script")
    sup.add_argument("args", nargs=argparse.REMAINDER)
    for name in ("status", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--job-dir", required=True)
        p.add_argument("--grace", type=float, default=10)
    opts = parser.parse_args(argv)
    if opts.cmd == "supervise":
        if opts.args and opts.args[0] == "--":
            opts.args = opts.args[1:]
        return supervise(opts)
    if opts.cmd == "status":
        return status(opts)
    if opts.cmd == "stop":
        return stop(opts)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""runctl's job runner, part 2 of 5: the job record ``JOB_DIR/job.json`` (stdlib only, Python >= 3.8).

Written atomically (a reader sees the old record or the new one), read back as ``job_record``: a job whose
supervisor is gone without recording an end is ``lost`` (after a second read: it may have recorded its end and
exited between the first read and the liveness check), and ``stop_job`` ends a job and records it.
"""

import json
import os
import signal
import time

try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_procs import _alive, _group_is_job, _is_supervisor, _kill_group, sweep_job
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_procs import _alive, _group_is_job, _is_supervisor, _kill_group, sweep_job

TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "lost")
# a pending record whose supervisor has not announced itself after this long: the launch failed
PENDING_START_GRACE = 120.0


def _now():
    """Now, in UTC, as ISO 8601 with microseconds (what ``datetime.now(timezone.utc).isoformat()`` gives)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06d+00:00" % int(now % 1 * 1e6)


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


def _inconclusive(state):
    """A pending job whose supervisor was just started and cannot be told apart yet (alive, no start time
    recorded, command line not yet published): never call it lost from that."""
    return state.get("state") == "pending" and not state.get("supervisor_start") and _alive(
        state.get("supervisor_pid"))


def _supervising(state, job_dir):
    """Is the recorded supervisor alive and this job's (by pid + start time when recorded, else by its command
    line)? A pending job's just-started supervisor that cannot be told apart yet counts as alive: a terminal
    state is never recorded from an inconclusive check."""
    pid = state.get("supervisor_pid")
    return _is_supervisor(pid, job_dir, state.get("supervisor_start")) or _inconclusive(state)


def _age(stamp):
    from datetime import datetime, timezone

    try:
        then = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return float("inf")
    return (datetime.now(timezone.utc) - then).total_seconds()


def job_record(job_dir):
    """The job's state as a dict; a job whose supervisor died without recording an end is ``lost``, and so is
    a pending job whose supervisor never announced itself within ``PENDING_START_GRACE`` seconds."""
    state = _read_state(job_dir)
    if state is None:
        state = {"state": "lost", "message": "no job record in %s" % job_dir}
    elif state.get("state") not in TERMINAL and state.get("supervisor_pid") and not _supervising(state, job_dir):
        again = _read_state(job_dir)  # it may have recorded the end and exited between the read and the check
        if again is not None and again.get("state") in TERMINAL:
            state = again
        else:
            state["state"] = "lost"
            state["message"] = "the job's supervisor is gone and left no exit code"
    elif state.get("state") == "pending" and not state.get("supervisor_pid") and _age(
            state.get("submitted_at")) > PENDING_START_GRACE:
        state["state"] = "lost"
        state["message"] = "the job's supervisor never started"
    state["log_size"] = _size(os.path.join(job_dir, "log"))
    return state


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _in_after_step(job_dir):
    """The supervisor is running its ``--after`` step (e.g. the final push of checkpoints) and its deadline has
    not passed: a stop lets it finish rather than kill it half-way."""
    state = _read_state(job_dir) or {}
    return state.get("phase") == "after" and time.time() < float(state.get("after_deadline") or 0)


def stop_job(job_dir, grace):
    """Stop the job: SIGTERM to its supervisor (which stops the group: SIGTERM, ``grace``, SIGKILL) and wait.

    Harmless when the job already ended. Returns the final record."""
    state = _read_state(job_dir) or {}
    pid = state.get("supervisor_pid")
    start = state.get("supervisor_start")
    job_id = state.get("job_id")
    if state.get("state") in TERMINAL or not _supervising(state, job_dir):
        if _group_is_job(state.get("pgid"), job_id):  # leftovers of this job only, never a recycled group
            _kill_group(state["pgid"], 0)
        sweep_job(job_id, 0)
        if state and state.get("state") not in TERMINAL:
            _write_state(job_dir, state="cancelled", ended_at=_now(), message="stopped on request")
        return job_record(job_dir)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    def ours():  # verified above; by start time when recorded, else it is ours until it exits
        return _is_supervisor(pid, job_dir, start) if start else _alive(pid)

    while ours():
        if time.monotonic() >= deadline and not _in_after_step(job_dir):
            break
        time.sleep(0.02)
    if ours():
        os.kill(pid, signal.SIGKILL)
        if _group_is_job(state.get("pgid"), job_id):
            _kill_group(state["pgid"], 0)
        sweep_job(job_id, 0)
        _write_state(job_dir, state="cancelled", ended_at=_now(), message="killed")
    elif (_read_state(job_dir) or {}).get("state") not in TERMINAL:  # stopped before it could record anything
        _write_state(job_dir, state="cancelled", ended_at=_now(), message="stopped before it started")
    return job_record(job_dir)

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

* before the script, the environment step (``envsetup.py``, shipped beside this file) prepares the job's
  Python environment from what it declares (PEP 723 header, requirements.txt, pyproject.toml, ``--setup-file``
  commands, ``--python``); its output goes to the log and its outcome to ``job.json``'s ``setup`` field. A
  setup failure is recorded ``failed`` with ``setup.state == "failed"`` and the script never starts.

Usage::

    runner.py launch --job-dir D --workdir W --checkpoint-dir C [options] -- SCRIPT [ARGS...]
                                      # writes the pending record, then starts the supervisor detached
    runner.py supervise ...same options...   # the supervisor itself (launch starts it with supervise-json)
    runner.py supervise-json JSON [ARGS...]  # the same, the options as launch parsed them (no argparse import)
    runner.py status --job-dir D      # prints job.json, with a dead supervisor reported as "lost"
    runner.py stop --job-dir D [--grace S]
    runner.py read-log --job-dir D --offset N --max M   # JSON: the record and base64 log bytes from N
    runner.py apply-sync --dest DIR (--files STAGED | --tar T) --meta M --manifest F [--expect-manifest D]
                                      # put the sent files in place, delete, save the manifest

``launch`` and ``apply-sync`` take ``--expect-manifest DIGEST`` (see ``manifest_digest``): when the machine's
manifest is not that one, they exit 19 before changing anything. Files sent with a command (``bootstrap.py``
stages them) are moved into place only once its checks passed: ``launch --staged DIR`` moves DIR's entries into
the job directory, ``apply-sync --files DIR`` moves DIR's files into ``--dest``.
"""

import json
import os
import signal
import subprocess
import sys
import time

# argparse, base64, datetime, hashlib, select, shutil and tarfile are imported where they are used: the supervisor
# starts once per job, and what it imports is time before the script starts

TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "lost")
EXIT_JOB_EXISTS = 17
EXIT_SCRIPT_MISSING = 18
# --expect-manifest: the machine's project is not the one the sender expected (another laptop synced to it)
EXIT_STALE_PROJECT = 19
# a pending record whose supervisor has not announced itself after this long: the launch failed
PENDING_START_GRACE = 120.0
# ``status`` right after the older recipe (``supervise ... &``) may run before the supervisor wrote anything
NO_RECORD_WAIT = 5.0
HERE = os.path.dirname(os.path.abspath(__file__))
# How launch starts the supervisor: this file imported as a module (``-c``, its path as the first argument, so
# ``ps`` shows "runner.py supervise ..."), not run as a script - a script is compiled from source every time, a
# module's bytecode is cached in __pycache__ beside it. Its directory replaces sys.path[0] (-c's current
# directory, the user's project: a json.py there must not shadow the standard library). It ends with os._exit once
# the end is recorded (the log and record are closed and synced): whoever waits for the process to end (the local
# provider's wait_change) need not wait for the interpreter's teardown.
SUPERVISOR_BOOT = ("import os, sys; sys.path[0] = os.path.dirname(sys.argv[1]); import runner; "
                   "os._exit(runner.main(sys.argv[2:]))")


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


def _inconclusive(state):
    """A pending job whose supervisor was just started and cannot be told apart yet (alive, no start time
    recorded, command line not yet published): never call it lost from that."""
    return state.get("state") == "pending" and not state.get("supervisor_start") and _alive(
        state.get("supervisor_pid"))


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


def _command(script, args, use_uv):
    if script.startswith("-"):  # a script named -x.py is a path, never an option of uv or python
        script = "./" + script
    uv = find_uv() if use_uv else None
    if uv:
        return [uv, "run", "--quiet", script] + args
    python = os.environ.get("RUNCTL_PYTHON") or sys.executable or "python3"
    return [python, script] + args


def _copy_tree(src, dst):
    import shutil

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


def _watch(proc, opts, stop_request, log, started, timeout):
    """Wait for ``proc`` (the leader of its own group); stop it on request, after ``timeout`` seconds or on an
    interruption notice. Returns (exit code, final state or None, message)."""
    next_check = started + opts.interrupt_every
    final_state, message = None, ""
    ended = _exit_notice(proc.pid)
    while True:
        code = _wait_a_little(proc, ended, 0.1)
        if code is not None:
            if ended is not None:
                os.close(ended)
            return code, final_state, message
        if stop_request:
            final_state, message = stop_request[0]
        elif timeout and time.monotonic() - started > timeout:
            final_state, message = "failed", "killed after the %gs timeout" % timeout
        elif opts.interrupt_check and time.monotonic() >= next_check:
            next_check = time.monotonic() + opts.interrupt_every
            check = subprocess.run(opts.interrupt_check, shell=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            if check.returncode == 0:
                final_state, message = "interrupted", "the machine is being reclaimed (interruption notice)"
        if final_state:
            log.write(("\nrunctl: %s\n" % message).encode())
            _kill_group(proc.pid, opts.grace, proc)
            if ended is not None:
                os.close(ended)
            return proc.wait(), final_state, message


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


def _nothing_declared(opts):
    """The environment step's first check, made in this process: its result when the job declares nothing to
    install (the common case needs no second interpreter), else None and the step runs as a process. Any
    doubt (a PEP 723 block it cannot read...) is None too: the step itself reports it."""
    if opts.setup_file or opts.python:
        return None
    try:
        if HERE not in sys.path:
            sys.path.insert(0, HERE)  # envsetup.py is shipped beside this file
        import envsetup

        kind, _content, deps = envsetup.declared(opts.workdir, opts.script)
        return envsetup.nothing_declared(kind, deps, [], "")
    except Exception:
        return None


def _environment(opts, env, log, stop_request):
    """Run the environment step (envsetup.py) in its own process group, output to the log.

    Returns (result dict, stop state or None). Without envsetup.py beside this file, or with ``--no-env``,
    returns state "skipped" (the older behaviour: ``uv run`` when uv exists, else the machine's Python)."""
    tool = os.path.join(HERE, "envsetup.py")
    if opts.no_env or not os.path.isfile(tool):
        return {"state": "skipped"}, None
    nothing = _nothing_declared(opts)
    if nothing is not None:
        return nothing, None
    root = os.path.dirname(os.path.dirname(os.path.abspath(opts.job_dir)))
    result_path = os.path.join(opts.job_dir, "setup.json")
    argv = [sys.executable, tool, "--project", opts.workdir, "--script=" + opts.script,
            "--envs-dir", opts.envs_dir or os.path.join(root, "envs"),
            "--tools-dir", opts.tools_dir or os.path.join(root, "tools"), "--result", result_path]
    if opts.python:
        argv += ["--python", opts.python]
    if opts.setup_file:
        argv += ["--setup-file", opts.setup_file]
    if opts.no_uv:
        argv.append("--no-uv")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=opts.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    except OSError as exc:
        return {"state": "failed", "message": "could not start the environment step: %s" % exc, "hint": ""}, None
    code, stopped, _message = _watch(proc, opts, stop_request, log, started, opts.setup_timeout)
    if stopped:
        return {"state": "failed", "message": _message, "hint": "", "seconds": time.monotonic() - started}, stopped
    try:
        with open(result_path) as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        result = {"state": "failed", "message": "the environment step exited with code %d" % code, "hint": ""}
    result.setdefault("seconds", time.monotonic() - started)
    return result, None


def supervise(opts):
    job_dir = opts.job_dir
    if opts.launched:
        _await_launch(job_dir)
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
    stop_request = []
    signal.signal(signal.SIGTERM, lambda *_: stop_request.append(("cancelled", "stopped on request")))
    signal.signal(signal.SIGINT, lambda *_: stop_request.append(("cancelled", "stopped on request")))
    log = open(os.path.join(job_dir, "log"), "ab", buffering=0)
    _write_state(job_dir, state="pending", supervisor_pid=os.getpid(),
                 supervisor_start=start_time(os.getpid()), job_id=opts.job_id, phase="setup")
    setup, stopped = _environment(opts, env, log, stop_request)
    record_setup = {k: setup.get(k) for k in ("state", "seconds", "summary", "message", "hint") if k in setup}
    if stopped or setup.get("state") == "failed":
        final = stopped or "failed"
        message = setup.get("message") or "stopped on request"
        if not stopped:
            message = "environment setup failed: %s" % message
        sweep_job(opts.job_id, opts.grace)  # nothing the setup started outlives it
        _write_state(job_dir, state=final, ended_at=_now(), message=message, setup=record_setup)
        log.close()
        if opts.shutdown_after:
            subprocess.run(opts.shutdown_cmd, shell=True)
        return 0
    if setup.get("python"):
        script = "./" + opts.script if opts.script.startswith("-") else opts.script
        command = [setup["python"], script] + opts.args
    else:
        command = _command(opts.script, opts.args, not opts.no_uv and setup.get("state") == "skipped")
    _write_state(job_dir, state="running", started_at=_now(), command=command[:2], setup=record_setup, phase="script")
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
    code, final_state, message = _watch(proc, opts, stop_request, log, time.monotonic(), opts.timeout)
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


def manifest_digest(path):
    """sha256 of the manifest file ``path`` as canonical JSON (a missing or unreadable one is ``{}``): what a
    sender that remembers the manifest expects (runctl_core.remote.hostcache.manifest_digest)."""
    import hashlib

    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _stale(opts):
    """True (and a message on stderr) when ``--expect-manifest`` is given and the machine's manifest differs."""
    if not opts.expect_manifest or manifest_digest(opts.manifest) == opts.expect_manifest:
        return False
    sys.stderr.write("runctl: the project on this machine is not the one expected (%s holds another sync)\n"
                     % opts.manifest)
    return True


def _move_entries(staged, dest):
    """Move every entry of the directory ``staged`` into ``dest`` (same file system: renames)."""
    if not staged or not os.path.isdir(staged):
        return
    import shutil

    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(staged):
        target = os.path.join(dest, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staged, name), target)


def launch(opts, python=None, env=None, bin_dir=None):
    """Write the pending record, then start the supervisor detached; print the record.

    The record exists before the supervisor does, so a ``status`` right after ``launch`` says ``pending``
    (never ``lost``). Exit 17 when the job already exists, 18 when the script is not in the project, 19 when
    the project is not the expected one (``--expect-manifest``); nothing is written then.
    ``python`` (the interpreter and its options), ``env`` and ``bin_dir`` (the directory of the runner.py the
    supervisor runs) are for a caller that runs ``launch`` in its own process (the local provider): the
    supervisor gets them instead of this process's interpreter, environment and directory."""
    job_dir = opts.job_dir
    if os.path.exists(os.path.join(job_dir, "job.json")):
        sys.stderr.write("runctl: job %s already exists on this machine\n" % (opts.job_id or job_dir))
        return EXIT_JOB_EXISTS
    if _stale(opts):
        return EXIT_STALE_PROJECT
    if not os.path.isfile(os.path.join(opts.workdir, opts.script)):
        sys.stderr.write("runctl: %s is not in the synced project\n" % opts.script)
        return EXIT_SCRIPT_MISSING
    os.makedirs(job_dir, exist_ok=True)
    _move_entries(opts.staged, job_dir)  # env.json, setup-commands.json, resume/ sent with this command
    _write_state(job_dir, state="pending", job_id=opts.job_id, submitted_at=_now())
    if python is None:
        python = [sys.executable] + (["-S"] if sys.flags.no_site else [])  # started stdlib-only: so is the supervisor
    here = bin_dir or HERE
    if opts.nodes > 1 or opts.launcher != "python":
        argv = list(python) + _ranks_argv(opts, here)
    else:  # the options as parsed here, as JSON (the script's arguments after it, one argv element each: one
        # element is limited to 128 KiB): the supervisor need not import argparse to read them again
        fields = dict((k, v) for k, v in vars(opts).items() if k not in ("cmd", "raw", "args"))
        fields["launched"] = True
        argv = list(python) + ["-c", SUPERVISOR_BOOT, os.path.join(here, "runner.py"), "supervise-json",
                               json.dumps(fields)] + list(opts.args)
    try:
        proc = subprocess.Popen(argv, cwd=opts.workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError as exc:  # e.g. an argument list longer than the system allows: the job never started
        _write_state(job_dir, state="failed", ended_at=_now(), message="could not start the job: %s" % exc)
        sys.stderr.write("runctl: could not start the job's supervisor: %s\n" % exc)
        return 1
    # the supervisor waits for its pid in the record before writing anything (see _await_launch), so this
    # read-modify-write cannot overwrite its state, and ``stop`` can signal it from now on
    _write_state(job_dir, supervisor_pid=proc.pid, supervisor_start=start_time(proc.pid))
    print(json.dumps(job_record(job_dir)))
    return 0


def _ranks_argv(opts, here):
    """``ranks.py launch`` (shipped beside this file) for a multi-node job: N ranks, each under a runner."""
    argv = [os.path.join(here, "ranks.py"), "launch", "--job-dir", opts.job_dir, "--nodes", str(opts.nodes),
            "--launcher", opts.launcher, "--nproc-per-node", str(opts.nproc_per_node), "--workdir", opts.workdir,
            "--checkpoint-dir", opts.checkpoint_dir, "--job-id", opts.job_id, "--grace", "%g" % opts.grace]
    for flag, value in (("--resume-dir", opts.resume_dir), ("--env-file", opts.env_file)):
        if value:
            argv += [flag, value]
    if opts.timeout:
        argv += ["--timeout", "%g" % opts.timeout]
    if opts.no_uv:
        argv.append("--no-uv")
    return argv + ["--", opts.script] + opts.args


def _await_launch(job_dir, wait=30.0):
    """Started by ``launch``: wait until the launcher has recorded our pid (the record is the launcher's
    until then). SIGTERM in the meantime ends us before anything started."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if (_read_state(job_dir) or {}).get("supervisor_pid") == os.getpid():
            return
        time.sleep(0.01)


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


def status(opts):
    # the older documented recipe starts ``supervise ... &`` and asks for the status at once: give the
    # supervisor a moment to write its first record instead of answering "lost"
    deadline = time.monotonic() + NO_RECORD_WAIT
    while _read_state(opts.job_dir) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps(job_record(opts.job_dir)))
    return 0


def read_log(opts):
    """One round trip for a log reader: the job record (read first, so ``complete`` is never claimed early),
    then up to ``--max`` bytes of the log from ``--offset`` (base64), and whether the file ends there."""
    import base64

    record = job_record(opts.job_dir)
    data = b""
    at_end = True
    try:
        log = os.path.join(opts.job_dir, "ranks", str(opts.rank), "log") if opts.rank else os.path.join(
            opts.job_dir, "log")
        with open(log, "rb") as fh:
            fh.seek(opts.offset)
            data = fh.read(opts.max)
            at_end = fh.read(1) == b""
    except OSError:
        pass
    print(json.dumps({"record": record, "data": base64.b64encode(data).decode(), "at_end": at_end}))
    return 0


def _move_files(staged, dest):
    """Move every file under the directory ``staged`` to the same relative path under ``dest`` (each replaced
    atomically; ``dest`` is a realpath)."""
    for base, _dirs, names in os.walk(staged):
        for name in names:
            source = os.path.join(base, name)
            target = os.path.realpath(os.path.join(dest, os.path.relpath(source, staged)))
            if not target.startswith(dest + os.sep) or os.path.islink(source):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)


def apply_sync(opts):
    """Put the sent files into ``--dest`` (``--files``: a staged directory; ``--tar``: a tar, refusing absolute
    paths and ``..``), delete what ``--meta`` lists under "delete", then save its "manifest" to ``--manifest``
    (atomically) and remove the tar and meta. Exit 19, changing nothing, when ``--expect-manifest`` differs."""
    if _stale(opts):
        return EXIT_STALE_PROJECT
    import shutil
    import tarfile

    dest = os.path.realpath(opts.dest)
    os.makedirs(dest, exist_ok=True)
    with open(opts.meta) as fh:
        meta = json.load(fh)
    if opts.files:
        _move_files(opts.files, dest)
    if opts.tar:
        with tarfile.open(opts.tar, "r:*") as tar:
            for member in tar.getmembers():
                target = os.path.realpath(os.path.join(dest, member.name))
                if not member.isfile() or not target.startswith(dest + os.sep):
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                tmp = target + ".runctl-tmp"
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(tmp, member.mode & 0o777)
                os.replace(tmp, target)
        os.unlink(opts.tar)
    for rel in meta.get("delete", []):
        target = os.path.realpath(os.path.join(dest, rel))
        if target.startswith(dest + os.sep) and os.path.isfile(target):
            os.unlink(target)
    tmp = opts.manifest + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(meta.get("manifest", {})))  # one write: json.dump writes chunk by chunk
    os.replace(tmp, opts.manifest)
    os.unlink(opts.meta)
    print(json.dumps({"sent": len(meta.get("manifest", {})), "deleted": len(meta.get("delete", []))}))
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

    while time.monotonic() < deadline and ours():
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


def stop(opts):
    record = stop_job(opts.job_dir, opts.grace)
    ranks = os.path.join(opts.job_dir, "ranks")
    if os.path.isdir(ranks):  # multi-node: a launcher killed with SIGKILL leaves its ranks' runners behind
        for name in sorted(os.listdir(ranks)):
            stop_job(os.path.join(ranks, name), opts.grace)
    print(json.dumps(record))
    return 0


def _job_options(parser):
    import argparse

    parser.add_argument("--job-dir", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--job-id", default="")
    parser.add_argument("--resume-dir", default="")
    parser.add_argument("--env-file", default="")
    parser.add_argument("--timeout", type=float, default=0)
    parser.add_argument("--grace", type=float, default=10)
    parser.add_argument("--no-uv", action="store_true")
    parser.add_argument("--no-env", action="store_true", help="skip the environment step")
    parser.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=1, help="launch only: N ranks through ranks.py")
    parser.add_argument("--launcher", choices=("python", "torchrun"), default="python")
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--python", default="", help="Python version for the environment, e.g. 3.11")
    parser.add_argument("--setup-file", default="", help="JSON list of setup shell commands")
    parser.add_argument("--envs-dir", default="", help="where environments are cached (default: ROOT/envs)")
    parser.add_argument("--tools-dir", default="", help="where runctl installs uv (default: ROOT/tools)")
    parser.add_argument("--setup-timeout", type=float, default=3600)
    parser.add_argument("--interrupt-check", default="")
    parser.add_argument("--interrupt-every", type=float, default=5)
    parser.add_argument("--after", default="")
    parser.add_argument("--shutdown-after", action="store_true")
    parser.add_argument("--shutdown-cmd", default="shutdown -h now")
    parser.add_argument("--staged", default="", help="launch only: files sent with the command, moved to --job-dir")
    parser.add_argument("--expect-manifest", default="", help="launch only: refuse (exit 19) unless --manifest has "
                        "this digest")
    parser.add_argument("--manifest", default="", help="the project's manifest file (for --expect-manifest)")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)


_PARSER = []  # built once per process: runctl runs status/read-log in its own process at every poll


def _parser():
    if _PARSER:
        return _PARSER[0]
    import argparse

    parser = argparse.ArgumentParser(prog="runner.py")
    sub = parser.add_subparsers(dest="cmd")
    for name in ("supervise", "launch"):
        _job_options(sub.add_parser(name))
    for name in ("status", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--job-dir", required=True)
        p.add_argument("--grace", type=float, default=10)
    p = sub.add_parser("read-log")
    p.add_argument("--job-dir", required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--max", type=int, default=1 << 20)
    p.add_argument("--rank", type=int, default=0)
    p = sub.add_parser("apply-sync")
    p.add_argument("--dest", required=True)
    p.add_argument("--tar", default="")
    p.add_argument("--files", default="")
    p.add_argument("--meta", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--expect-manifest", default="")
    sub.add_parser("version")
    _PARSER.append(parser)
    return parser


def main(argv=None, launch_python=None, launch_env=None, launch_bin=None):
    """The command line. ``launch_python``/``launch_env``/``launch_bin``: see :func:`launch` (a caller running it
    in its own process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["supervise-json"] and len(argv) >= 2:  # started by launch: the options it parsed, the args
        import types

        return supervise(types.SimpleNamespace(args=argv[2:], **json.loads(argv[1])))
    parser = _parser()
    opts = parser.parse_args(argv)
    opts.raw = argv
    if opts.cmd in ("supervise", "launch"):
        if opts.args and opts.args[0] == "--":
            opts.args = opts.args[1:]
        return supervise(opts) if opts.cmd == "supervise" else launch(opts, launch_python, launch_env, launch_bin)
    handlers = {"status": status, "stop": stop, "read-log": read_log, "apply-sync": apply_sync}
    if opts.cmd in handlers:
        return handlers[opts.cmd](opts)
    if opts.cmd == "version":  # the tools answer (JobHost.install_tools)
        print(json.dumps({"runner": os.path.abspath(__file__)}))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""runctl's job runner, part 3 of 5: the supervisor (stdlib only, Python >= 3.8).

``runner.py supervise`` (started detached by ``runner.py launch``): runs the environment step (``envsetup.py``)
then the script in its own process group, output to the log; stops it on request, on ``--timeout`` or on an
interruption notice; runs ``--after``; records every state change in ``job.json``. See ``runner.py``.
"""

import json
import os
import signal
import subprocess
import sys
import time

try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_procs import _exit_notice, _kill_group, _wait_a_little, find_uv, start_time, sweep_job
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_procs import _exit_notice, _kill_group, _wait_a_little, find_uv, start_time, sweep_job
try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_records import _now, _read_state, _write_state
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_records import _now, _read_state, _write_state

HERE = os.path.dirname(os.path.abspath(__file__))


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
        # a stop waits for this step (it may carry the final push of checkpoints), up to its deadline
        _write_state(job_dir, phase="after", after_deadline=time.time() + opts.after_timeout)
        try:
            subprocess.run(opts.after, shell=True, cwd=opts.workdir, env=after_env, stdout=log, stderr=log,
                           timeout=opts.after_timeout)
        except subprocess.TimeoutExpired:
            log.write(("runctl: the after-step did not finish within %gs; stopped\n" % opts.after_timeout).encode())
    sweep_job(opts.job_id, opts.grace)
    _write_state(job_dir, state=final_state, exit_code=code, ended_at=_now(), message=message)
    log.close()
    if opts.shutdown_after:
        subprocess.run(opts.shutdown_cmd, shell=True)
    return 0


def _await_launch(job_dir, wait=30.0):
    """Started by ``launch``: wait until the launcher has recorded our pid (the record is the launcher's
    until then). SIGTERM in the meantime ends us before anything started."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if (_read_state(job_dir) or {}).get("supervisor_pid") == os.getpid():
            return
        time.sleep(0.01)

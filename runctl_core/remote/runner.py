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
manifest is not that one, or a synced file changed since it was written (``runner_files.py``), they exit 19
before changing anything. Files sent with a command (``bootstrap.py``
stages them) are moved into place only once its checks passed: ``launch --staged DIR`` moves DIR's entries into
the job directory, ``apply-sync --files DIR`` moves DIR's files into ``--dest``.

This file is the command line (part 5 of 5); the rest is shipped beside it in the same directory:
``runner_procs.py`` (processes), ``runner_records.py`` (the job record), ``runner_supervise.py`` (the
supervisor), ``runner_files.py`` (files sent with commands, the manifest). ``python3 runner.py ...`` works
from that directory as before; the names other tools use (``job_record``, ``stop_job``, ``main``...) are here.
"""

import json
import os
import subprocess
import sys
import time

# argparse, base64, datetime, hashlib, select, shutil and tarfile are imported where they are used: the supervisor
# starts once per job, and what it imports is time before the script starts

_PARTS = ("runner_files", "runner_procs", "runner_records", "runner_supervise")
if not __package__ and "apply_sync" not in globals():  # shipped as files (not runner_source()'s one joined text)
    _missing = [p for p in _PARTS if not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), p + ".py"))]
    if _missing:  # a provider that ships runner.py alone (the recipe before the runner was split): say so, loudly
        sys.stderr.write(
            "runctl runner: %s.py missing beside runner.py: the runner is several files; ship every file of "
            "runctl_core.remote.RUNNER_PATHS into one directory (or the deprecated runner_source() text)\n"
            % ".py, ".join(_missing)
        )
        sys.exit(3)
try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_files import EXIT_STALE_PROJECT, _move_entries, _stale, apply_sync, manifest_digest
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_files import EXIT_STALE_PROJECT, _move_entries, _stale, apply_sync, manifest_digest
try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_procs import _alive, _group_is_job, _is_supervisor, _job_processes, _kill_group, find_uv, start_time, sweep_job
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_procs import _alive, _group_is_job, _is_supervisor, _job_processes, _kill_group, find_uv, start_time, sweep_job
try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_records import PENDING_START_GRACE, TERMINAL, _now, _read_state, _size, _supervising, _write_state, job_record, stop_job
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_records import PENDING_START_GRACE, TERMINAL, _now, _read_state, _size, _supervising, _write_state, job_record, stop_job
try:  # in the runctl_core.remote package (the laptop's inline mode)
    from .runner_supervise import _command, _environment, _watch, supervise
except ImportError:  # shipped as files beside each other in ROOT/bin
    from runner_supervise import _command, _environment, _watch, supervise

EXIT_JOB_EXISTS = 17
EXIT_SCRIPT_MISSING = 18
# ``status`` right after the older recipe (``supervise ... &``) may run before the supervisor wrote anything
NO_RECORD_WAIT = 5.0
AFTER_TIMEOUT = 300.0  # seconds a supervisor's --after step may take; a stop waits for it that long at most
HERE = os.path.dirname(os.path.abspath(__file__))
# How launch starts the supervisor: this file imported as a module (``-c``, its path as the first argument, so
# ``ps`` shows "runner.py supervise ..."), not run as a script - a script is compiled from source every time, a
# module's bytecode is cached in __pycache__ beside it. Its directory replaces sys.path[0] (-c's current
# directory, the user's project: a json.py there must not shadow the standard library). It ends with os._exit once
# the end is recorded (the log and record are closed and synced): whoever waits for the process to end (the local
# provider's wait_change) need not wait for the interpreter's teardown.
SUPERVISOR_BOOT = ("import os, sys; sys.path[0] = os.path.dirname(sys.argv[1]); import runner; "
                   "os._exit(runner.main(sys.argv[2:]))")
__all__ = [  # what runner.py offers its neighbours (ranks.py, providers' agents) and runctl's own tests
    "EXIT_JOB_EXISTS", "EXIT_SCRIPT_MISSING", "EXIT_STALE_PROJECT", "PENDING_START_GRACE", "TERMINAL", "_alive",
    "_command", "_environment", "_group_is_job", "_is_supervisor", "_job_processes", "_kill_group", "_move_entries",
    "_now", "_read_state", "_size", "_stale", "_supervising", "_watch", "_write_state", "apply_sync", "find_uv",
    "job_record", "main", "manifest_digest", "start_time", "stop_job", "supervise", "sweep_job",
]


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
    if _stale(opts, opts.workdir):
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
    for flag, value in (("--resume-dir", opts.resume_dir), ("--env-file", opts.env_file),
                        ("--setup-file", opts.setup_file), ("--python", opts.python),
                        ("--envs-dir", opts.envs_dir), ("--tools-dir", opts.tools_dir)):  # the environment step's
        if value:
            argv += [flag, value]
    if opts.timeout:
        argv += ["--timeout", "%g" % opts.timeout]
    if opts.no_uv:
        argv.append("--no-uv")
    return argv + ["--", opts.script] + opts.args


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
    parser.add_argument("--after-timeout", type=float, default=AFTER_TIMEOUT)
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

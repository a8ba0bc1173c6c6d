#!/usr/bin/env python3
"""runctl's multi-node launcher: one job, N ranks (one process group per node), each under ``runner.py``.

Shipped next to ``runner.py`` (stdlib only, Python >= 3.8). Layout of a multi-node job directory ``D``::

    D/job.json           the job's record (as for one node): state, exit code, and ``rank`` = the rank that
                         decided the outcome (the first to fail)
    D/log -> ranks/0/log rank 0's log is the job's log (``logs`` shows rank 0 by default)
    D/checkpoints/       rank 0's RUNCTL_CHECKPOINT_DIR: the job's checkpoints come from rank 0
    D/ranks/K/           rank K's own runner record (job.json), log and (K > 0) checkpoints/

``RUNCTL_JOB_ID`` is the job id on rank 0 and ``JOB-rankK`` on rank K (see :func:`rank_job_id`).
Every rank gets torchrun-compatible variables: ``RANK`` and ``NODE_RANK`` (= K), ``LOCAL_RANK`` (0),
``WORLD_SIZE`` and ``RUNCTL_NUM_NODES`` (= N), ``MASTER_ADDR``, ``MASTER_PORT``. With ``--launcher torchrun``
each node runs ``python -m torch.distributed.run --nnodes N --node-rank K --nproc-per-node P --master-addr A
--master-port P SCRIPT ARGS`` instead (through ``ranks.py torchrun ...``, so uv can provide the Python) (torchrun then sets RANK/LOCAL_RANK/WORLD_SIZE per process itself).

The job succeeds only if every rank exits 0. When one rank ends otherwise, the others are stopped (SIGTERM,
grace, SIGKILL through their runners) and the job takes that rank's state, exit code and message.

Usage::

    ranks.py launch --job-dir D --nodes N [runner options] -- SCRIPT [ARGS...]    # all ranks on this machine
    ranks.py rank --job-dir D --nodes N [runner options] -- SCRIPT [ARGS...]      # one rank, under srun
    ranks.py prepare --job-dir D --nodes N [runner options] -- SCRIPT [ARGS...]   # the environment, once
    ranks.py start --job-dir D --nodes N [--slurm-job-id ID]                       # record "running"
    ranks.py aggregate --job-dir D --nodes N                                       # write D/job.json
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402  (shipped next to this file)

FAILED_FIRST = ("failed", "lost", "interrupted")


def rank_dir(job_dir, rank):
    return os.path.join(job_dir, "ranks", str(rank))


def rank_job_id(job_id, rank):
    """RUNCTL_JOB_ID of a rank: the job id on rank 0, ``JOB-rankK`` on rank K. The runner ends every process
    carrying its RUNCTL_JOB_ID when its script ends, so ranks sharing a machine must not share it."""
    return job_id if rank == 0 or not job_id else "%s-rank%d" % (job_id, rank)


def rank_env(rank, nodes, master_addr, master_port):
    """The variables of rank ``rank`` (one process per node; torchrun overrides the per-process ones)."""
    return {
        "RANK": str(rank),
        "NODE_RANK": str(rank),
        "LOCAL_RANK": "0",
        "WORLD_SIZE": str(nodes),
        "RUNCTL_NUM_NODES": str(nodes),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }


def script_argv(opts, rank):
    """What runner.py runs for this rank: the script, or this file's ``torchrun`` command around it (which
    becomes ``python -m torch.distributed.run ...`` in the rank's Python: uv's environment when uv runs it)."""
    if opts.launcher != "torchrun":
        return [opts.script] + opts.args
    return [os.path.abspath(__file__), "torchrun", "--nnodes", str(opts.nodes), "--node-rank", str(rank),
            "--nproc-per-node", str(opts.nproc_per_node), "--master-addr", opts.master_addr,
            "--master-port", str(opts.master_port), opts.script] + opts.args


def _write_env_file(path, env):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(env, fh)


def _base_env(opts):
    env = {}
    if opts.env_file:
        with open(opts.env_file) as fh:
            env.update(json.load(fh))
    return env


def _link_log(job_dir):
    link = os.path.join(job_dir, "log")
    if not os.path.lexists(link):
        try:
            os.symlink(os.path.join("ranks", "0", "log"), link)
        except FileExistsError:
            pass


def _runner_argv(opts, rank, env_file):
    directory = rank_dir(opts.job_dir, rank)
    checkpoints = opts.checkpoint_dir if rank == 0 else os.path.join(directory, "checkpoints")
    argv = ["supervise", "--job-dir", directory, "--workdir", opts.workdir, "--checkpoint-dir", checkpoints,
            "--job-id", rank_job_id(opts.job_id, rank), "--env-file", env_file, "--grace", str(opts.grace)]
    if opts.no_uv:
        argv.append("--no-uv")
    if opts.timeout:
        argv += ["--timeout", str(opts.timeout)]
    if opts.resume_dir:  # every rank may need the state to resume from
        argv += ["--resume-dir", opts.resume_dir]
    if envsetup_path():  # the ranks find the environment ``prepare`` built (cached), in the instance's dirs
        envs, tools = env_dirs(opts)
        argv += ["--envs-dir", envs, "--tools-dir", tools]
        argv += ["--python", opts.python] if opts.python else []
        argv += ["--setup-file", opts.setup_file] if opts.setup_file else []
    return argv + ["--"] + script_argv(opts, rank)


def envsetup_path():
    """The core's environment step, when it is shipped beside this file (else ranks run as before it)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "envsetup.py")
    return path if os.path.isfile(path) else None


def env_dirs(opts):
    """Where environments and tools are cached: given, else beside the job directory's ``jobs/`` (the
    instance's root, as the runner does for a one-node job) - never per rank, never per job."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(opts.job_dir)))
    return opts.envs_dir or os.path.join(root, "envs"), opts.tools_dir or os.path.join(root, "tools")


def prepare(opts):
    """Prepare the job's environment once, before any rank starts (output to rank 0's log), so that N ranks
    on a shared filesystem or one machine do not build the same environment N times at once."""
    tool = envsetup_path()
    if tool is None:
        return 0
    envs, tools = env_dirs(opts)
    argv = [sys.executable, tool, "--project", opts.workdir, "--script", opts.script, "--envs-dir", envs,
            "--tools-dir", tools, "--result", os.path.join(opts.job_dir, "setup.json")]
    argv += ["--python", opts.python] if opts.python else []
    argv += ["--setup-file", opts.setup_file] if opts.setup_file else []
    argv += ["--no-uv"] if opts.no_uv else []
    directory = rank_dir(opts.job_dir, 0)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "log"), "ab") as log:
        return subprocess.run(argv, cwd=opts.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log).returncode


def aggregate(job_dir, nodes, stopped=()):
    """Write the job's record from its ranks' records: succeeded only if every rank succeeded; otherwise the
    first rank to end badly (earliest end; ranks stopped by us or by srun count last) decides."""
    records = [runner.job_record(rank_dir(job_dir, k)) for k in range(nodes)]
    if all(r.get("state") == "succeeded" for r in records):
        return runner._write_state(job_dir, state="succeeded", exit_code=0, ended_at=runner._now(), message="",
                                   rank=None)
    ended = [(k, r) for k, r in enumerate(records) if r.get("state") in runner.TERMINAL and r.get("state") !=
             "succeeded"]
    if not ended:
        return runner._write_state(job_dir, state="lost", ended_at=runner._now(), rank=None,
                                   message="the ranks ended without recording an exit code")

    def order(item):
        k, record = item
        decisive = record.get("state") in FAILED_FIRST and k not in stopped
        return (0 if decisive else 1, record.get("ended_at") or "", k)

    rank, record = sorted(ended, key=order)[0]
    message = "rank %d: %s" % (rank, record.get("message") or record.get("state"))
    return runner._write_state(job_dir, state=record.get("state"), exit_code=record.get("exit_code"),
                               ended_at=runner._now(), message=message, rank=rank)


def free_port():
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def _stop_ranks(opts, procs, ranks):
    """SIGTERM every rank's runner at once (each stops its group: SIGTERM, grace, SIGKILL), then force."""
    for k in ranks:
        try:
            procs[k].send_signal(signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + opts.grace + 5
    while time.monotonic() < deadline and any(procs[k].poll() is None for k in ranks):
        time.sleep(0.05)
    for k in ranks:
        if procs[k].poll() is None:
            runner.stop_job(rank_dir(opts.job_dir, k), 0)
            procs[k].kill()
        procs[k].wait()


def launch(opts):
    """All ranks on this machine, each its own runner (own process group); stop the rest when one fails."""
    os.makedirs(opts.job_dir, exist_ok=True)
    opts.master_addr = opts.master_addr or "127.0.0.1"
    opts.master_port = opts.master_port or free_port()
    base = _base_env(opts)
    if opts.env_file:
        os.unlink(opts.env_file)
    stop_request = []
    signal.signal(signal.SIGTERM, lambda *_: stop_request.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop_request.append(True))
    runner._write_state(opts.job_dir, state="running", supervisor_pid=os.getpid(), started_at=runner._now(),
                        job_id=opts.job_id, nodes=opts.nodes)
    _link_log(opts.job_dir)
    prepare(opts)  # a failure is the ranks' to report: each one's runner repeats the step and records it
    procs = []
    for rank in range(opts.nodes):
        directory = rank_dir(opts.job_dir, rank)
        os.makedirs(directory, exist_ok=True)
        env_file = os.path.join(directory, "env.json")
        _write_env_file(env_file, dict(base, **rank_env(rank, opts.nodes, opts.master_addr, opts.master_port)))
        argv = [sys.executable, "-S", runner.__file__] + _runner_argv(opts, rank, env_file)
        procs.append(subprocess.Popen(argv, cwd=opts.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
    stopped = set()
    while True:
        done = [p.poll() is not None for p in procs]
        if all(done):
            break
        bad = [k for k in range(opts.nodes) if done[k] and runner.job_record(rank_dir(opts.job_dir, k)).get("state")
               not in ("succeeded", "running", "pending")]
        if bad or stop_request:
            stopped = {k for k in range(opts.nodes) if not done[k]}
            _stop_ranks(opts, procs, stopped)
            break
        time.sleep(0.05)
    if stop_request:
        runner._write_state(opts.job_dir, state="cancelled", ended_at=runner._now(), message="stopped on request",
                            exit_code=None, rank=None)
    else:
        aggregate(opts.job_dir, opts.nodes, stopped)
    return 0


def rank_main(opts):
    """One rank started by an external launcher (srun): its rank from ``--rank-var``; exit with its exit code,
    so that ``srun --kill-on-bad-exit`` stops the other ranks when this one fails."""
    rank = int(os.environ.get(opts.rank_var, "0"))
    opts.master_addr = opts.master_addr or os.environ.get("MASTER_ADDR", "127.0.0.1")
    opts.master_port = opts.master_port or int(os.environ.get("MASTER_PORT", "29500"))
    directory = rank_dir(opts.job_dir, rank)
    os.makedirs(directory, exist_ok=True)
    if rank == 0:
        _link_log(opts.job_dir)
    env_file = os.path.join(directory, "env.json")
    _write_env_file(env_file, dict(_base_env(opts), **rank_env(rank, opts.nodes, opts.master_addr,
                                                                opts.master_port)))
    runner.main(_runner_argv(opts, rank, env_file))
    code = runner.job_record(directory).get("exit_code")
    return code if isinstance(code, int) and 0 <= code < 256 else (0 if code is None else 1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["torchrun"]:  # run by runner.py as a rank's "script": become torchrun in this Python
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run"] + argv[1:])
    parser = argparse.ArgumentParser(prog="ranks.py")
    sub = parser.add_subparsers(dest="cmd")
    for name in ("launch", "rank", "prepare", "start", "aggregate"):
        p = sub.add_parser(name)
        p.add_argument("--job-dir", required=True)
        p.add_argument("--nodes", type=int, required=True)
        p.add_argument("--slurm-job-id", default="")
        if name in ("start", "aggregate"):
            continue
        p.add_argument("--workdir", required=True)
        p.add_argument("--checkpoint-dir", required=True)
        p.add_argument("--job-id", default="")
        p.add_argument("--resume-dir", default="")
        p.add_argument("--env-file", default="")
        p.add_argument("--timeout", type=float, default=0)
        p.add_argument("--grace", type=float, default=10)
        p.add_argument("--no-uv", action="store_true")
        p.add_argument("--launcher", choices=("python", "torchrun"), default="python")
        p.add_argument("--nproc-per-node", type=int, default=1)
        p.add_argument("--master-addr", default="")
        p.add_argument("--master-port", type=int, default=0)
        p.add_argument("--rank-var", default="SLURM_NODEID")
        p.add_argument("--python", default="")  # the environment step's options (see envsetup.py)
        p.add_argument("--setup-file", default="")
        p.add_argument("--envs-dir", default="")
        p.add_argument("--tools-dir", default="")
        p.add_argument("script")
        p.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    if getattr(opts, "args", None) and opts.args[0] == "--":
        opts.args = opts.args[1:]
    if opts.cmd == "launch":
        return launch(opts)
    if opts.cmd == "rank":
        return rank_main(opts)
    if opts.cmd == "prepare":
        prepare(opts)
        return 0
    if opts.cmd == "start":  # an external launcher's job began (a Slurm batch script): no supervisor pid here
        os.makedirs(opts.job_dir, exist_ok=True)
        runner._write_state(opts.job_dir, state="running", started_at=runner._now(), nodes=opts.nodes,
                            slurm_job_id=opts.slurm_job_id, exit_code=None, ended_at=None, message="", rank=None)
        return 0
    if opts.cmd == "aggregate":
        print(json.dumps(aggregate(opts.job_dir, opts.nodes)))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

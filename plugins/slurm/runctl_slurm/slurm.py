"""What runctl says to Slurm and how it reads Slurm's answers: the batch script, GRES/partition/time options,
``squeue``/``sacct`` output, and Slurm job states mapped to runctl's. Pure functions, no I/O.

References: sbatch(1), squeue(1), sacct(1), scancel(1), srun(1), slurm.conf(5) of Slurm 22.05. ``squeue --json``
/ ``sacct --json`` come from the openapi plugins (22.05: ``openapi/v0.0.38``, ``job_state`` a string and
``exit_code`` an integer; 23.02+: ``data_parser``, ``job_state`` a list and ``exit_code`` an object with
``return_code``) - both shapes are read. Builds without the JSON plugins get ``squeue --format`` instead.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any

from runctl_core.errors import UsageError
from runctl_core.models import JobState

# squeue/sacct JOB STATE CODES (squeue(1)) -> runctl's states
RUNNING_STATES = {"CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING"}
PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
INTERRUPTED_STATES = {"PREEMPTED", "NODE_FAIL", "BOOT_FAIL"}  # the job lost its nodes: resumable (--recover)
FAILED_MESSAGES = {
    "TIMEOUT": "Slurm stopped the job at its time limit (TIMEOUT); raise --max-runtime",
    "OUT_OF_MEMORY": "the job ran out of memory (OUT_OF_MEMORY); ask for more memory or a bigger node",
    "DEADLINE": "the job missed its deadline (DEADLINE)",
    "FAILED": "Slurm reports the job FAILED",
}
_UNSAFE = re.compile(r"[\s\"'=]")
SQUEUE_FORMAT = "%i|%T|%r|%j|%k"  # id, state, reason, name, comment (squeue(1) -o)


@dataclass(frozen=True)
class SlurmJob:
    """One job as squeue or sacct shows it."""

    job_id: str
    state: str  # the base state code, e.g. PENDING, RUNNING, TIMEOUT
    reason: str = ""  # why it is pending (Resources, Priority, ...) or "None"
    name: str = ""
    comment: str = ""
    exit_code: int | None = None


# ----------------------------------------------------------------------------------------- tags in --comment


def comment_for(tags: dict[str, str]) -> str:
    """runctl's tags as the job's ``--comment`` (``key=value`` words; spaces and quotes removed from values)."""
    return " ".join(f"{k}={_UNSAFE.sub('_', v)}" for k, v in sorted(tags.items()))


def tags_from_comment(comment: str) -> dict[str, str]:
    """The runctl tags in a job's comment (``{}`` for a job runctl did not submit)."""
    tags = {}
    for word in comment.split():
        key, sep, value = word.partition("=")
        if sep and key.startswith("runctl:"):
            tags[key] = value
    return tags


# ----------------------------------------------------------------------------------------- sbatch options


def gres_options(gpu: str | None, count: int, gres_map: dict[str, str], partition: str | None) -> list[str]:
    """``--gpu A100 --gpu-count 4`` -> ``--gres=gpu:a100:4`` (per node), or the partition ``gres_map`` names
    for that GPU (``"A100" = "partition:gpu-a100"`` -> ``--partition=gpu-a100 --gres=gpu:4``)."""
    options = [f"--partition={partition}"] if partition else []
    if not gpu:
        return options
    mapped = {k.lower(): v for k, v in gres_map.items()}.get(gpu.lower())
    if mapped and mapped.startswith("partition:"):
        return [f"--partition={mapped.split(':', 1)[1]}", f"--gres=gpu:{count}"]
    gres_type = mapped or re.sub(r"[^a-z0-9_.-]", "", gpu.lower())
    if not gres_type:
        raise UsageError(
            f"cannot make a Slurm GRES type of GPU {gpu!r}", 'map it: [providers.slurm.gres_map] "X" = "x"'
        )
    return [*options, f"--gres=gpu:{gres_type}:{count}"]


def time_limit(seconds: float) -> str:
    """sbatch ``--time`` from seconds, in whole minutes rounded up (Slurm's smallest unit): ``D-HH:MM:00``."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


@dataclass(frozen=True)
class BatchJob:
    """Everything the batch script needs. Paths are absolute paths on the cluster's shared filesystem."""

    job_id: str
    job_dir: str
    project_dir: str
    tools_dir: str  # where runner.py and ranks.py are
    script: str
    args: list[str]
    nodes: int
    options: list[str]  # sbatch options: partition, gres, time, account, qos
    comment: str
    python: str = "python3"
    use_uv: bool = True
    launcher: str = "python"
    procs_per_node: int = 1
    grace: float = 10.0
    timeout: float | None = None
    resume_dir: str | None = None
    envs_dir: str = ""  # the environment step's caches on the shared filesystem (one per workdir)
    uv_dir: str = ""  # where the environment step installs uv when the nodes have none
    setup_file: str = ""  # the job's setup commands (JSON list), run once per environment
    python_version: str = ""  # the job's Python version for the environment step, e.g. "3.11"


def batch_script(job: BatchJob) -> str:
    """The script given to ``sbatch --parsable``. It runs once, on the first node of the allocation: it records
    the job as running, finds rank 0's address and a free port (MASTER_ADDR/MASTER_PORT), starts one rank per
    node with ``srun --kill-on-bad-exit=1`` (the first rank to fail stops the others), and writes the job's
    record from the ranks' records. The job's environment (``env.json``, mode 0600) is removed at the end.
    The Python environment is prepared once (``ranks.py prepare``, the core's environment step when shipped)
    on the shared filesystem before the ranks start; they find it cached."""
    q = shlex.quote
    ranks = f"{q(job.python)} {q(job.tools_dir + '/ranks.py')}"
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name=runctl-{job.job_id}",
        f"#SBATCH --comment={q(job.comment)}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --no-requeue",  # a preempted or failed node ends the job: runctl --recover resubmits it
        f"#SBATCH --output={job.job_dir}/batch.log",
        f"#SBATCH --chdir={job.project_dir}",
        *(f"#SBATCH {option}" for option in job.options),
    ]
    rank_args = [
        "rank", "--job-dir", job.job_dir, "--nodes", str(job.nodes), "--workdir", job.project_dir,
        "--checkpoint-dir", f"{job.job_dir}/checkpoints", "--job-id", job.job_id, "--env-file",
        f"{job.job_dir}/env.json", "--grace", f"{job.grace:g}", "--launcher", job.launcher,
        "--nproc-per-node", str(job.procs_per_node), "--rank-var", "SLURM_NODEID",
    ]  # fmt: skip
    if not job.use_uv:
        rank_args.append("--no-uv")
    if job.timeout:
        rank_args += ["--timeout", f"{job.timeout:g}"]
    if job.resume_dir:
        rank_args += ["--resume-dir", job.resume_dir]
    if job.envs_dir:
        rank_args += ["--envs-dir", job.envs_dir, "--tools-dir", job.uv_dir]
    if job.setup_file:
        rank_args += ["--setup-file", job.setup_file]
    if job.python_version:
        rank_args += ["--python", job.python_version]
    rank_args += ["--", job.script, *job.args]
    prepare_args = ["prepare", *rank_args[1:]]
    body = f"""
set -u
JOB_DIR={q(job.job_dir)}
{ranks} start --job-dir "$JOB_DIR" --nodes {job.nodes} --slurm-job-id "$SLURM_JOB_ID"
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_ADDR=$(scontrol show node "$first" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p' | head -n 1)
export MASTER_ADDR=${{MASTER_ADDR:-$first}}
export MASTER_PORT=$({q(job.python)} -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
echo "runctl: $SLURM_JOB_NUM_NODES node(s) $SLURM_JOB_NODELIST, rank 0 at $MASTER_ADDR:$MASTER_PORT"
{ranks} {shlex.join(prepare_args)}
srun --kill-on-bad-exit=1 --nodes={job.nodes} --ntasks-per-node=1 {ranks} {shlex.join(rank_args)}
code=$?
{ranks} aggregate --job-dir "$JOB_DIR" --nodes {job.nodes} >/dev/null
rm -f "$JOB_DIR/env.json"
exit $code
"""
    return "\n".join(header) + "\n" + body


# ----------------------------------------------------------------------------------------- squeue / sacct


def _state_of(raw: Any) -> str:
    if isinstance(raw, list):  # 23.02+: ["RUNNING", "COMPLETING", ...]
        raw = raw[0] if raw else ""
    if isinstance(raw, dict):  # sacct: {"current": "...", "reason": "..."}
        raw = raw.get("current", "")
        if isinstance(raw, list):
            raw = raw[0] if raw else ""
    return str(raw or "").split()[0].rstrip("+") if raw else ""


def _exit_of(raw: Any) -> int | None:
    if isinstance(raw, dict):  # 23.02+ / sacct: {"status": ..., "return_code": N}
        raw = raw.get("return_code")
        if isinstance(raw, dict):  # 24.05+: {"set": true, "number": N}
            raw = raw.get("number") if raw.get("set", True) else None
    return raw if isinstance(raw, int) else None


def parse_squeue_json(text: str) -> list[SlurmJob]:
    """``squeue --json`` (also ``sacct --json``: its jobs carry ``state.current`` and ``name``)."""
    data = json.loads(text)
    jobs = []
    for job in data.get("jobs", []):
        state = _state_of(job.get("job_state", job.get("state")))
        reason = job.get("state_reason")
        if reason is None and isinstance(job.get("state"), dict):
            reason = job["state"].get("reason", "")
        comment = job.get("comment", "")
        if isinstance(comment, dict):  # sacct: {"administrator": ..., "job": ..., "system": ...}
            comment = comment.get("job") or ""
        jobs.append(
            SlurmJob(
                job_id=str(job.get("job_id")),
                state=state,
                reason=str(reason or ""),
                name=str(job.get("name") or ""),
                comment=str(comment or ""),
                exit_code=_exit_of(job.get("exit_code")),
            )
        )
    return jobs


def parse_squeue_format(text: str) -> list[SlurmJob]:
    """``squeue -h -o '%i|%T|%r|%j|%k'`` (builds without the JSON plugins)."""
    jobs = []
    for line in text.splitlines():
        parts = line.split("|", 4)
        if len(parts) == 5 and parts[0].strip():
            jobs.append(SlurmJob(parts[0].strip(), parts[1].strip(), parts[2].strip(), parts[3], parts[4]))
    return jobs


def map_state(slurm: SlurmJob | None, record: dict[str, Any] | None) -> tuple[JobState, int | None, str]:
    """runctl's state, exit code and message from what Slurm says and the job's own record (``job.json`` on the
    shared filesystem, written by runctl's supervisor: the source of exit codes; accounting may be off and a
    finished job leaves squeue after MinJobAge)."""
    record = record or {}
    recorded = str(record.get("state") or "")
    code = record.get("exit_code") if isinstance(record.get("exit_code"), int) else None
    message = str(record.get("message") or "")
    terminal = recorded in {s.value for s in JobState if s.terminal}
    if slurm is not None:
        state = slurm.state
        if state in INTERRUPTED_STATES:
            return JobState.INTERRUPTED, code, f"Slurm: {state} (the job lost its nodes); resumable with --recover"
        if state in ("TIMEOUT", "OUT_OF_MEMORY", "DEADLINE"):
            return JobState.FAILED, code if code is not None else slurm.exit_code, FAILED_MESSAGES[state]
        if state in PENDING_STATES:
            reason = slurm.reason if slurm.reason not in ("", "None") else "not scheduled yet"
            return JobState.PENDING, None, f"waiting in Slurm's queue ({reason})"
        if state in RUNNING_STATES and not terminal:
            return JobState.RUNNING, None, ""
        if state == "CANCELLED" and not terminal:
            return JobState.CANCELLED, code, "cancelled in Slurm (scancel)"
        if not terminal and state in ("COMPLETED", "FAILED"):
            exit_code = slurm.exit_code
            return (
                JobState.LOST,
                exit_code,
                f"Slurm reports {state} but the job left no record of its ranks (see batch.log in its directory)",
            )
    if terminal:
        return JobState(recorded), code, message
    if recorded in ("pending", "running", "") and slurm is None:
        if not record:
            return JobState.LOST, None, "Slurm no longer lists the job and it left no record"
        return JobState.LOST, None, "Slurm no longer lists the job and it left no exit code"
    return JobState.RUNNING, None, ""

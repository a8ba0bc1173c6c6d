"""The shell scripts the provider sends with SSM ``AWS-RunShellScript`` and the EC2 user data (POSIX sh).

Every value that comes from outside (paths, script names, arguments, URLs) is quoted with :func:`shlex.quote`;
``remote_dir`` is validated by the settings and may start with ``$HOME``, so it is written in double quotes.
"""

from __future__ import annotations

import json
import math
import shlex
from datetime import datetime, timezone

from runctl_core.models import JobSpec

q = shlex.quote
EXIT_JOB_EXISTS = 17
EXIT_SCRIPT_MISSING = 18
EXIT_NO_PYTHON = 41


def _prelude(remote_dir: str) -> str:
    return f'set -e\nR="{remote_dir}"\n'


def user_data(max_runtime: float | None, job_id: str | None) -> str:
    """Runs once at boot (cloud-init, as root): arm the self-termination timer. With
    ``InstanceInitiatedShutdownBehavior=terminate`` the halt terminates the instance, so it ends even if
    runctl and the laptop are gone."""
    lines = ["#!/bin/bash", f"# runctl instance for job {job_id or '-'}"]
    if max_runtime:
        minutes = max(1, math.ceil(max_runtime / 60))
        lines.append(f"shutdown -h +{minutes} 'runctl: max runtime reached'")
    return "\n".join(lines) + "\n"


def bootstrap(remote_dir: str, tools_url: str, tools_hash: str) -> str:
    """Check python3, install runner.py and agent.py (once per content hash), answer with a marker line."""
    return (
        _prelude(remote_dir)
        + f"""if ! command -v python3 >/dev/null 2>&1; then
  echo "runctl: python3 is missing on this AMI" >&2; exit {EXIT_NO_PYTHON}
fi
mkdir -p "$R/bin" "$R/project" "$R/jobs"
chmod 700 "$R"
if [ ! -f "$R/bin/.tools-{tools_hash}" ]; then
python3 - "$R/bin" {q(tools_url)} <<'RUNCTL_EOF'
import io, sys, tarfile, urllib.request
data = urllib.request.urlopen(sys.argv[2], timeout=60).read()
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    for member in tar.getmembers():
        if member.isfile() and "/" not in member.name:
            with open(sys.argv[1] + "/" + member.name, "wb") as fh:
                fh.write(tar.extractfile(member).read())
RUNCTL_EOF
chmod 755 "$R"/bin/*.py
rm -f "$R"/bin/.tools-*
touch "$R/bin/.tools-{tools_hash}"
fi
V=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
echo "runctl-ready python=$V uv=$(command -v uv || echo none)"
"""
    )


def read_manifest(remote_dir: str) -> str:
    """Print the project's manifest the agent wrote after the last sync ({} when there is none)."""
    return _prelude(remote_dir) + 'cat "$R/project/.runctl-manifest.json" 2>/dev/null || echo "{}"\n'


def sync(remote_dir: str, tar_url: str, meta_url: str) -> str:
    return _prelude(remote_dir) + (
        f'python3 "$R/bin/agent.py" sync --url {q(tar_url)} --meta-url {q(meta_url)} --dest "$R/project"\n'
    )


def train(
    remote_dir: str,
    job: JobSpec,
    bundle_url: str,
    *,
    grace: float,
    use_uv: bool,
    spot: bool,
    interrupt_every: float,
    has_resume: bool,
) -> str:
    """Prepare the job directory and start runner.py detached (own session, no inherited descriptors), so
    the job outlives this SSM command and the CLI; print the job record. The supervisor runs the core's
    environment step (envsetup.py, installed beside it) before the script: the project's requirements.txt /
    pyproject.toml / PEP 723 header / ``setup`` commands (written by ``agent.py prepare`` from the bundle)."""
    job_dir = f'"$R/jobs/{job.job_id}"'
    runner_args = [
        "--job-dir",
        '"$J"',
        "--workdir",
        '"$R/project"',
        "--checkpoint-dir",
        '"$J/checkpoints"',
        "--job-id",
        q(job.job_id),
        "--env-file",
        '"$J/env.json"',
        "--grace",
        q(f"{grace:g}"),
        "--after",
        '"python3 $R/bin/agent.py push --final --job-dir $J"',
    ]
    if not use_uv:
        runner_args.append("--no-uv")
    if job.python:
        runner_args += ["--python", q(job.python)]
    if job.setup:
        runner_args += ["--setup-file", '"$J/setup-commands.json"']
    if job.timeout:
        runner_args += ["--timeout", q(f"{job.timeout:g}")]
    if has_resume:
        runner_args += ["--resume-dir", '"$J/resume"']
    if spot:
        runner_args += [
            "--interrupt-check",
            '"python3 $R/bin/agent.py spot-notice"',
            "--interrupt-every",
            q(f"{interrupt_every:g}"),
        ]
    if job.terminate_on_exit:
        runner_args += ["--shutdown-after", "--shutdown-cmd", q("shutdown -h now")]
    command = " ".join([*runner_args, "--", q(job.script), *(q(a) for a in job.args)])
    pending = json.dumps({"state": "pending", "submitted_at": datetime.now(timezone.utc).isoformat()})
    return (
        _prelude(remote_dir)
        + f"""J={job_dir}
if [ -e "$J/job.json" ]; then
  echo "runctl: job {job.job_id} already exists on this instance" >&2; exit {EXIT_JOB_EXISTS}
fi
if [ ! -f "$R/project/"{q(job.script)} ]; then
  echo "runctl: "{q(job.script)}" is not in the synced project" >&2; exit {EXIT_SCRIPT_MISSING}
fi
mkdir -p "$J"
python3 "$R/bin/agent.py" prepare --bundle-url {q(bundle_url)} --job-dir "$J"
printf '%s' {q(pending)} > "$J/job.json"
cd "$R/project"
nohup setsid python3 "$R/bin/runner.py" supervise {command} >/dev/null 2>&1 </dev/null &
python3 "$R/bin/runner.py" status --job-dir "$J"
"""
    )


def job_status(remote_dir: str, job_id: str) -> str:
    return _prelude(remote_dir) + f'python3 "$R/bin/runner.py" status --job-dir "$R/jobs/{job_id}"\n'


def read_log(remote_dir: str, job_id: str, offset: int, limit: int) -> str:
    return _prelude(remote_dir) + (
        f'python3 "$R/bin/agent.py" read-log --job-dir "$R/jobs/{job_id}" --offset {int(offset)} --max {int(limit)}\n'
    )


def stop_job(remote_dir: str, job_id: str, grace: float) -> str:
    return _prelude(remote_dir) + (
        f'python3 "$R/bin/runner.py" stop --job-dir "$R/jobs/{job_id}" --grace {q(f"{grace:g}")}\n'
    )


def stop_all(remote_dir: str, grace: float) -> str:
    return (
        _prelude(remote_dir)
        + f"""for d in "$R"/jobs/*/; do
  [ -f "$d/job.json" ] && python3 "$R/bin/runner.py" stop --job-dir "$d" --grace {q(f"{grace:g}")} >/dev/null || true
done
echo stopped
"""
    )


def list_files(remote_dir: str, job_id: str) -> str:
    return _prelude(remote_dir) + f'python3 "$R/bin/agent.py" ls --dir "$R/jobs/{job_id}/checkpoints"\n'


def push(remote_dir: str, job_id: str) -> str:
    return _prelude(remote_dir) + f'python3 "$R/bin/agent.py" push --job-dir "$R/jobs/{job_id}"\n'

"""What ``JobHost.launch`` sends: the ``runner.py launch`` arguments for a job and the files that travel with them.

The job's environment variables go in ``env.json`` (0600, never on a command line: values may be secrets), its
setup commands in ``setup-commands.json`` and its resume checkpoints under ``resume/``, all in one
:class:`~runctl_core.remote.bundle.Bundle` that ``bootstrap.py`` stages and ``runner.py launch`` moves into the
job's directory once its checks passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runctl_core.models import JobSpec
from runctl_core.remote.bundle import Bundle


def launch_request(
    job: JobSpec,
    *,
    job_dir: str,
    project_dir: str,
    staging: str,
    grace: float,
    use_uv: bool,
    tools_dir: str | None = None,
    envs_dir: str | None = None,
    expect_manifest: tuple[str, str] | None = None,
    extra: Sequence[str] = (),
) -> tuple[list[str], Bundle]:
    """``runner.py launch`` arguments for ``job`` (files staged under ``staging``, moved to ``job_dir``) and the
    bundle to send with them. ``expect_manifest``: (digest, manifest path) the machine must hold, else it
    refuses (exit 19) before writing anything."""
    bundle = Bundle()
    args = ["launch", "--job-dir", job_dir, "--workdir", project_dir]
    args += ["--checkpoint-dir", f"{job_dir}/checkpoints", "--job-id", job.job_id, "--grace", f"{grace:g}"]
    args += ["--staged", staging]
    if job.env:
        bundle.add_json("env.json", job.env)
        args += ["--env-file", f"{job_dir}/env.json"]
    if job.setup:
        bundle.add_json("setup-commands.json", job.setup)
        args += ["--setup-file", f"{job_dir}/setup-commands.json"]
    if job.python:
        args += ["--python", job.python]
    if not use_uv:
        args.append("--no-uv")
    if job.timeout:
        args += ["--timeout", f"{job.timeout:g}"]
    if tools_dir:
        args += ["--tools-dir", tools_dir]
    if envs_dir:
        args += ["--envs-dir", envs_dir]
    if job.resume_dir and Path(job.resume_dir).is_dir() and bundle.add_tree("resume", Path(job.resume_dir)):
        args += ["--resume-dir", f"{job_dir}/resume"]
    if expect_manifest is not None:
        args += ["--expect-manifest", expect_manifest[0], "--manifest", expect_manifest[1]]
    if job.nodes > 1 or job.launcher != "python":  # N ranks through ranks.py (see its docstring)
        args += ["--nodes", str(job.nodes), "--launcher", job.launcher, "--nproc-per-node", str(job.procs_per_node)]
    return [*args, *extra, "--", job.script, *job.args], bundle

"""Reusable checks of the environment step through the CLI, for any provider (local, and cloud stand-ins).

A provider's test suite calls these with a function that runs ``runctl`` for it (its ``--provider``, config and
stand-in environment) and a temporary directory. Each check builds its own project from ``examples/``:

* :func:`check_requirements_project` - ``requirements.txt`` (numpy) is installed and imported by the job;
* :func:`check_pep723_script` - a PEP 723 header (numpy) is honoured;
* :func:`check_cached_on_kept_instance` - ``create`` + ``train --wait`` twice: the second says ``cached``;
* :func:`check_setup_failure` - an unknown package: exit 3, ``setup_failed`` with the log tail, nothing running.

The machine must start without numpy importable by its ``python3`` (else the first two prove nothing): each
check asserts that numpy was imported from an environment runctl prepared, not from ``forbidden_prefix``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runctl_core.testing.cli import CliResult, run_runctl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RunCli = Callable[..., CliResult]  # run(*args, cwd=Path) -> CliResult


def provider_cli(provider: str, settings: dict[str, Any], config_dir: Path, machine: list[str]) -> RunCli:
    """``run(*args, cwd=...)`` running ``runctl --provider PROVIDER`` with ``settings`` as its ``[providers.NAME]``
    table (written to ``config_dir/.runctl.toml``, found upward from each check's project) and ``machine`` (e.g.
    ``["--gpu", "RTX 4090"]``) added after ``run`` / ``create``. The caller isolates RUNCTL_HOME first."""
    lines = [f"[providers.{provider}]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    (config_dir / ".runctl.toml").write_text("\n".join(lines) + "\n")

    def run(*args: str, cwd: Path) -> CliResult:
        extra = list(args)
        for command in ("run", "create"):
            if command in extra:
                at = extra.index(command) + 1
                extra[at:at] = machine
                break
        return run_runctl("--provider", provider, *extra, cwd=cwd, timeout=900)

    return run


def env_project(dest: Path) -> Path:
    """A project: examples/env_project (requirements.txt naming numpy, train_numpy.py) + pep723_numpy.py."""
    shutil.copytree(EXAMPLES / "env_project", dest, dirs_exist_ok=True)
    shutil.copy(EXAMPLES / "pep723_numpy.py", dest / "pep723_numpy.py")
    return dest


def numpy_location(log: str) -> str:
    """Where the job imported numpy from, read from its output (the examples print it)."""
    lines = [line for line in log.splitlines() if line.startswith("numpy ") and " imported from " in line]
    assert lines, f"the job did not import numpy; its log:\n{log[-3000:]}"
    return lines[-1].split(" imported from ", 1)[1]


def _logs(run: RunCli, cwd: Path, job_id: str) -> str:
    shown = run("logs", job_id, cwd=cwd)
    assert shown.code == 0, shown.err
    return shown.out


def check_requirements_project(run: RunCli, tmp: Path, forbidden_prefix: str | None = None) -> dict[str, Any]:
    project = env_project(tmp / "req_project")
    (project / "pep723_numpy.py").unlink()  # only requirements.txt declares numpy here
    result = run("-o", "json", "run", "train_numpy.py", "--", "--steps", "50", cwd=project)
    assert result.code == 0, result.err
    doc: dict[str, Any] = result.json()
    assert doc["job"]["state"] == "succeeded"
    assert doc["environment"]["state"] == "installed", doc.get("environment")
    where = numpy_location(_logs(run, project, doc["job"]["job_id"]))
    if forbidden_prefix:
        assert not where.startswith(forbidden_prefix), f"numpy came from the machine's own Python: {where}"
    assert any(Path(p).name == "weights.json" for p in doc["checkpoints"])
    return doc


def check_pep723_script(run: RunCli, tmp: Path, forbidden_prefix: str | None = None) -> dict[str, Any]:
    project = env_project(tmp / "pep723_project")
    (project / "requirements.txt").unlink()  # only the script's header declares numpy here
    result = run("-o", "json", "run", "pep723_numpy.py", cwd=project)
    assert result.code == 0, result.err
    doc: dict[str, Any] = result.json()
    assert doc["environment"]["state"] == "installed" and "pep723" in doc["environment"]["summary"]
    where = numpy_location(_logs(run, project, doc["job"]["job_id"]))
    if forbidden_prefix:
        assert not where.startswith(forbidden_prefix), f"numpy came from the machine's own Python: {where}"
    return doc


def check_cached_on_kept_instance(run: RunCli, tmp: Path) -> list[dict[str, Any]]:
    project = env_project(tmp / "cached_project")
    created = run("-o", "json", "create", "--wait", cwd=project)
    assert created.code == 0, created.err
    instance = created.json()["id"]
    try:
        docs = []
        for _ in range(2):
            trained = run(
                "-o", "json", "train", instance, "train_numpy.py", "--wait", "--", "--steps", "5", cwd=project
            )
            assert trained.code == 0, trained.err
            docs.append(trained.json())
        assert [d["environment"]["state"] for d in docs] == ["installed", "cached"]
        text = run("train", instance, "train_numpy.py", "--wait", cwd=project)
        assert text.code == 0 and "environment: cached" in text.out, text.out + text.err
        numpy_location(_logs(run, project, docs[1]["job_id"]))
        return docs
    finally:
        assert run("terminate", instance, "--yes", cwd=project).code == 0


def check_setup_failure(run: RunCli, tmp: Path) -> dict[str, Any]:
    project = env_project(tmp / "bad_project")
    (project / "requirements.txt").write_text("runctl-no-such-package-xyz==0.0.1\n")
    result = run("-o", "json", "run", "train_numpy.py", cwd=project)
    assert result.code == 3, (result.code, result.err)
    error = result.error()
    assert error["code"] == "setup_failed"
    assert "environment could not be prepared" in error["message"]
    assert "runctl-no-such-package-xyz" in error["message"]  # the setup log's tail is in the message
    assert "runctl logs" in error["hint"]
    summary = run("-o", "json", "status", cwd=project).json()["summary"]
    assert summary["instances_running"] == 0 and summary["jobs_active"] == 0
    assert run("-o", "json", "resources", "list", cwd=project).json()["resources"] == []
    return error

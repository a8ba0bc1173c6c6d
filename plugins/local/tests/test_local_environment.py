"""The environment step on the local provider, through the real CLI, on a "bare" machine: a PATH without uv and
the system Python (no numpy) as the machine's python3. requirements.txt and a PEP 723 header are installed and
imported, a kept instance reuses its environment, an unknown package is a setup failure with nothing left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runctl_core.testing.cli import CliResult, run_runctl
from runctl_core.testing.environment import (
    check_cached_on_kept_instance,
    check_pep723_script,
    check_requirements_project,
    check_setup_failure,
)

BARE_PYTHON = "/usr/bin/python3"  # the machine's python3: no numpy, no uv
pytestmark = pytest.mark.skipif(not Path(BARE_PYTHON).exists(), reason=f"{BARE_PYTHON} is needed as a bare Python")


def bare_path() -> str:
    """PATH without any directory holding uv, so the environment step must install it."""
    return os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "uv").exists()
    )


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("RUNCTL_PROVIDER", "RUNCTL_CONFIG", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", bare_path())

    def runctl(*args: str, cwd: Path) -> CliResult:
        return run_runctl("--provider", "local", *args, cwd=cwd, timeout=600)

    return runctl


def configure(project_parent: Path, use_uv: bool) -> None:
    """The .runctl.toml of every project the checks create under ``project_parent`` (found upward)."""
    project_parent.mkdir(parents=True, exist_ok=True)
    (project_parent / ".runctl.toml").write_text(
        f'[providers.local]\nuse_uv = {"true" if use_uv else "false"}\npython = "{BARE_PYTHON}"\ngrace_period = 1.0\n'
    )


def test_machine_is_bare() -> None:
    assert shutil.which("uv", path=bare_path()) is None
    assert os.system(f"{BARE_PYTHON} -c 'import numpy' 2>/dev/null") != 0


def test_requirements_installed_with_uv_installed_by_runctl(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    configure(tmp_path, use_uv=True)
    doc = check_requirements_project(run, tmp_path, forbidden_prefix="/usr/lib")
    assert "uv" in doc["environment"]["summary"]
    log = run("logs", doc["job"]["job_id"], cwd=tmp_path).out
    assert "uv not found; installing it" in log  # the bare machine got uv from the package index


def test_pep723_header_honoured_without_uv(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    configure(tmp_path, use_uv=False)  # venv + pip: declared dependencies are never silently ignored
    doc = check_pep723_script(run, tmp_path, forbidden_prefix="/usr/lib")
    assert "pip" in doc["environment"]["summary"]


def test_second_job_on_kept_instance_reuses_environment(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    configure(tmp_path, use_uv=True)
    check_cached_on_kept_instance(run, tmp_path)


def test_unknown_package_is_a_setup_failure_and_nothing_runs(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    configure(tmp_path, use_uv=False)
    check_setup_failure(run, tmp_path)


def test_failing_setup_command_and_python_version(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    configure(tmp_path, use_uv=False)
    project = tmp_path / "p"
    project.mkdir()
    (project / "hello.py").write_text("import sys; print('hello from', sys.version_info[:2])\n")
    ok = run("-o", "json", "run", "hello.py", "--setup", "echo setup-ran > marker.txt", "--python", "3.11", cwd=project)
    assert ok.code == 0, ok.err
    job = ok.json()["job"]["job_id"]
    log = run("logs", job, cwd=project).out
    assert "setup: echo setup-ran" in log and "hello from (3, 11)" in log
    bad = run("-o", "json", "run", "hello.py", "--setup", "exit 7", cwd=project)
    assert bad.code == 3 and bad.error()["code"] == "setup_failed"
    assert "exited with code 7" in bad.error()["message"]
    assert run("run", "hello.py", "--python", "two", cwd=project).code == 2

"""The job's environment on an EC2 instance (issue 9), through the CLI against the stand-in, whose instances start
with a bare Python (the system python3: no uv, no numpy): a requirements.txt project and a PEP 723 script get
their package installed and imported, a kept instance reuses its environment, an unknown package is a setup
failure with nothing left running. The checks are the core's, shared with the local and RunPod providers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_standin import BARE_PATH, AwsStandIn
from aws_testlib import aws_settings

from runctl_core.testing.cli import isolate
from runctl_core.testing.environment import (
    check_cached_on_kept_instance,
    check_pep723_script,
    check_requirements_project,
    check_setup_failure,
    provider_cli,
)

TYPE = ["--instance-type", "t3.micro"]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Any:
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    settings = {**aws_settings(standin.url), "use_uv": True}  # uv is not on the instance: runctl installs it
    return provider_cli("aws", settings, tmp_path, TYPE)


def running(standin: AwsStandIn) -> list[str]:
    return [m.id for m in standin.machines.values() if not m.ended]


def test_the_instance_is_bare(standin: AwsStandIn) -> None:
    assert shutil.which("uv", path=BARE_PATH) is None
    python = shutil.which("python3", path=BARE_PATH)
    assert python and subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode != 0


def test_requirements_txt_project_runs_on_an_instance(run: Any, tmp_path: Path, standin: AwsStandIn) -> None:
    check_requirements_project(run, tmp_path, forbidden_prefix="/usr/lib/python3")
    assert running(standin) == []


def test_pep723_script_runs_on_an_instance(run: Any, tmp_path: Path) -> None:
    check_pep723_script(run, tmp_path, forbidden_prefix="/usr/lib/python3")


def test_second_job_on_a_kept_instance_reuses_the_environment(run: Any, tmp_path: Path) -> None:
    check_cached_on_kept_instance(run, tmp_path)


def test_unknown_package_is_a_setup_failure(run: Any, tmp_path: Path, standin: AwsStandIn) -> None:
    check_setup_failure(run, tmp_path)
    assert running(standin) == []


def test_setup_commands_and_python_version_reach_the_instance(run: Any, tmp_path: Path, standin: AwsStandIn) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "hello.py").write_text("import sys; print('hello from', sys.version_info[:2])\n")
    ok = run("-o", "json", "run", "hello.py", "--setup", "echo setup-ran > marker.txt", "--python", "3.11", cwd=project)
    assert ok.code == 0, ok.err
    log = run("logs", ok.json()["job"]["job_id"], cwd=project).out
    assert "setup: echo setup-ran" in log and "hello from (3, 11)" in log, log
    bad = run("-o", "json", "run", "hello.py", "--setup", "exit 7", cwd=project)
    assert bad.code == 3 and bad.error()["code"] == "setup_failed", bad.err
    assert "exited with code 7" in bad.error()["message"]
    assert running(standin) == []

"""The job's environment on a RunPod pod (issue 9), through the CLI against the stand-in, whose pods start with a
bare Python (the system python3: no uv, no numpy) and no container environment over SSH: a requirements.txt
project and a PEP 723 script get their package installed and imported, a kept pod reuses its environment, an
unknown package is a setup failure with nothing left running. The checks are the core's, shared with local."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runpod_standin import BARE_PATH, StandIn

from runctl_core.testing.cli import isolate
from runctl_core.testing.environment import (
    check_cached_on_kept_instance,
    check_pep723_script,
    check_requirements_project,
    check_setup_failure,
    provider_cli,
)

GPU = ["--gpu", "RTX 4090"]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: StandIn, runpod_settings: dict[str, Any]) -> Any:
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    settings = {**runpod_settings, "use_uv": True}  # uv is not on the pod: runctl installs it
    return provider_cli("runpod", settings, tmp_path, GPU)


def test_the_pod_is_bare(standin: StandIn) -> None:
    import shutil
    import subprocess

    assert shutil.which("uv", path=BARE_PATH) is None
    python = shutil.which("python3", path=BARE_PATH)
    assert python and subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode != 0


def test_requirements_txt_project_runs_on_a_pod(run: Any, tmp_path: Path, standin: StandIn) -> None:
    check_requirements_project(run, tmp_path, forbidden_prefix="/usr/lib/python3")
    assert standin.pods == {}


def test_pep723_script_runs_on_a_pod(run: Any, tmp_path: Path) -> None:
    check_pep723_script(run, tmp_path, forbidden_prefix="/usr/lib/python3")


def test_second_job_on_a_kept_pod_reuses_the_environment(run: Any, tmp_path: Path) -> None:
    check_cached_on_kept_instance(run, tmp_path)


def test_unknown_package_is_a_setup_failure(run: Any, tmp_path: Path, standin: StandIn) -> None:
    check_setup_failure(run, tmp_path)
    assert standin.pods == {}

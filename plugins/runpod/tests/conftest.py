from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from runpod_standin import StandIn

from runctl_core.testing.cli import CliResult, isolate, run_runctl

REPO = Path(__file__).resolve().parents[3]

API_KEY = "rpa_STANDINSECRET0123456789"


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """RunPod's API and the pods' SSH servers on 127.0.0.1; the environment points the plugin at them."""
    server = StandIn(tmp_path / "standin", API_KEY).start()
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
    try:
        yield server
    finally:
        server.stop()
    assert server.violations == [], "requests or responses broke RunPod's published API:\n" + "\n".join(
        server.violations
    )


@pytest.fixture
def runpod_settings() -> dict[str, Any]:
    """``[providers.runpod]`` for tests: the pod's directory below the SSH login's home (the sandbox), fast polls."""
    return {
        "remote_dir": "runctl",
        "container_env_files": ["etc/rp_environment"],  # the stand-in's pod keeps it below the login's home
        "use_uv": False,
        "poll_interval": 0.05,
        "ready_timeout": 60,
        "retries": 2,
        "retry_base_delay": 0.01,
        "grace_period": 1.0,
        "ssh_connect_timeout": 5,
        "request_timeout": 10,
    }


@pytest.fixture
def graphql_settings(runpod_settings: dict[str, Any]) -> dict[str, Any]:
    """The same, on the deprecated GraphQL API (the only one with spot pods)."""
    return {**runpod_settings, "api": "graphql"}


def _toml(settings: dict[str, Any]) -> str:
    lines = ["[providers.runpod]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: StandIn, runpod_settings: dict[str, Any]) -> Path:
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "train.py", root / "examples" / "train.py")
    (root / ".runctl.toml").write_text(_toml(runpod_settings))
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


@pytest.fixture
def cli(project: Path) -> Callable[..., CliResult]:
    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> CliResult:
        return run_runctl("--provider", "runpod", *args, env=env, timeout=timeout)

    return run

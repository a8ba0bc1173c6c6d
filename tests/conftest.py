from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runctl_core.testing.cli import CliResult, isolate, run_runctl, runctl_executable

REPO = Path(__file__).resolve().parents[1]
RUNCTL = runctl_executable()


Result = CliResult


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    isolate(monkeypatch, home, tmp_path / "xdg-config")
    return home


@pytest.fixture
def project(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small project with the example training script, used as the working directory."""
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "train.py", root / "examples" / "train.py")
    (root / ".runctl.toml").write_text("[providers.local]\nuse_uv = false\ngrace_period = 2.0\n")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def cli(home: Path) -> Any:
    """Run runctl as a subprocess (the real console script) in the current directory."""

    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        return run_runctl(*args, env=env, timeout=timeout)

    return run


@pytest.fixture
def invoke(home: Path) -> Any:
    """Run runctl in-process under click's test isolation, through main() (the console script's error handling)."""
    from runctl_core.cli.main import main

    def run(*args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        with runner.isolation(input=input) as streams:
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
            sys.stdout.flush()
            sys.stderr.flush()
            out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
        return Result(code, out, err)

    return run

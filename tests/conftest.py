from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runctl_core.testing.cli import runctl_executable

REPO = Path(__file__).resolve().parents[1]
RUNCTL = runctl_executable()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        return json.loads(self.err.strip().splitlines()[-1])["error"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("RUNCTL_PROVIDER", "RUNCTL_CONFIG", "RUNCTL_DISABLE_PLUGINS", "RUNCTL_LOAD_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
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
        proc = subprocess.run(
            [RUNCTL, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

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

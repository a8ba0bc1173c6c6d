"""Helpers for tests that drive the real ``runctl`` console script (ours and third-party providers')."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNCTL_VARIABLES = ("RUNCTL_PROVIDER", "RUNCTL_CONFIG", "RUNCTL_DISABLE_PLUGINS", "RUNCTL_LOAD_PLUGINS")


@dataclass
class CliResult:
    """What one ``runctl`` command did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The JSON document on stdout (``--output json``)."""
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        """The ``error`` object of the JSON error on stderr's last line."""
        return dict(json.loads(self.err.strip().splitlines()[-1])["error"])


def runctl_executable() -> str:
    """The ``runctl`` script installed beside the running interpreter (else the one on PATH)."""
    beside = Path(sys.executable).with_name("runctl")
    if beside.exists():
        return str(beside)
    found = shutil.which("runctl")
    if found is None:
        raise RuntimeError("the runctl console script is not installed; pip install -e .")
    return found


def run_runctl(
    *args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 300
) -> CliResult:
    """Run the real ``runctl`` command (stdin closed, as in a script) in the current environment."""
    proc = subprocess.run(
        [runctl_executable(), *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def make_project(root: Path, script: Path, provider: str | None = None, settings: dict[str, Any] | None = None) -> Path:
    """A project directory with ``script`` copied to ``examples/`` and a ``.runctl.toml`` holding
    ``[providers.PROVIDER]`` = ``settings``."""
    import tomli_w

    (root / "examples").mkdir(parents=True, exist_ok=True)
    shutil.copy(script, root / "examples" / script.name)
    if provider is not None:
        (root / ".runctl.toml").write_text(tomli_w.dumps({"providers": {provider: settings or {}}}))
    return root


def isolate(monkeypatch: Any, home: Path, config_home: Path) -> None:
    """Point runctl's state and user config at test directories and drop the user's runctl variables."""
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    for name in RUNCTL_VARIABLES:
        monkeypatch.delenv(name, raising=False)

"""Helpers for tests that drive the real ``runctl`` console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


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
) -> subprocess.CompletedProcess[str]:
    """Run the real ``runctl`` command (stdin closed, as in a script) and return its completed process."""
    return subprocess.run(
        [runctl_executable(), *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )

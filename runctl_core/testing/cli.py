"""Helpers for tests that drive the real ``runctl`` console script."""

from __future__ import annotations

import shutil
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

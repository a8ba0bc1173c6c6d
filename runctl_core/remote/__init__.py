"""Scripts that run on the machine that trains (shipped as files; stdlib only, Python >= 3.8)."""

from __future__ import annotations

from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("runner.py")


def runner_source() -> str:
    """The job runner's source, for providers that upload it to a remote machine."""
    return RUNNER_PATH.read_text(encoding="utf-8")

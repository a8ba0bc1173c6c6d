"""What runs inside a Lyceum execution (shipped as a file, stdlib only)."""

from __future__ import annotations

from pathlib import Path

BOOTSTRAP_PATH = Path(__file__).with_name("bootstrap.py")


def bootstrap_source() -> str:
    return BOOTSTRAP_PATH.read_text(encoding="utf-8")

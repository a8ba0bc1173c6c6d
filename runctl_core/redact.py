"""Keep secrets out of everything runctl prints: values of secret-looking environment variables are masked."""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|SESSION)", re.IGNORECASE)
_SHAPES = (
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\blk_[A-Za-z0-9_\-]{8,}\b"),  # Lyceum API keys
    re.compile(r"\brpa_[A-Za-z0-9]{8,}\b"),  # RunPod API keys
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
)
MASK = "****"


def _secret_values() -> list[str]:
    values = {
        v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8 and not k.startswith("RUNCTL_")
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every known secret value and every secret-shaped token replaced by ``****``."""
    for value in _secret_values():
        if value in text:
            text = text.replace(value, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text

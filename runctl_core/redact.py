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
_DECLARED: set[str] = set()
# runctl's provider credentials, never handed to a job it starts on this machine (local provider)
_CREDENTIAL_NAME = re.compile(r"^(AWS_.*|.*(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL).*)$", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (API_KEY, TOKEN, PASSWORD, ...)."""
    return bool(_SECRET_NAME.search(name)) and not name.startswith("RUNCTL_")


def declare(values: list[str] | set[str] | tuple[str, ...]) -> None:
    """Mask these values too, in everything this process prints from now on (a job's secrets)."""
    _DECLARED.update(v for v in values if len(v) >= 4)


def declare_env(env: dict[str, str], secret_names: list[str] | tuple[str, ...] = ()) -> None:
    """Declare the values of a job's secret-looking variables (and of ``secret_names``) as secrets."""
    declare([value for name, value in env.items() if looks_secret(name) or name in secret_names])


def job_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """``environ`` without runctl's credentials (AWS_*, *_API_KEY, tokens, passwords): what a job started on
    this machine inherits. A job that needs one gets it explicitly: ``--env NAME=$NAME``."""
    return {k: v for k, v in environ.items() if k.startswith("RUNCTL_") or not _CREDENTIAL_NAME.match(k)}


def _secret_values() -> list[str]:
    values = {v for k, v in os.environ.items() if looks_secret(k) and len(v) >= 8} | _DECLARED
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every known secret value and every secret-shaped token replaced by ``****``."""
    for value in _secret_values():
        if value in text:
            text = text.replace(value, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text

"""Where the Lyceum API key comes from: ``LYCEUM_API_KEY``, then the Lyceum CLI's config file. Never printed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from runctl_lyceum.models import API_KEY_ENV, ORG_ENV, LyceumSettings

KEY_HINT = (
    f"set {API_KEY_ENV} to an API key (lk_...) from the Lyceum dashboard, or log in with the Lyceum CLI "
    "(`lyceum auth login`, which writes ~/.lyceum/config.json); check with: runctl providers --check"
)


@dataclass(frozen=True)
class Credentials:
    api_key: SecretStr | None
    source: str  # where it was found, e.g. "environment LYCEUM_API_KEY" (never the key)
    org: str | None
    problem: str = ""  # why none was found / why the found one is unusable


def cli_config_path(settings: LyceumSettings) -> Path:
    return Path(settings.cli_config).expanduser() if settings.cli_config else Path.home() / ".lyceum" / "config.json"


def _read_cli_config(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_credentials(settings: LyceumSettings) -> Credentials:
    """The key and org to use. Looks only (no network)."""
    path = cli_config_path(settings)
    config = _read_cli_config(path) if path.is_file() else {}
    org_value = settings.org or os.environ.get(ORG_ENV) or config.get("active_org_slug")
    org = org_value if isinstance(org_value, str) and org_value else None
    env_key = os.environ.get(API_KEY_ENV, "").strip()
    if env_key:
        return Credentials(SecretStr(env_key), f"environment {API_KEY_ENV}", org)
    file_key = config.get("api_key")
    if isinstance(file_key, str) and file_key.strip():
        problem = ""
        if not file_key.startswith("lk_"):
            problem = "the Lyceum CLI's login token may have expired (runctl does not refresh it)"
        return Credentials(SecretStr(file_key.strip()), f"Lyceum CLI config {path}", org, problem)
    return Credentials(None, "", org, f"{API_KEY_ENV} is not set and {path} has no api_key")

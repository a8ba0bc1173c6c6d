"""Where the Lyceum API key comes from: ``LYCEUM_API_KEY``, then the Lyceum CLI's config file. Never printed.

The Lyceum CLI (lyceum-cli 1.2.2, ``lyceum/shared/config.py``) stores either an API key (``lk_...``, which never
expires) or, after ``lyceum auth login`` in a browser, a JWT access token plus a ``refresh_token`` in
``~/.lyceum/config.json``. It treats the access token as expired when its ``exp`` claim (read without verifying the
signature) is within 300 seconds, or when the token cannot be decoded (``_Config.is_token_expired``); it then
``POST``s ``{"refresh_token": ...}`` to ``{base_url}/api/v2/external/auth/refresh`` (no Authorization header,
15 s timeout) and, on HTTP 200, takes ``access_token`` (and ``refresh_token`` when the answer has one) from the
JSON answer and saves both back to the config file (``_Config.refresh_access_token``). Any other answer is a
failed refresh, whose message is the answer's ``detail``; the CLI then says "Please run 'lyceum auth login'
again". runctl does the same, before the first call and again whenever a long command's token comes within
300 seconds of its expiry, and writes the refreshed pair back to the same file (keeping its other keys), so that
the CLI and runctl keep sharing one login.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import SecretStr

from runctl_core.errors import CredentialsError
from runctl_lyceum.models import API_KEY_ENV, ORG_ENV, LyceumSettings

KEY_HINT = (
    f"set {API_KEY_ENV} to an API key (lk_...) from the Lyceum dashboard, or log in with the Lyceum CLI "
    "(`lyceum auth login`, which writes ~/.lyceum/config.json); check with: runctl providers --check"
)
LOGIN_HINT = (
    f"log in again with the Lyceum CLI: lyceum auth login (or set {API_KEY_ENV} to an API key lk_..., "
    "which does not expire); then check with: runctl providers --check"
)
REFRESH_MARGIN = 300.0  # seconds before ``exp`` at which the CLI refreshes (is_token_expired)
REFRESH_TIMEOUT = 15.0  # the CLI's timeout of the refresh request


@dataclass(frozen=True)
class Credentials:
    api_key: SecretStr | None
    source: str  # where it was found, e.g. "environment LYCEUM_API_KEY" (never the key)
    org: str | None
    problem: str = ""  # why none was found / why the found one is unusable
    refresh_token: SecretStr | None = None  # the CLI login's, when the key is its access token
    path: Path | None = None  # the CLI config file the key came from

    @property
    def expires_at(self) -> float | None:
        """When a CLI login's access token must be refreshed (``exp`` minus the margin; 0 when it cannot be
        decoded); None for an API key, which does not expire."""
        if self.api_key is None or self.path is None:
            return None
        key = self.api_key.get_secret_value()
        if key.startswith("lk_"):
            return None
        exp = token_expiry(key)
        return 0.0 if exp is None else exp - REFRESH_MARGIN

    @property
    def expired(self) -> bool:
        at = self.expires_at
        return at is not None and time.time() >= at


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (as the CLI does); None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload.get("exp") if isinstance(payload, dict) else None
        return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
    except (ValueError, TypeError):
        return None


def cli_config_path(settings: LyceumSettings) -> Path:
    return Path(settings.cli_config).expanduser() if settings.cli_config else Path.home() / ".lyceum" / "config.json"


def _read_cli_config(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_credentials(settings: LyceumSettings) -> Credentials:
    """The key and org to use. Looks only (no network): an expired CLI login is reported, not refreshed."""
    path = cli_config_path(settings)
    config = _read_cli_config(path) if path.is_file() else {}
    org_value = settings.org or os.environ.get(ORG_ENV) or config.get("active_org_slug")
    org = org_value if isinstance(org_value, str) and org_value else None
    env_key = os.environ.get(API_KEY_ENV, "").strip()
    if env_key:
        return Credentials(SecretStr(env_key), f"environment {API_KEY_ENV}", org)
    file_key = config.get("api_key")
    if isinstance(file_key, str) and file_key.strip():
        refresh = config.get("refresh_token")
        refresh_token = SecretStr(refresh) if isinstance(refresh, str) and refresh else None
        found = Credentials(
            SecretStr(file_key.strip()), f"Lyceum CLI config {path}", org, refresh_token=refresh_token, path=path
        )
        if found.expired:
            what = f"the Lyceum CLI's login token in {path} has expired"
            if refresh_token is None:
                return replace(found, problem=f"{what} and the file has no refresh_token")
            return replace(found, problem=f"{what}; runctl refreshes it on its next call, as the Lyceum CLI does")
        return found
    return Credentials(None, "", org, f"{API_KEY_ENV} is not set and {path} has no api_key")


class TokenSource:
    """The key to send now: the credentials' key, refreshed (CLI logins only) when it is within the margin of its
    expiry. Thread-safe: log followers share the client."""

    def __init__(self, credentials: Credentials, base_url: str) -> None:
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self._lock = threading.Lock()

    def current(self) -> SecretStr | None:
        with self._lock:
            if self.credentials.expired:
                self.credentials = refresh(self.credentials, self.base_url)
            return self.credentials.api_key


def refresh(credentials: Credentials, base_url: str) -> Credentials:
    """A new access token for an expired CLI login, saved back to the CLI's config file. Raises CredentialsError
    (exit 3, hint: ``lyceum auth login``) when there is no refresh token or Lyceum refuses it."""
    import httpx

    path = credentials.path
    what = f"the Lyceum CLI's login token in {path} has expired"
    if credentials.refresh_token is None or path is None:
        raise CredentialsError(f"{what} and the file has no refresh_token to renew it", LOGIN_HINT)
    try:
        response = httpx.post(
            f"{base_url}/auth/refresh",
            json={"refresh_token": credentials.refresh_token.get_secret_value()},
            timeout=REFRESH_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise CredentialsError(
            f"{what} and could not be refreshed: Lyceum was not reachable ({type(exc).__name__})",
            "check the network, then retry; or " + LOGIN_HINT,
        ) from None
    body: object = None
    try:
        body = response.json()
    except ValueError:
        pass
    access = body.get("access_token") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(access, str) or not access:
        detail = body.get("detail") if isinstance(body, dict) else None
        reason = str(detail) if detail else f"HTTP {response.status_code}" if response.status_code != 200 else ""
        reason = reason or "no access_token in the answer"
        raise CredentialsError(f"{what} and Lyceum refused to refresh it: {_scrub(reason, credentials)}", LOGIN_HINT)
    rotated = body.get("refresh_token") if isinstance(body, dict) else None
    new = replace(
        credentials,
        api_key=SecretStr(access),
        refresh_token=SecretStr(rotated) if isinstance(rotated, str) and rotated else credentials.refresh_token,
        problem="",
    )
    _save(path, new)
    return new


def _scrub(text: str, credentials: Credentials) -> str:
    for secret in (credentials.api_key, credentials.refresh_token):
        if secret is not None and secret.get_secret_value() in text:
            text = text.replace(secret.get_secret_value(), "****")
    return text


def _save(path: Path, credentials: Credentials) -> None:
    """Write the refreshed pair into the CLI's config file, keeping its other keys, atomically, with the file's
    mode (as private as before). The CLI reads it on its next command."""
    data = _read_cli_config(path)
    data["api_key"] = credentials.api_key.get_secret_value() if credentials.api_key else None
    data["refresh_token"] = credentials.refresh_token.get_secret_value() if credentials.refresh_token else None
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o600
    tmp = path.with_name(f".{path.name}.runctl-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except OSError as exc:  # the token works for this command; the next one refreshes again
        tmp.unlink(missing_ok=True)
        import logging

        logging.getLogger("runctl").warning("could not save the refreshed Lyceum login to %s: %s", path, exc.strerror)

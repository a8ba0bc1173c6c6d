"""Where AWS credentials come from, found through botocore's own chain (never printed)."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from runctl_core.models import CredentialStatus

# botocore's provider names -> what to tell the user
SOURCES = {
    "env": "environment (AWS_ACCESS_KEY_ID)",
    "shared-credentials-file": "~/.aws/credentials",
    "config-file": "~/.aws/config",
    "sso": "AWS IAM Identity Center (SSO) cache",
    "custom-process": "credential_process in ~/.aws/config",
    "assume-role": "assume-role profile in ~/.aws/config",
    "assume-role-with-web-identity": "web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)",
    "container-role": "container credentials (ECS/EKS)",
    "iam-role": "EC2 instance role (instance metadata)",
    "boto-config": "boto config file",
    "ec2-credentials-file": "EC2 credentials file",
}
# providers that ask a network endpoint: skipped when only looking (probe=False)
NETWORK_PROVIDERS = ("container-role", "iam-role")
HINT = (
    "configure credentials: `aws configure` (access keys), `aws sso login --profile NAME` with AWS_PROFILE, or "
    "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; then check with `runctl providers --check`"
)


def find_credentials(profile: str | None, allow_network: bool) -> CredentialStatus:
    """Resolve credentials like boto3 would; without ``allow_network`` skip the instance-metadata and container
    providers (they call an HTTP endpoint). Never raises for missing credentials."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        session = botocore.session.Session(profile=profile)
        resolver = session.get_component("credential_provider")
        if not allow_network:
            for name in NETWORK_PROVIDERS:
                try:
                    resolver.remove(name)
                except (KeyError, ValueError, AttributeError):
                    pass
        credentials = resolver.load_credentials()
    except BotoCoreError as exc:  # e.g. ProfileNotFound, a broken config file
        return CredentialStatus(
            found=False, message=f"AWS configuration problem: {type(exc).__name__}: {exc}", hint=HINT
        )
    if credentials is None:
        where = f"for profile {profile!r} " if profile else ""
        skipped = "" if allow_network else " (instance/container roles not asked without --check)"
        return CredentialStatus(found=False, message=f"no AWS credentials found {where}{skipped}".strip(), hint=HINT)
    method = getattr(credentials, "method", "") or ""
    source = SOURCES.get(method, method or "botocore credential chain")
    if profile and method in ("shared-credentials-file", "config-file", "sso", "custom-process", "assume-role"):
        source += f" (profile {profile})"
    return CredentialStatus(found=True, source=source)


def _profile_sections(profile: str) -> list[tuple[Path, str]]:
    credentials = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()
    config = Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser()
    config_section = profile if profile == "default" else f"profile {profile}"
    return [(credentials, profile), (config, config_section)]


# keys that make a profile usable: static keys, SSO, an external process, or a role to assume
PROFILE_KEYS = (
    "aws_access_key_id",
    "sso_session",
    "sso_start_url",
    "credential_process",
    "role_arn",
    "web_identity_token_file",
)


def quick_credentials(profile: str | None) -> CredentialStatus:
    """Whether credentials are *present*, without importing botocore or calling any endpoint (for listings
    such as `runctl providers`). Follows the chain's order: environment, profile files, web identity, container
    and instance roles (the last two are only reported as "probably": `--check` asks AWS)."""
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return CredentialStatus(found=True, source=SOURCES["env"])
    name = profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    for path, section in _profile_sections(name):
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except configparser.Error as exc:
            return CredentialStatus(found=False, message=f"{path} cannot be read: {exc.message}", hint=HINT)
        if parser.has_section(section) and any(parser.has_option(section, key) for key in PROFILE_KEYS):
            return CredentialStatus(found=True, source=f"{path} (profile {name})")
    if os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") and os.environ.get("AWS_ROLE_ARN"):
        return CredentialStatus(found=True, source=SOURCES["assume-role-with-web-identity"])
    if os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return CredentialStatus(found=True, source=SOURCES["container-role"] + " (not verified: use --check)")
    if _on_ec2():
        return CredentialStatus(found=True, source=SOURCES["iam-role"] + " (not verified: use --check)")
    where = f" for profile {profile!r}" if profile else ""
    return CredentialStatus(found=False, message=f"no AWS credentials found{where}", hint=HINT)


def _on_ec2() -> bool:
    """True on an EC2 machine (which may have an instance role), read from DMI without any network call."""
    for path in ("/sys/devices/virtual/dmi/id/sys_vendor", "/sys/devices/virtual/dmi/id/board_vendor"):
        try:
            if "Amazon EC2" in Path(path).read_text():
                return True
        except OSError:
            continue
    return False

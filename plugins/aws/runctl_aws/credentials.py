"""Where AWS credentials come from, found through botocore's own chain (never printed)."""

from __future__ import annotations

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

"""Looking for AWS credentials (as `runctl providers` does) reads env and files only: no botocore, no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runctl_aws.credentials import quick_credentials

AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    return tmp_path


def test_environment_keys(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-secret-secret")
    status = quick_credentials(None)
    assert status.found and "environment" in status.source
    assert "secret-secret" not in status.model_dump_json()


def test_profiles_in_files(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "credentials").write_text("[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
    (clean_env / "config").write_text("[profile work]\nsso_session = corp\n[profile empty]\nregion = eu-west-1\n")
    assert quick_credentials(None).found
    assert quick_credentials("work").found and "profile work" in quick_credentials("work").source
    missing = quick_credentials("empty")
    assert not missing.found and "aws configure" in missing.hint
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert quick_credentials(None).source.endswith("(profile work)")


def test_nothing_found(clean_env: Path) -> None:
    status = quick_credentials(None)
    assert not status.found or "not verified" in status.source  # on an EC2 machine: an instance role, maybe


def test_no_botocore_import() -> None:
    code = (
        "import sys; from runctl_aws.credentials import quick_credentials; quick_credentials(None); "
        "print('botocore' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"

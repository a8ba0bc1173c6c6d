"""Constants and helpers shared by the AWS provider's test modules (a uniquely named module, so that the suites
of several plugins can be collected together)."""

from __future__ import annotations

from typing import Any

BUCKET = "runctl-test-bucket"
PROFILE = "runctl-ssm"
DUMMY_KEY_ID = "AKIADUMMYKEYID000042"
DUMMY_SECRET = "dummySECRETvalue/never-to-be-printed+42"


def _env(url: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/runctl-test/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/runctl-test/credentials",
    }


def aws_settings(url: str, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "region": "us-east-1",
        "bucket": BUCKET,
        "endpoint_url": url,
        "remote_dir": "$HOME/runctl",
        "use_uv": False,
        "poll_interval": 0.05,
        "ssm_poll_interval": 0.02,
        "retry_base_delay": 0.01,
        "retry_attempts": 4,
        "grace_period": 1.0,
        "interrupt_check_every": 0.2,
        "ready_timeout": 60.0,
        "command_timeout": 60.0,
    }
    settings.update(extra)
    return settings

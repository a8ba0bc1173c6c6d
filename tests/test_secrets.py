"""Secrets passed to a job: never stored, masked in what runctl prints, and runctl's own provider credentials
never handed to a local job."""

from __future__ import annotations

import json
import os
from pathlib import Path

PRINT_ENV = """\
import os
for name in ("WANDB_API_KEY", "PLAIN_SETTING", "AWS_SECRET_ACCESS_KEY", "RUNPOD_API_KEY", "LYCEUM_API_KEY"):
    print(name, "=", os.environ.get(name, "<unset>"), flush=True)
"""
QUIET = "import os\nassert os.environ['WANDB_API_KEY']\nprint('ok', flush=True)\n"


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_env_values_are_never_stored(cli, home: Path, project: Path) -> None:
    (project / "quiet.py").write_text(QUIET)
    marker = "marker-7d1f0a9c4e"
    for args in (
        ("run", "quiet.py", "--env", f"WANDB_API_KEY={marker}-secret", "--env", f"PLAIN_SETTING={marker}-plain"),
        ("run", "quiet.py", "--detach", "--env", f"WANDB_API_KEY={marker}-secret"),
    ):
        result = cli("-o", "json", *args)
        assert result.code == 0, result.err
    job_id = result.json()["job"]["job_id"]
    assert cli("logs", job_id, "--follow").code == 0
    assert _files_containing(home, marker.encode()) == []
    status = cli("-o", "json", "status", job_id)
    assert marker not in status.out


def test_declared_secret_values_are_masked_in_output(cli, project: Path) -> None:
    (project / "print_env.py").write_text(PRINT_ENV)
    secret = "wandb-0123456789abcdef"
    result = cli("run", "print_env.py", "--env", f"WANDB_API_KEY={secret}", "--env", "PLAIN_SETTING=visible-value")
    assert result.code == 0, result.err
    assert secret not in result.out + result.err
    assert "WANDB_API_KEY = ****" in result.err and "PLAIN_SETTING = visible-value" in result.err


def test_local_jobs_do_not_get_runctls_provider_credentials(cli, project: Path) -> None:
    (project / "print_env.py").write_text(PRINT_ENV)
    env = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret-for-runctl-only",
        "RUNPOD_API_KEY": "rpa_runctlonly1234",
        "LYCEUM_API_KEY": "lk_runctlonly1234",
    }
    result = cli("-o", "json", "run", "print_env.py", env=env)
    assert result.code == 0, result.err
    job_id = result.json()["job"]["job_id"]
    log = cli("logs", job_id, env={k: "" for k in env})  # printed without masking: what the job really saw
    for name in env:
        assert f"{name} = <unset>" in log.out, log.out


def test_state_directory_is_private(cli, home: Path, project: Path) -> None:
    assert cli("status").code == 0
    assert oct(home.stat().st_mode & 0o777) == oct(0o700)
    assert json.loads(cli("-o", "json", "status").out)["summary"] is not None
    assert os.access(home, os.W_OK)

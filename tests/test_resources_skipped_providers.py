"""`resources list` for a user of local only: providers without credentials are one short line, not a note each
(text); JSON keeps every provider's reason and hint."""

from __future__ import annotations

from pathlib import Path

import pytest

CLOUD_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "RUNPOD_API_KEY",
    "LYCEUM_API_KEY",
)


@pytest.fixture
def no_cloud_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # no ~/.aws, ~/.lyceum
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_providers_without_credentials_are_one_line(cli, project: Path, no_cloud_credentials: None) -> None:
    listed = cli("resources", "list")
    assert listed.code == 0, listed.err
    lines = [line for line in listed.out.splitlines() if line.strip()]
    assert lines[0] == "nothing runctl created is running"
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == 1, listed.out
    assert "aws" in skipped[0] and "runpod" in skipped[0] and "lyceum" in skipped[0]
    assert "runctl providers" in skipped[0]  # how to include them
    assert "aws configure" not in listed.out and "RUNPOD_API_KEY" not in listed.out  # no per-provider hints
    assert len(lines) == 2, listed.out

    doc = cli("resources", "list", "--output", "json").json()
    by_provider = {s["provider"]: s for s in doc["skipped"]}
    assert {"aws", "runpod", "lyceum"} <= set(by_provider)
    assert by_provider["runpod"]["reason"] == "no credentials" and "RUNPOD_API_KEY" in by_provider["runpod"]["hint"]
    assert any(note.startswith("aws: skipped, no credentials") for note in doc["notes"])  # unchanged for scripts

    cleanup = cli("resources", "cleanup", "--dry-run")
    assert cleanup.code == 0 and len([line for line in cleanup.out.splitlines() if "skipped" in line]) == 1


def test_a_provider_named_explicitly_gets_its_full_hint(cli, project: Path, no_cloud_credentials: None) -> None:
    listed = cli("--provider", "runpod", "resources", "list")
    assert listed.code == 0 and "RUNPOD_API_KEY" in listed.out


def test_a_skipped_provider_with_journalled_instances_keeps_its_note(
    cli, project: Path, home: Path, no_cloud_credentials: None
) -> None:
    from runctl_core.models import Instance, InstanceState
    from runctl_core.state import Store

    Store(home).save_instance(Instance(id="pod-abc", provider="runpod", state=InstanceState.RUNNING))
    listed = cli("resources", "list")
    assert "runpod: skipped, no credentials" in listed.out and "1 instance(s) in runctl's journal" in listed.out
    assert "skipped (no credentials): aws, lyceum, slurm" in listed.out

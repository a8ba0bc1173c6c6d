"""runctl ssh on AWS: an SSM session command (documented forms), and the exact install hint when the AWS CLI or
its Session Manager plugin is missing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runctl_aws.shell import INSTALL_PLUGIN, shell_command
from runctl_core.errors import PrerequisiteError, UsageError
from runctl_core.models import Instance, InstanceState, JobState, JobStatus, PortForward


def _tools(tmp_path: Path, *names: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return str(bin_dir)


def _call(**overrides: object) -> list[str]:
    args: dict[str, object] = {
        "region": "eu-west-1",
        "profile": None,
        "endpoint_url": None,
        "remote_dir": "/opt/runctl",
        "job": None,
        "command": [],
        "ports": [],
        **overrides,
    }
    instance = Instance(id="i-0abc", provider="aws", state=InstanceState.RUNNING)
    return shell_command(instance, **args).argv  # type: ignore[arg-type]


def test_missing_session_manager_plugin_gives_the_install_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _tools(tmp_path, "aws"))
    with pytest.raises(PrerequisiteError) as missing:
        _call()
    assert "session-manager-plugin" in missing.value.message and INSTALL_PLUGIN in missing.value.hint
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PrerequisiteError) as no_cli:
        _call()
    assert "`aws` is not installed" in no_cli.value.message


def test_shell_job_and_port_forwarding_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _tools(tmp_path, "aws", "session-manager-plugin") + os.pathsep + os.environ["PATH"])
    argv = _call()
    assert argv[:5] == ["aws", "ssm", "start-session", "--target", "i-0abc"] and "eu-west-1" in argv
    command = json.loads(argv[argv.index("--parameters") + 1])["command"][0]
    assert argv[argv.index("--document-name") + 1] == "AWS-StartInteractiveCommand"
    assert command == "cd /opt/runctl/project && exec bash -l"
    job = JobStatus(job_id="job-1a2b3c", state=JobState.RUNNING)
    in_job = json.loads(_call(job=job, command=["ls"])[-1])["command"][0]
    assert "RUNCTL_CHECKPOINT_DIR=/opt/runctl/jobs/job-1a2b3c/checkpoints" in in_job and in_job.endswith("&& ls")
    forward = _call(ports=[PortForward(local=16006, remote=6006)])
    assert forward[forward.index("--document-name") + 1] == "AWS-StartPortForwardingSession"
    assert json.loads(forward[-1]) == {"portNumber": ["6006"], "localPortNumber": ["16006"]}
    with pytest.raises(UsageError):
        _call(ports=[PortForward(local=1, remote=1), PortForward(local=2, remote=2)])

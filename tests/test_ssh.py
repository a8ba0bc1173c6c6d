"""`runctl ssh` on local: a shell in the sandbox (for a job, in its directory with its checkpoint directory);
port forwarding is declared unsupported with the reason."""

from __future__ import annotations

from pathlib import Path


def test_ssh_into_a_local_instance_and_a_job(cli, home: Path, project: Path) -> None:
    instance = cli("create", "--output", "id").out.strip()
    assert cli("sync", instance).code == 0
    shell = cli("ssh", instance, "--", "pwd", "&&", "ls", "examples")
    assert shell.code == 0, shell.err
    assert shell.out.splitlines() == [
        str(home / "providers" / "local" / "instances" / instance / "project"),
        "train.py",
    ]
    job = cli("train", instance, "examples/train.py", "--wait", "--output", "id", "--", "--epochs", "1").out.strip()
    in_job = cli("ssh", job, "--", "echo", "$RUNCTL_JOB_ID", "&&", "ls", "$RUNCTL_CHECKPOINT_DIR")
    assert in_job.code == 0 and in_job.out.splitlines()[0] == job and "metrics.json" in in_job.out
    assert cli("ssh", instance, "--", "exit", "7").code == 7  # the shell's exit code
    ports = cli("ssh", instance, "--port", "6006")
    assert ports.code == 2 and "cannot forward ports: a local job runs on this machine" in ports.err
    assert cli("ssh", instance, "--port", "70000").code == 2
    assert cli("terminate", instance, "--yes").code == 0
    gone = cli("ssh", instance, "--", "true")
    assert gone.code == 2 and "terminated" in gone.err

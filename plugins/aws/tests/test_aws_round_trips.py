"""Issue 15.3: the sequential AWS round trips between "instance accepted" (RunInstances answered) and "job
started" (the SSM command that starts the supervisor has answered), counted by the stand-in, for a first job and
for a second job on a kept instance with nothing changed. Polls of the same state (DescribeInstances while the
instance boots, GetCommandInvocation while a command runs) depend on the machine's speed; they are reported but
collapsed into one in the ``distinct`` figure, which is what this test bounds. One SSM command is SendCommand
followed by GetCommandInvocation (SSM's API is asynchronous): that pair is one command round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_standin import AwsStandIn
from aws_testlib import aws_settings

from runctl_core.testing.cli import isolate, make_project, run_runctl

REPO = Path(__file__).resolve().parents[3]
Entry = tuple[float, str, str, str]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Path:
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "aws", aws_settings(standin.url))
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def critical_path(journal: list[Entry], start: int) -> list[Entry]:
    """From ``start`` to the answer of the SSM command that starts the job (``runner.py launch``)."""
    entries = journal[start:]
    train = next(i for i, e in enumerate(entries) if e[2] == "SendCommand" and " launch" in e[3])
    end = train + 1
    while end < len(entries) and entries[end][2] == "GetCommandInvocation":
        end += 1
    return entries[:end]


POLLS = {"DescribeInstances", "DescribeInstanceInformation", "GetCommandInvocation"}


def distinct(entries: list[Entry]) -> list[str]:
    """The round trips without repeated polls: a poll already made since the last non-poll call (the instance
    still booting, a command still running) is a wait, not another step."""
    out: list[str] = []
    polled: set[str] = set()
    for _, service, operation, _note in entries:
        if operation in POLLS:
            if operation in polled:
                continue
            polled.add(operation)
        else:
            polled.clear()
        out.append(f"{service}:{operation}")
    return out


def test_round_trips_from_instance_accepted_to_job_started(project: Path, standin: AwsStandIn) -> None:
    first = run_runctl(
        "--provider",
        "aws",
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--instance-type",
        "t3.micro",
        "--keep",
        "--detach",
        "--",
        "--epochs",
        "1",
    )
    assert first.code == 0, first.err
    instance_id = first.json()["instance"]["id"]
    accepted = max(i for i, e in enumerate(standin.journal) if e[2] == "RunInstances") + 1
    path_first = critical_path(standin.journal, accepted)
    mark = len(standin.journal)
    second = run_runctl(
        "--provider", "aws", "-o", "json", "train", instance_id, "examples/train.py", "--", "--epochs", "1"
    )
    assert second.code == 0, second.err
    path_second = critical_path(standin.journal, mark)
    report = {
        "first_job": {"calls": len(path_first), "distinct": len(distinct(path_first)), "path": distinct(path_first)},
        "second_job_kept_instance": {
            "calls": len(path_second),
            "distinct": len(distinct(path_second)),
            "path": distinct(path_second),
        },
    }
    print("AWS round trips:", json.dumps(report, indent=1))
    assert run_runctl("--provider", "aws", "terminate", instance_id, "--yes").code == 0
    # issue 15.3: before it, 21 distinct (37 calls) and 7 (13); then 10 with the provider's own SSM scripts; now,
    # through the core's JobHost: the upload made while the instance boots (the stage hook), the readiness polls,
    # the sync command (fetching the staged bundle, with the tools), the launch command - and for a second job on the
    # kept instance the launch command alone (nothing changed: no sync, no upload)
    assert report["first_job"]["distinct"] <= 7
    ready = max(i for i, e in enumerate(path_first) if e[2] == "DescribeInstanceInformation")
    booting, after_ready = path_first[:ready], distinct(path_first[ready + 1 :])
    assert ("s3", "PutObject") in {(e[1], e[2]) for e in booting}  # the upload overlapped the boot
    assert after_ready == ["ssm:SendCommand", "ssm:GetCommandInvocation"] * 2  # sync, launch: no S3 round trip
    assert report["second_job_kept_instance"]["path"] == ["ssm:SendCommand", "ssm:GetCommandInvocation"]

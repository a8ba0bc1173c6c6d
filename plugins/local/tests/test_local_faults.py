"""Fault injection on the local provider through the real CLI: a ``runctl run`` killed with SIGKILL at each step
leaves nothing running once ``runctl resources cleanup --yes`` has run (checked on the machine itself: sandbox
records and job processes), and cleanup never touches a sandbox runctl did not tag or another owner's."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runctl_core.models import Instance, InstanceState
from runctl_core.testing.cli import CliResult, isolate, make_project, run_runctl
from runctl_core.testing.faults import KILL_STEPS, kill_run_at, pids_alive
from runctl_local.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[3]
OWNER = "fault-tester"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings = {"use_uv": False, "grace_period": 0.5}
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "local", settings)
    config = root / ".runctl.toml"
    config.write_text(f'owner = "{OWNER}"\n' + config.read_text())
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return tmp_path / "home"


def cli(*args: str, timeout: float = 60) -> CliResult:
    return run_runctl("--provider", "local", *args, timeout=timeout)


def state_dir(home: Path) -> Path:
    return home / "providers" / "local"


def live_sandboxes(home: Path) -> list[str]:
    """What is running on this machine for runctl, read from the sandboxes themselves (not through runctl)."""
    return [s.id for s in Sandbox.all(state_dir(home)) if s.exists() and s.read().state is InstanceState.RUNNING]


def job_pids(home: Path) -> list[int]:
    pids: list[int] = []
    for record in state_dir(home).glob("instances/*/jobs/*/job.json"):
        data = json.loads(record.read_text())
        pids += [int(data[k]) for k in ("pid", "supervisor_pid") if data.get(k)]
    return pids


# epochs per step: long enough that the job is still running when killed "during train", short enough that it
# ends quickly when the kill is meant for collect
EPOCHS = {"during-collect": ["--epochs", "1"]}


@pytest.mark.parametrize("step", list(KILL_STEPS))
def test_kill_9_at_each_step_then_cleanup_leaves_nothing_running(home: Path, step: str) -> None:
    args = EPOCHS.get(step, ["--epochs", "200", "--sleep", "0.1"])
    report = kill_run_at(["--provider", "local", "run", "examples/train.py", "--", *args], step, provider="local")
    assert report.killed, f"the run never reached {step}:\n{report.stderr[-3000:]}"
    assert report.returncode == -9
    if step != "during-create" and "local.terminate(" not in report.stderr:  # killed before it could clean up
        assert live_sandboxes(home), "the killed run left its sandbox behind"
    if step == "during-train":
        assert pids_alive(job_pids(home)), "the job outlives its killed CLI (it is detached)"

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")
    assert cleaned.code == 0, cleaned.err
    assert live_sandboxes(home) == []  # at the "provider": every sandbox is terminated ...
    assert pids_alive(job_pids(home)) == []  # ... and no job process of it survives
    listed = cli("-o", "json", "resources", "list").json()
    assert listed["resources"] == []
    summary = cli("-o", "json", "status").json()["summary"]
    assert summary["instances_running"] == 0 and summary["jobs_active"] == 0  # the journal agrees
    (job,) = cli("-o", "json", "status", "--all").json()["jobs"]
    assert job["state"] in (("succeeded",) if step == "during-collect" else ("cancelled", "lost"))


def _foreign(home: Path, tags: dict[str, str]) -> str:
    sandbox = Sandbox.new(state_dir(home))
    sandbox.project.mkdir(parents=True)
    (sandbox.project / "precious.txt").write_text("not runctl's to delete")
    sandbox.write(
        Instance(
            id=sandbox.id,
            provider="local",
            state=InstanceState.RUNNING,
            instance_type="local",
            hourly_price=0.0,
            created_at=datetime.now(timezone.utc),
            tags=tags,
        )
    )
    return sandbox.id


def test_foreign_sandboxes_survive_cleanup_all(home: Path) -> None:
    ours = cli("-o", "id", "create").out.strip()  # kept: only --all removes it
    assert ours.startswith("local-")
    untagged = _foreign(home, {})
    other_owner = _foreign(
        home,
        {
            "runctl:owner": "someone-else",
            "runctl:job": "job-0ther1",
            "runctl:intent": "intent-0ther1",
            "runctl:created": datetime.now(timezone.utc).isoformat(),
        },
    )
    listed = cli("-o", "json", "resources", "list").json()
    assert {r["id"] for r in listed["resources"]} == {ours}

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes", "--all")
    assert cleaned.code == 0, cleaned.err
    assert [t["id"] for t in cleaned.json()["terminated"]] == [ours]
    assert sorted(live_sandboxes(home)) == sorted([untagged, other_owner])
    for foreign in (untagged, other_owner):
        assert (state_dir(home) / "instances" / foreign / "project" / "precious.txt").is_file()
    assert os.path.isdir(state_dir(home) / "instances" / ours)  # ours is terminated, its records kept
    assert ours not in live_sandboxes(home)

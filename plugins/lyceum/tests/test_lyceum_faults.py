"""Fault injection on the Lyceum provider through the real CLI, checked at the stand-in (its executions and their
processes), not through runctl:

* ``runctl run`` killed with SIGKILL at each step -> ``runctl resources cleanup --yes`` leaves no execution
  running at Lyceum and no reservation open; including a kill while the execution-start request is in flight
  (Lyceum has started the execution, runctl never got its id: it is found by its runctl labels);
* executions runctl did not start, or another owner's, survive ``runctl resources cleanup --yes --all``.

No preemption test: Lyceum has no spot tier (a ``failed_system`` execution is ``lost``, not ``interrupted``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from lyceum_standin import API_KEY, TERMINAL, Execution, StandIn

from runctl_core.testing.cli import CliResult, isolate, make_project, run_runctl
from runctl_core.testing.faults import KILL_STEPS, kill_run_at, pids_alive

REPO = Path(__file__).resolve().parents[3]
OWNER = "fault-tester"


@pytest.fixture
def project(tmp_path: Path, lyceum_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "lyceum", lyceum_settings)
    config = root / ".runctl.toml"
    config.write_text(f'owner = "{OWNER}"\n' + config.read_text())
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "runctl-home", tmp_path / "xdg")
    return root


def cli(*args: str, timeout: float = 120) -> CliResult:
    result = run_runctl("--provider", "lyceum", *args, timeout=timeout)
    assert API_KEY not in result.out + result.err
    return result


def running(standin: StandIn) -> list[Execution]:
    """Executions Lyceum would bill now: not ended, or whose process still runs."""
    return [
        ex
        for ex in list(standin.executions.values())
        if ex.status not in TERMINAL or (ex.proc is not None and ex.proc.poll() is None)
    ]


def processes_at(standin: StandIn) -> list[int]:
    """Every live process working in an execution's sandbox: the bootstrap and the script it starts."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if cwd == standin.work_dir or standin.work_dir in cwd.parents:
                pids.append(int(entry.name))
    return pids_alive(pids)


def wait_ended(standin: StandIn, timeout: float = 15) -> None:
    """An abort is asynchronous at Lyceum (the stand-in kills the process, then reports the status)."""
    for ex in list(standin.executions.values()):
        standin.wait_terminal(ex.id, timeout)


def slow_start(standin: StandIn) -> threading.Event:
    """From now on the stand-in starts an execution at once but answers the start request 2 s later; the event is
    set when the execution runs. Killing runctl then leaves an execution whose id runctl never received."""
    launched = threading.Event()
    original = standin._launch

    def launch(ex: Execution) -> None:
        original(ex)
        deadline = time.monotonic() + 10
        while ex.status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        launched.set()
        time.sleep(2.0)

    standin._launch = launch  # type: ignore[method-assign]
    return launched


EPOCHS = {"during-collect": ["--epochs", "1"]}


@pytest.mark.parametrize("step", list(KILL_STEPS))
def test_kill_9_at_each_step_then_cleanup_leaves_nothing_running(project: Path, standin: StandIn, step: str) -> None:
    args = EPOCHS.get(step, ["--epochs", "200", "--sleep", "0.1"])
    launched = slow_start(standin) if step == "starting-train" else None
    report = kill_run_at(
        ["--provider", "lyceum", "run", "examples/train.py", "--", *args],
        step,
        provider="lyceum",
        when=launched.is_set if launched else None,
    )
    assert report.killed, f"the run never reached {step}:\n{report.stderr[-3000:]}"
    assert report.returncode == -9
    if launched:  # killed with the start request in flight: Lyceum runs the execution, runctl never got its id
        assert "lyceum.train ->" not in report.stderr and len(running(standin)) == 1
    left = cli("-o", "json", "resources", "list").json()["resources"]
    if step != "during-create" and "lyceum.terminate(" not in report.stderr:  # killed before it could clean up
        assert left, f"nothing left after a kill {step}"
    if step in ("starting-train", "during-train"):
        assert running(standin), "the execution outlives its killed CLI (it runs at Lyceum)"

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")
    assert cleaned.code == 0, cleaned.err
    wait_ended(standin)
    assert running(standin) == []  # at Lyceum: no execution running (nothing billed) ...
    assert processes_at(standin) == []
    assert {ex.status for ex in standin.executions.values()} <= {"aborted", "completed"}
    assert cli("-o", "json", "resources", "list").json()["resources"] == []  # ... and no reservation open
    assert cli("-o", "json", "status").json()["summary"] == {"instances_running": 0, "hourly_cost": 0, "jobs_active": 0}


def _start_foreign(standin: StandIn, labels: list[str] | None) -> str:
    body: dict[str, Any] = {"code": "import time\ntime.sleep(120)\n", "execution_type": "cpu", "timeout": 600}
    if labels is not None:
        body["labels"] = labels
        body["metadata"] = dict(label.split("=", 1) for label in labels if "=" in label)
    response = httpx.post(
        f"{standin.url}/execution/streaming/start", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    response.raise_for_status()
    execution_id: str = response.json()["execution_id"]
    deadline = time.monotonic() + 10
    while standin.executions[execution_id].status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    return execution_id


def test_foreign_executions_survive_cleanup_all(project: Path, standin: StandIn) -> None:
    ours = cli("-o", "id", "create").out.strip()  # kept: only --all removes it
    assert ours.startswith("lyc-")
    job = cli("-o", "id", "train", ours, "examples/train.py", "--", "--epochs", "200", "--sleep", "0.1")
    assert job.code == 0, job.err
    (our_execution,) = [ex.id for ex in running(standin)]
    untagged = _start_foreign(standin, None)
    other_owner = _start_foreign(
        standin,
        ["runctl", "runctl:job=job-0ther1", "runctl:owner=someone-else", "runctl:instance=lyc-0ther1234567"],
    )
    lookalike = _start_foreign(standin, ["runctl", "runctl:job=job-abc123", "runctl:instance=lyc-abc123456789"])
    listed = cli("-o", "json", "resources", "list").json()
    assert {r["id"] for r in listed["resources"]} == {ours}

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes", "--all")
    assert cleaned.code == 0, cleaned.err
    assert [t["id"] for t in cleaned.json()["terminated"]] == [ours]
    assert standin.wait_terminal(our_execution).status == "aborted"
    assert not any(f"/{our_execution}" in os.readlink(f"/proc/{pid}/cwd") for pid in processes_at(standin))
    assert sorted(ex.id for ex in running(standin)) == sorted([untagged, other_owner, lookalike])
    aborts = [r["path"] for r in standin.requests if "/workloads/" in r["path"] and r["method"] == "POST"]
    assert aborts == [f"/api/v2/external/workloads/abort/{our_execution}"]  # only ours was ever asked to end

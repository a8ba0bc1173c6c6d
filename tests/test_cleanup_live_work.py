"""`resources cleanup` never kills live work: a create still being answered, a run still collecting, and a
run identified by pid *and* start time (a dead run's pid reused by another process does not keep it in use).

Each test sets the journal up as a real run leaves it at that moment (a live process stands in for the run),
then asks the real CLI how it classes the instance."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl_core.state import process_start


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc
    proc.kill()
    proc.wait()


def _created(cli) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    doc = cli("-o", "json", "create").json()
    return doc["id"], doc["tags"]["runctl:intent"]


def _kinds(cli) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    listed = cli("-o", "json", "resources", "list")
    assert listed.code == 0, listed.err
    return {r["id"]: (r["kind"], r["reason"]) for r in listed.json()["resources"]}


def _sql(home: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(home / "state.db") as conn:
        conn.execute(statement, params)


def test_instance_whose_create_has_not_returned_is_in_use(cli, home: Path, project: Path, live_process) -> None:
    instance_id, intent_id = _created(cli)
    # as while `runctl run` (alive) waits for a late create answer: intent pending, instance not journalled
    _sql(home, "DELETE FROM instances WHERE id = ?", instance_id)
    _sql(
        home,
        "UPDATE intents SET status = 'pending', pid = ?, pid_start = ? WHERE id = ?",
        live_process.pid,
        process_start(live_process.pid),
        intent_id,
    )
    kind, reason = _kinds(cli)[instance_id]
    assert kind == "in-use", reason
    cleaned = cli("-o", "json", "resources", "cleanup", "--yes").json()
    assert cleaned["terminated"] == []
    live_process.kill()
    live_process.wait()
    assert _kinds(cli)[instance_id][0] == "orphan"  # its run is gone now: it can go
    cli("resources", "cleanup", "--yes")


def test_run_collecting_after_its_job_ended_is_in_use_not_finished(
    cli, home: Path, project: Path, live_process
) -> None:
    instance_id, intent_id = _created(cli)
    # as while `runctl run` (alive) collects checkpoints: its job has ended, the instance is not kept
    _sql(home, "UPDATE instances SET keep = 0, job_id = 'job-aaaaaa' WHERE id = ?", instance_id)
    _sql(
        home,
        "UPDATE intents SET pid = ?, pid_start = ? WHERE id = ?",
        live_process.pid,
        process_start(live_process.pid),
        intent_id,
    )
    _sql(
        home,
        "INSERT INTO jobs(id, provider, instance_id, state, script, spec, created_at) VALUES (?,?,?,?,?,?,?)",
        "job-aaaaaa",
        "local",
        instance_id,
        "succeeded",
        "train.py",
        '{"job_id": "job-aaaaaa", "script": "train.py"}',
        "2026-01-01T00:00:00+00:00",
    )
    kind, reason = _kinds(cli)[instance_id]
    assert kind == "in-use", reason
    assert cli("-o", "json", "resources", "cleanup", "--yes").json()["terminated"] == []
    cli("terminate", instance_id, "--yes")


def test_dead_runs_pid_reused_by_another_process_is_abandoned(cli, home: Path, project: Path, live_process) -> None:
    instance_id, intent_id = _created(cli)
    _sql(home, "UPDATE instances SET keep = 0 WHERE id = ?", instance_id)
    # the run that created it had this pid but started at another time: its pid now belongs to someone else
    _sql(home, "UPDATE intents SET pid = ?, pid_start = '1' WHERE id = ?", live_process.pid, intent_id)
    kind, reason = _kinds(cli)[instance_id]
    assert kind == "abandoned", reason
    cleaned = cli("-o", "json", "resources", "cleanup", "--yes").json()
    assert [t["id"] for t in cleaned["terminated"]] == [instance_id]
    assert live_process.poll() is None  # the unrelated process is untouched


def test_detached_instance_being_collected_is_in_use(cli, home: Path, project: Path) -> None:
    from runctl_core.state import Store

    instance_id, _intent = _created(cli)
    _sql(home, "UPDATE instances SET job_id = 'job-bbbbbb' WHERE id = ?", instance_id)
    _sql(
        home,
        "INSERT INTO jobs(id, provider, instance_id, state, script, spec, created_at) VALUES (?,?,?,?,?,?,?)",
        "job-bbbbbb",
        "local",
        instance_id,
        "succeeded",
        "train.py",
        '{"job_id": "job-bbbbbb", "script": "train.py"}',
        "2026-01-01T00:00:00+00:00",
    )
    assert _kinds(cli)[instance_id][0] == "finished"  # a detached run's instance, its job ended
    store = Store(home)
    with store.claim("local", instance_id, "job-bbbbbb", "collecting its job's outputs"):  # as `status JOB` does
        kind, reason = _kinds(cli)[instance_id]
        assert kind == "in-use" and "collecting" in reason, reason
        assert cli("-o", "json", "resources", "cleanup", "--yes").json()["terminated"] == []
    assert _kinds(cli)[instance_id][0] == "finished"
    cli("resources", "cleanup", "--yes")

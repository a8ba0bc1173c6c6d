"""A damaged, read-only, newer or full state store: a clear message naming the file (exit 3), and cleanup runs."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from runctl_core.state import database as state_database  # where the database is opened (_connect)
from runctl_core.testing.faults import pids_alive


def test_corrupt_state_store_is_named_with_what_to_do(cli, home: Path, project: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "state.db").write_bytes(b"this is not sqlite at all\n" * 200)
    result = cli("-o", "json", "status")
    assert result.code == 3, result.err
    error = result.error()
    assert error["code"] == "state" and str(home / "state.db") in error["message"]
    assert "damaged" in error["message"] and "mv " in error["hint"]


def test_state_store_from_a_newer_runctl(cli, home: Path, project: Path) -> None:
    assert cli("status").code == 0
    with sqlite3.connect(home / "state.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    result = cli("-o", "json", "status")
    assert result.code == 3, result.err
    error = result.error()
    assert "newer runctl" in error["message"] and "schema 99" in error["message"]
    assert "RUNCTL_HOME" in error["hint"]


def test_state_directory_and_database_are_private(cli, home: Path, project: Path) -> None:
    assert cli("status").code == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "state.db").stat().st_mode) & 0o077 == 0


class _Faulty:
    """Storage faults injected under the store (the one place it opens the database), as sqlite reports them."""

    def __init__(self, message: str, arm_on: str | None, fail_on: str | None = None) -> None:
        self.message = message
        self.arm_on = arm_on  # the SQL after which every write fails (None: fail writes from the start)
        self.armed = arm_on is None and fail_on is None
        self.fail_on = fail_on  # or: only this SQL fails

    def connect(self, path: Path) -> sqlite3.Connection:
        faults = self

        class Cursor(sqlite3.Cursor):
            def execute(self, sql: str, params: Any = ()) -> Any:  # type: ignore[override]
                write = sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER"))
                if (write and faults.armed) or (faults.fail_on and faults.fail_on in sql):
                    raise sqlite3.OperationalError(faults.message)
                result = super().execute(sql, params)
                if faults.arm_on and faults.arm_on in sql:
                    faults.armed = True
                return result

        class Connection(sqlite3.Connection):
            def cursor(self, factory: Any = Cursor) -> Any:  # type: ignore[override]
                return super().cursor(factory)

        return sqlite3.connect(path, timeout=0.05, isolation_level=None, check_same_thread=False, factory=Connection)


def test_read_only_state_store(invoke, home: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_database, "_connect", _Faulty("attempt to write a readonly database", None).connect)
    result = invoke("-o", "json", "create")
    assert result.code == 3, result.err
    error = result.error()
    assert error["code"] == "state" and "state.db" in error["message"] and "cannot be written" in error["message"]
    assert "writable" in error["hint"]
    assert not list(home.glob("providers/local/instances/*")), "nothing may be created without its intent journalled"


def test_disk_full_during_a_run_still_terminates_its_job(
    invoke, home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first write after the job started fails as a full disk does
    faults = _Faulty("database or disk is full", arm_on="UPDATE jobs SET instance_id = ?, status = ?")
    monkeypatch.setattr(state_database, "_connect", faults.connect)
    result = invoke("-o", "json", "run", "examples/train.py", "--", "--epochs", "300", "--sleep", "0.3")
    assert faults.armed, result.err
    assert result.code == 3, result.err
    error = result.error()
    assert error["code"] == "state" and "database or disk is full" in error["message"]
    assert "df -h" in error["hint"]
    records = [json.loads(p.read_text()) for p in home.glob("providers/local/instances/*/jobs/*/job.json")]
    assert records, "the job was started"
    deadline = time.monotonic() + 30
    while pids_alive([r.get("pid") for r in records]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive([r.get("pid") for r in records]) == [], "cleanup did not run: the job is still running"


def test_instance_created_but_not_recorded_is_terminated(
    invoke, home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        state_database, "_connect", _Faulty("database or disk is full", None, "INSERT INTO instances").connect
    )
    result = invoke("-o", "json", "create")
    assert result.code == 3, result.err
    error = result.error()
    assert "could not be recorded" in error["hint"] and "terminated" in error["hint"]
    sandboxes = [json.loads(p.read_text()) for p in home.glob("providers/local/instances/*/instance.json")]
    assert sandboxes and all(s["state"] == "terminated" for s in sandboxes), sandboxes

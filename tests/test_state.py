"""The state store under concurrency: many runctl processes on one RUNCTL_HOME lose and corrupt nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runctl_core.models import Instance, InstanceState, JobSpec, JobState, JobStatus
from runctl_core.state import Store

WRITER = """
import sys
from runctl_core.models import Instance, InstanceState, JobSpec, JobStatus, JobState
from runctl_core.state import Store
store = Store()
worker = sys.argv[1]
for i in range(20):
    job_id = store.new_job_id()
    store.create_job(JobSpec(job_id=job_id, script="x.py"), "local")
    intent = store.begin_intent("local", "create", job_id, {})
    store.save_instance(Instance(id=f"local-{worker}{i:04d}", provider="local", state=InstanceState.RUNNING,
                                 hourly_price=1.0), job_id=job_id, intent_id=intent)
    store.finish_intent(intent, resource_id=f"local-{worker}{i:04d}")
    store.update_job(job_id, status=JobStatus(job_id=job_id, state=JobState.SUCCEEDED, exit_code=0))
"""


def test_ten_processes_in_parallel(home: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"{n:02d}"], env=os.environ) for n in range(10)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    store = Store()
    assert len(store.jobs()) == 200 and len(store.instances()) == 200
    assert all(j.state is JobState.SUCCEEDED for j in store.jobs())
    assert store.pending_intents() == []
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_terminal_job_state_is_final(home: Path) -> None:
    store = Store()
    store.create_job(JobSpec(job_id="job-aaaaaa", script="x.py"), "local")
    store.update_job("job-aaaaaa", status=JobStatus(job_id="job-aaaaaa", state=JobState.FAILED, exit_code=2))
    store.update_job("job-aaaaaa", state=JobState.RUNNING)
    row = store.job("job-aaaaaa")
    assert row is not None and row.state is JobState.FAILED and row.exit_code == 2 and row.ended_at is not None


def test_instance_cost_from_rate_and_lifetime(home: Path) -> None:
    from datetime import datetime, timedelta, timezone

    store = Store()
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    store.save_instance(
        Instance(id="i-1", provider="aws", state=InstanceState.RUNNING, hourly_price=0.5, created_at=start)
    )
    row = store.instance("i-1")
    assert row is not None and abs((row.cost() or 0) - 1.0) < 0.01
    store.save_instance(Instance(id="i-1", provider="aws", state=InstanceState.TERMINATED, hourly_price=0.5))
    ended = store.instance("i-1")
    assert ended is not None and ended.ended_at is not None
    kinds = [e["kind"] for e in store.events()]
    assert kinds == ["instance.created", "instance.ended"]


def test_job_cost_by_billing_model(home: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from runctl_core.cost import job_cost

    store = Store()
    now = datetime.now(timezone.utc)
    store.save_instance(
        Instance(
            id="i-2", provider="aws", state=InstanceState.RUNNING, hourly_price=2.0, created_at=now - timedelta(hours=1)
        )
    )
    store.save_instance(
        Instance(
            id="lyc-1",
            provider="lyceum",
            state=InstanceState.RUNNING,
            hourly_price=2.0,
            created_at=now - timedelta(hours=5),
        ),
        billing="job",
    )
    ran = JobStatus(job_id="job-b", state=JobState.SUCCEEDED, started_at=now - timedelta(minutes=30), ended_at=now)
    assert abs((job_cost(store.instance("i-2"), ran, now) or 0) - 2.0) < 0.01  # the instance's hour
    assert abs((job_cost(store.instance("lyc-1"), ran, now) or 0) - 1.0) < 0.01  # only the job's half hour
    assert store.instance("lyc-1").cost(now) == 0.0  # type: ignore[union-attr]
    reported = ran.model_copy(update={"cost": 0.37})
    assert job_cost(store.instance("lyc-1"), reported, now) == 0.37


def test_older_database_is_migrated(home: Path) -> None:
    import sqlite3

    from runctl_core.state import SCHEMA

    home.mkdir(parents=True, exist_ok=True)
    v1 = (
        SCHEMA.replace("    billing TEXT NOT NULL DEFAULT 'instance',\n", "")
        .replace("    cost REAL,\n", "")
        .replace("    pid_start TEXT,\n", "")
    )
    conn = sqlite3.connect(home / "state.db")
    conn.executescript(v1 + "; PRAGMA user_version = 1;")
    conn.execute(
        "INSERT INTO jobs(id, provider, state, script, spec, created_at) VALUES"
        " ('job-old001', 'local', 'succeeded', 'x.py', '{\"job_id\": \"job-old001\", \"script\": \"x.py\"}',"
        " '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    store = Store()
    row = store.job("job-old001")
    assert row is not None and row.cost is None
    store.save_instance(Instance(id="lyc-2", provider="lyceum", state=InstanceState.RUNNING), billing="job")
    assert store.instance("lyc-2").billing == "job"  # type: ignore[union-attr]

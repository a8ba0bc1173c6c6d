"""Many runctl processes on one RUNCTL_HOME at once: every run succeeds and the state store loses nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from runctl_core.testing.cli import runctl_executable

RUNCTL = runctl_executable()
RUNS = 10


def test_ten_parallel_runs_all_succeed_with_no_lost_or_corrupted_rows(cli, home: Path, project: Path) -> None:
    procs = [
        subprocess.Popen(
            [RUNCTL, "-o", "json", "run", "examples/train.py", "--", "--epochs", "2", "--samples", "400"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=os.environ,
        )
        for _ in range(RUNS)
    ]
    results = [(proc, *proc.communicate(timeout=240)) for proc in procs]
    for proc, _out, err in results:
        assert proc.returncode == 0, err[-3000:]
    docs = [json.loads(out) for _proc, out, _err in results]
    job_ids = {doc["job"]["job_id"] for doc in docs}
    instance_ids = {doc["instance"]["id"] for doc in docs}
    assert len(job_ids) == RUNS and len(instance_ids) == RUNS  # distinct jobs on distinct instances
    for doc in docs:  # each run collected its own job's checkpoints
        metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
        assert metrics["epochs"] == 2 and doc["outputs_dir"].endswith(doc["job"]["job_id"] + "/checkpoints")

    status = cli("-o", "json", "status", "--all")
    assert status.code == 0, status.err
    listed = status.json()
    jobs = {job["job_id"]: job for job in listed["jobs"]}
    assert set(jobs) == job_ids
    assert {job["state"] for job in jobs.values()} == {"succeeded"}
    assert {job["exit_code"] for job in jobs.values()} == {0}
    instances = {i["id"]: i for i in listed["instances"]}
    assert set(instances) == instance_ids and {i["state"] for i in instances.values()} == {"terminated"}
    assert listed["summary"]["instances_running"] == 0

    db = next(home.glob("*.db"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (RUNS,)
        assert conn.execute("SELECT count(*) FROM instances").fetchone() == (RUNS,)
        pending = conn.execute("SELECT count(*) FROM intents WHERE status != 'done'").fetchone()
        assert pending == (0,)
        rows = conn.execute("SELECT id, state, exit_code, spec FROM jobs").fetchall()
    for job_id, state, exit_code, spec in rows:
        assert state == "succeeded" and exit_code == 0 and json.loads(spec)["job_id"] == job_id

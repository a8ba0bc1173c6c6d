"""`resources cleanup` removes what a provider keeps of ended jobs on ended instances (local: the sandbox's
jobs/JOB directories, kept after terminate for `logs` and `checkpoint pull`) once they are older than the
retention - never a running job's, never a kept instance's, never checkpoints that were not collected."""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def _sandbox_jobs(home: Path) -> dict[str, Path]:
    return {p.name: p for p in (home / "providers" / "local" / "instances").glob("local-*/jobs/*")}


def _wait_older_than(seconds: float) -> None:
    time.sleep(seconds + 0.2)  # the retention below is 1 s; a job ended before this line is then older


def test_cleanup_prunes_collected_ended_jobs_only(cli, project: Path, home: Path) -> None:
    (project / ".runctl.toml").write_text(
        '[providers.local]\nuse_uv = false\ngrace_period = 2.0\n[resources]\nprune_job_files_after = "1s"\n'
    )
    collected = cli("run", "examples/train.py", "--output", "json", "--", "--epochs", "1", "--samples", "50")
    assert collected.code == 0, collected.err
    kept_job = cli("run", "examples/train.py", "--output", "json", "--", "--epochs", "1", "--samples", "50")
    assert kept_job.code == 0, kept_job.err
    done, uncollected = collected.json()["job"]["job_id"], kept_job.json()["job"]["job_id"]
    shutil.rmtree(kept_job.json()["outputs_dir"])  # its collected copy is gone: the sandbox has the only one
    (project / "sleep.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    instance = cli("create", "--output", "id").out.strip()
    running = cli("train", instance, "sleep.py", "--output", "id").out.strip()
    assert {done, uncollected, running} <= set(_sandbox_jobs(home))
    _wait_older_than(1)

    plan = cli("resources", "cleanup", "--dry-run", "--output", "json")
    assert plan.code == 0, plan.err
    prunable = {p["job_id"]: p for p in plan.json()["job_files"]}
    assert prunable[done]["action"] == "remove"
    assert prunable[uncollected]["action"] == "keep" and "not collected" in prunable[uncollected]["reason"]
    assert running not in prunable or prunable[running]["action"] == "keep"
    assert set(_sandbox_jobs(home)) >= {done, uncollected, running}  # a dry run removes nothing
    text = cli("resources", "cleanup", "--dry-run")
    assert f"would remove job files: local {done}" in text.out

    removed = cli("resources", "cleanup", "--yes")
    assert removed.code == 0, removed.err
    assert f"removed job files: local {done}" in removed.out
    left = _sandbox_jobs(home)
    assert done not in left and uncollected in left and running in left
    assert (Path(collected.json()["outputs_dir"]) / "metrics.json").is_file()  # the collected copy is untouched
    assert "running" in cli("status", running).out
    logs = cli("logs", done)
    assert logs.code != 0 or "removed" in logs.out + logs.err
    assert "removed by runctl resources cleanup" in logs.err
    cli("terminate", instance, "--yes")


def test_retention_is_a_documented_setting(cli, project: Path) -> None:
    shown = cli("config", "show", "--defaults")
    assert 'prune_job_files_after = "168h"' in shown.out
    refused = cli("config", "set", "resources.prune_job_files_after", "soon")
    assert refused.code == 3 and "a duration" in refused.err

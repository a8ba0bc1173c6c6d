"""The whole workflow on the local provider, through the real CLI (subprocesses), with real training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from runctl_core.testing.cli import runctl_executable
from runctl_core.testing.faults import pids_alive

RUNCTL = runctl_executable()


def test_run_json_reports_final_status_and_checkpoints(cli, project: Path) -> None:
    result = cli("--output", "json", "run", "examples/train.py", "--", "--epochs", "3")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["job"]["state"] == "succeeded" and doc["job"]["exit_code"] == 0
    assert doc["instance"]["state"] == "terminated"
    names = sorted(Path(p).name for p in doc["checkpoints"])
    assert names == ["ckpt-0001.json", "ckpt-0002.json", "ckpt-0003.json", "metrics.json"]
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["val_acc"] > 0.85  # it really trained
    assert doc["cost"] == 0.0


def test_run_text_streams_log_and_summarises(cli, project: Path) -> None:
    result = cli("run", "examples/train.py", "--", "--epochs", "2")
    assert result.code == 0, result.err
    assert "epoch 2/2" in result.err  # the log streamed to stderr
    assert "succeeded" in result.out and "checkpoints:" in result.out


def test_output_id_prints_only_the_job_id(cli, project: Path) -> None:
    result = cli("--output", "id", "run", "examples/train.py", "--", "--epochs", "1")
    assert result.code == 0
    assert result.out.strip().startswith("job-") and len(result.out.strip().split()) == 1


def test_failing_script_exits_1_with_log_tail(cli, project: Path) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "3", "--fail-at-epoch", "2")
    assert result.code == 1
    doc = result.json()  # the result document is still printed
    assert doc["job"]["state"] == "failed" and doc["job"]["exit_code"] == 3
    error = result.error()
    assert error["code"] == "job_failed" and "failing on purpose" in error["message"]
    assert doc["instance"]["state"] == "terminated"


def test_resume_from_previous_job_gives_same_result_as_uninterrupted(cli, project: Path) -> None:
    first = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "2").json()
    resumed = cli(
        "-o", "json", "run", "examples/train.py", "--resume-from", first["job"]["job_id"], "--", "--epochs", "4"
    ).json()
    straight = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "4").json()
    a = json.loads(Path(resumed["outputs_dir"], "metrics.json").read_text())
    b = json.loads(Path(straight["outputs_dir"], "metrics.json").read_text())
    assert a["weights"] == b["weights"]


def test_ctrl_c_terminates_and_leaves_no_process(home: Path, project: Path) -> None:
    proc = subprocess.Popen(
        [RUNCTL, "-o", "json", "run", "examples/train.py", "--", "--epochs", "100", "--sleep", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    job_json = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job_json is None:
        found = list(home.glob("providers/local/instances/*/jobs/*/job.json"))
        if found and json.loads(found[0].read_text()).get("pid"):
            job_json = found[0]
        time.sleep(0.05)
    assert job_json is not None, "the job never started"
    record = json.loads(job_json.read_text())
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(err.strip().splitlines()[-1])["error"]["code"] == "interrupted"
    assert pids_alive([record["pid"], record["supervisor_pid"]]) == []
    final = json.loads(job_json.read_text())
    assert final["state"] == "cancelled"
    status = subprocess.run([RUNCTL, "-o", "json", "status"], capture_output=True, text=True, check=True)
    assert json.loads(status.stdout)["summary"]["instances_running"] == 0


def test_detach_then_follow_logs_and_status(cli, project: Path) -> None:
    started = cli("-o", "json", "run", "examples/train.py", "--detach", "--", "--epochs", "3", "--sleep", "0.2")
    assert started.code == 0, started.err
    job_id = started.json()["job"]["job_id"]
    follow = cli("logs", job_id, "--follow")
    assert follow.code == 0, follow.err
    assert follow.out.count("epoch 3/3") == 1 and "done:" in follow.out
    status = cli("-o", "json", "status", job_id)
    doc = status.json()
    assert doc["state"] == "succeeded" and doc["exit_code"] == 0
    assert doc["instance"]["state"] == "terminated"  # a finished detached run is cleaned up when observed
    ckpts = cli("-o", "json", "checkpoint", "list", job_id).json()
    assert {"metrics.json", "ckpt-0003.json"} <= {c["name"] for c in ckpts["checkpoints"]}
    info = cli("checkpoint", "info", job_id)
    assert "newest" in info.out


def test_logs_follow_json_lines(cli, project: Path) -> None:
    job_id = cli("-o", "id", "run", "examples/train.py", "--detach", "--", "--epochs", "2").out.strip()
    result = cli("-o", "json", "logs", job_id, "--follow")
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert lines[-1]["state"] == "succeeded" and lines[-1]["complete"]
    assert "epoch 2/2" in "".join(line.get("data", "") for line in lines)


def test_create_sync_train_terminate_step_by_step(cli, project: Path) -> None:
    instance_id = cli("-o", "id", "create", "--wait").out.strip()
    assert instance_id.startswith("local-")
    synced = cli("-o", "json", "sync", instance_id).json()
    assert synced["files_sent"] == 2 and synced["files_total"] == 2
    again = cli("-o", "json", "sync", instance_id).json()
    assert again["files_sent"] == 0
    trained = cli("-o", "json", "train", instance_id, "examples/train.py", "--wait", "--no-sync", "--", "--epochs", "1")
    assert trained.code == 0, trained.err
    assert trained.json()["state"] == "succeeded"
    failed = cli("train", instance_id, "examples/train.py", "--wait", "--", "--fail-at-epoch", "1")
    assert failed.code == 1
    assert cli("-o", "json", "status", instance_id).json()["state"] == "running"
    refused = cli("terminate", instance_id)
    assert refused.code == 2 and "--yes" in refused.err
    done = cli("-o", "json", "terminate", instance_id, "--yes")
    assert done.code == 0 and done.json()["state"] == "terminated"
    assert cli("terminate", instance_id, "--yes").code == 0  # idempotent


def test_summary_counts_running(cli, project: Path) -> None:
    instance_id = cli("-o", "id", "create").out.strip()
    summary = cli("status")
    assert summary.out.strip() == "1 instance running, $0.00/h, 0 jobs active"
    cli("terminate", instance_id, "--yes")
    assert cli("status").out.strip().startswith("0 instances running")


def test_dry_run_needs_nothing_and_creates_nothing(cli, project: Path, home: Path) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--dry-run", "--", "--epochs", "2")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["dry_run"] and next(c["step"] for c in doc["calls"]) == "create"
    assert not list(home.glob("providers/local/instances/*"))


def test_kill_9_then_cleanup_leaves_nothing(cli, home: Path, project: Path) -> None:
    proc = subprocess.Popen(
        [RUNCTL, "run", "examples/train.py", "--", "--epochs", "100", "--sleep", "0.5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ,
    )
    deadline = time.monotonic() + 60
    records: list[Path] = []
    while time.monotonic() < deadline and not records:
        records = [
            p for p in home.glob("providers/local/instances/*/jobs/*/job.json") if json.loads(p.read_text()).get("pid")
        ]
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    record = json.loads(records[0].read_text())
    assert pids_alive([record["pid"]]), "the job survives its CLI (it is detached)"
    listed = cli("-o", "json", "resources", "list").json()
    kinds = {r["kind"] for r in listed["resources"]}
    assert kinds == {"abandoned"}
    dry = cli("-o", "json", "resources", "cleanup", "--dry-run").json()
    assert len(dry["targets"]) == 1 and dry["terminated"] == []
    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")
    assert cleaned.code == 0, cleaned.err
    assert len(cleaned.json()["terminated"]) == 1
    assert pids_alive([record["pid"], record["supervisor_pid"]]) == []
    assert cli("-o", "json", "resources", "list").json()["resources"] == []


def test_provider_auto_picks_cheapest_and_explains(cli, project: Path) -> None:
    plan = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--dry-run")
    assert plan.code == 0, plan.err
    doc = plan.json()
    assert doc["provider"] == "local" and doc["alternatives"][0]["provider"] == "local"
    ran = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--", "--epochs", "1")
    assert ran.code == 0, ran.err
    assert ran.json()["job"]["provider"] == "local"
    impossible = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--gpu", "Z9000")
    # no installed GPU provider has credentials here: that is the problem to fix first (exit 3, not 2)
    assert impossible.code == 3 and "no provider can run Z9000" in impossible.error()["message"]


def test_unobserved_finished_detached_run_is_cleaned_up(cli, project: Path) -> None:
    job_id = cli("-o", "id", "run", "examples/train.py", "--detach", "--", "--epochs", "1").out.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the job itself, without asking runctl (nobody looks at it)
        records = list(Path(os.environ["RUNCTL_HOME"]).glob(f"providers/local/instances/*/jobs/{job_id}/job.json"))
        if records and json.loads(records[0].read_text()).get("state") == "succeeded":
            break
        time.sleep(0.05)
    listed = cli("-o", "json", "resources", "list").json()["resources"]
    assert [r["kind"] for r in listed] == ["finished"]
    cleaned = cli("-o", "json", "resources", "cleanup", "--yes").json()
    assert len(cleaned["terminated"]) == 1
    assert cli("-o", "json", "status").json()["summary"] == {
        "instances_running": 0,
        "hourly_cost": 0.0,
        "jobs_active": 0,
    }


def test_outputs_inside_the_project_are_not_synced(cli, project: Path) -> None:
    first = cli("-o", "json", "run", "examples/train.py", "--outputs", "runs", "--", "--epochs", "1").json()
    assert Path(first["outputs_dir"]).parent == (project / "runs").resolve()
    plan = cli("-o", "json", "run", "examples/train.py", "--outputs", "runs", "--dry-run").json()
    sync = next(c for c in plan["calls"] if c["step"] == "sync")
    assert sync["params"]["files"] == 2  # examples/train.py and .runctl.toml, not runs/


def test_small_usage_rules(cli, project: Path) -> None:
    job_id = cli("-o", "id", "run", "examples/train.py", "--", "--epochs", "1").out.strip()
    assert cli("-o", "id", "logs", job_id).code == 2
    assert cli("run", "examples/train.py", "--gpu-count", "2").code == 2
    again = cli("-o", "json", "terminate", job_id, "--yes")
    assert again.code == 0 and again.json()["state"] == "succeeded"
    assert cli("-o", "json", "status", job_id).json()["message"] == ""


def test_invalid_utf8_byte_in_log_does_not_hang_logs(cli, project: Path) -> None:
    """Issue 14.2: one invalid UTF-8 byte made `logs` (and `run`'s follow loop) spin forever at 100% CPU."""
    (project / "bad_byte.py").write_text(
        # a log bigger than one read (1 MiB), the bad byte early in it
        "import sys\nsys.stdout.buffer.write(b'before \\xff after\\n' + (b'x' * 99 + b'\\n') * 30000)\nprint('done')\n"
    )
    ran = cli("-o", "json", "run", "--keep", "bad_byte.py", timeout=90)
    assert ran.code == 0, ran.err
    job = ran.json()["job"]["job_id"]
    shown = cli("logs", job, timeout=60)
    assert shown.code == 0, shown.err
    assert "before \ufffd after" in shown.out and shown.out.rstrip().endswith("done")
    cli("terminate", "--yes", ran.json()["instance"]["id"])

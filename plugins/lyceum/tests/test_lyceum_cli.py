"""The whole workflow through the real CLI (subprocesses) against the Lyceum stand-in: real training, real SSE,
real storage (moto S3), Ctrl-C, a failing script, resume, dry run, prices."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from lyceum_standin import API_KEY, StandIn

from runctl_core.testing.cli import CliResult, isolate, run_runctl, runctl_executable

REPO = Path(__file__).resolve().parents[3]
RUNCTL = runctl_executable()


Result = CliResult


@pytest.fixture
def project(tmp_path: Path, lyceum_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "train.py", root / "examples" / "train.py")
    (root / ".runctl.toml").write_text(tomli_w.dumps({"providers": {"lyceum": lyceum_settings}}))
    isolate(monkeypatch, tmp_path / "runctl-home", tmp_path / "xdg")
    monkeypatch.chdir(root)
    return root


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
    result = run_runctl("--provider", "lyceum", *args, env=env, timeout=timeout)
    assert API_KEY not in result.out and API_KEY not in result.err
    return result


def test_run_trains_end_to_end_and_collects_checkpoints(project: Path, standin: StandIn) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "3")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["job"]["state"] == "succeeded" and doc["job"]["exit_code"] == 0
    assert doc["instance"]["state"] == "terminated" and doc["instance"]["id"].startswith("lyc-")
    names = sorted(Path(p).name for p in doc["checkpoints"])
    assert names == ["ckpt-0001.json", "ckpt-0002.json", "ckpt-0003.json", "metrics.json"]
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["val_acc"] > 0.85  # it really trained, in the stand-in's sandbox
    (execution,) = standin.executions.values()
    assert execution.status == "completed" and execution.hardware_profile == "gpu.l40s"
    job_id = doc["job"]["job_id"]
    assert f"runctl:job={job_id}" in execution.body["labels"] and job_id in execution.body["run_name"]
    assert execution.body["metadata"]["runctl:owner"]
    # the checkpoints really went through Lyceum storage (the bucket), under runctl/<job id>/
    keys = {o["Key"] for o in standin.s3().list_objects_v2(Bucket=standin.bucket).get("Contents", [])}
    assert f"runctl/{job_id}/metrics.json" in keys


def test_run_text_streams_the_log(project: Path, standin: StandIn) -> None:
    result = cli("run", "examples/train.py", "--", "--epochs", "2")
    assert result.code == 0, result.err
    assert "epoch 2/2" in result.err and result.err.count("epoch 1/2") == 1
    assert "succeeded" in result.out


def test_failing_script_exits_1_with_the_end_of_its_log(project: Path, standin: StandIn) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "3", "--fail-at-epoch", "2")
    assert result.code == 1, result.err
    doc = result.json()
    assert doc["job"]["state"] == "failed" and doc["job"]["exit_code"] == 3
    error = result.error()
    assert error["code"] == "job_failed" and "failing on purpose" in error["message"]
    assert doc["instance"]["state"] == "terminated"


def test_ctrl_c_aborts_the_execution_and_exits_130(project: Path, standin: StandIn) -> None:
    proc = subprocess.Popen(
        [
            RUNCTL,
            "--provider",
            "lyceum",
            "-o",
            "json",
            "run",
            "examples/train.py",
            "--",
            "--epochs",
            "200",
            "--sleep",
            "0.3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [e for e in standin.executions.values() if "epoch 1/200" in "".join(e.output)]
            if running:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the execution never started training")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    (execution,) = running
    assert standin.wait_terminal(execution.id).status == "aborted"
    assert execution.proc is not None and execution.proc.poll() is not None
    assert API_KEY not in out + err


def test_resume_from_an_earlier_job(project: Path, standin: StandIn) -> None:
    first = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "2")
    assert first.code == 0, first.err
    resumed = cli(
        "-o", "json", "run", "examples/train.py", "--resume-from", first.json()["job"]["job_id"], "--", "--epochs", "4"
    )
    assert resumed.code == 0, resumed.err
    execution = list(standin.executions.values())[-1]
    assert "resumed from ckpt-0002.json (epoch 2)" in "".join(execution.output)
    metrics = json.loads(Path(resumed.json()["outputs_dir"], "metrics.json").read_text())
    assert metrics["epochs"] == 4 and [h["epoch"] for h in metrics["history"]] == [3, 4]


def test_dry_run_needs_no_key_and_calls_nothing(project: Path, standin: StandIn) -> None:
    result = cli(
        "-o", "json", "run", "examples/train.py", "--dry-run", "--", "--epochs", "2", env={"LYCEUM_API_KEY": ""}
    )
    assert result.code == 0, result.err
    assert "/execution/streaming/start" in result.out
    assert standin.requests == []


def test_price_lists_profiles_for_a_gpu(project: Path, standin: StandIn) -> None:
    result = cli("-o", "json", "price", "--gpu", "A100")
    assert result.code == 0, result.err
    assert "gpu.a100" in result.out and "2.49" in result.out and "gpu.h100" not in result.out

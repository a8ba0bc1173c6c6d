"""The RunPod provider through the real CLI (``runctl`` subprocesses), against the stand-ins: real training on a
"pod" (an SSH server whose commands run in a sandbox), checkpoints back, errors, preemption and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, _toml
from runpod_standin import StandIn

from runctl_core.testing.cli import CliResult, runctl_executable
from runctl_core.testing.faults import pids_alive

REPO = Path(__file__).resolve().parents[3]
RUNCTL = runctl_executable()


Result = CliResult


def _wait_for_running_job(standin: StandIn, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """The pod id and job record once a job on some pod has started its script (its pid is recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod_id, pod in list(standin.pods.items()):
            for record_path in pod.sandbox.glob("runctl/jobs/*/job.json"):
                try:
                    record = json.loads(record_path.read_text())
                except ValueError:
                    continue
                if record.get("pid") and (record_path.parent / "checkpoints").is_dir():
                    return pod_id, record
        time.sleep(0.05)
    raise AssertionError("no job started on the stand-in")


def test_run_trains_on_a_pod_and_brings_checkpoints_back(cli: Callable[..., Result], standin: StandIn) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--", "--epochs", "3")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["job"]["state"] == "succeeded" and doc["job"]["exit_code"] == 0
    assert doc["instance"]["state"] == "terminated"
    names = sorted(Path(p).name for p in doc["checkpoints"])
    assert names == ["ckpt-0001.json", "ckpt-0002.json", "ckpt-0003.json", "metrics.json"]
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["val_acc"] > 0.85  # it really trained, on the "pod"
    pod_id = doc["instance"]["id"]
    assert standin.pods == {} and pod_id in standin.terminated  # nothing left running at RunPod
    pod = standin.terminated[pod_id]
    assert pod.gpu_type_id == "NVIDIA GeForce RTX 4090" and pod.name == f"runctl-{doc['job']['job_id']}"
    assert pod.env["RUNCTL_JOB_ID"] == doc["job"]["job_id"] and pod.env["RUNCTL_OWNER"]
    assert pod.image.startswith("runpod/pytorch:") and pod.docker_args == ""  # RunPod's image starts sshd itself
    ops = standin.operations()
    assert "createPod" in ops and "deletePod" in ops  # REST v2 by default


def test_bad_api_key_exits_4_with_a_hint_and_never_prints_the_key(cli: Callable[..., Result], standin: StandIn) -> None:
    wrong = "rpa_WRONGKEY9876543210abcdef"
    result = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", env={"RUNPOD_API_KEY": wrong})
    assert result.code == 4, result.err
    error = result.error()
    assert error["code"] == "auth"
    assert "401" in error["message"] and "RUNPOD_API_KEY" in error["hint"]
    for text in (result.out, result.err):
        assert wrong not in text and API_KEY not in text
    assert standin.pods == {}
    text_mode = cli("price", "--gpu", "A100", env={"RUNPOD_API_KEY": wrong})
    assert text_mode.code == 4 and "RUNPOD_API_KEY" in text_mode.err and wrong not in text_mode.err


def test_providers_check_says_refused_for_a_rejected_key(cli: Callable[..., Result], standin: StandIn) -> None:
    wrong = "rpa_WRONGKEY9876543210abcdef"
    checked = cli("-o", "json", "providers", "--check", env={"RUNPOD_API_KEY": wrong})
    assert checked.code == 3, checked.err
    runpod = next(p for p in checked.json()["providers"] if p["name"] == "runpod")
    assert runpod["status"] == "refused" and wrong not in checked.out
    accepted = cli("-o", "json", "providers", "--check")
    assert next(p for p in accepted.json()["providers"] if p["name"] == "runpod")["status"] == "accepted"


def test_missing_api_key_is_a_credentials_error(cli: Callable[..., Result], standin: StandIn) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", env={"RUNPOD_API_KEY": ""})
    assert result.code == 3, result.err
    assert "RUNPOD_API_KEY" in result.error()["hint"]
    assert standin.pods == {} and "createPod" not in standin.operations()


def test_price_prints_a_table_from_the_api(cli: Callable[..., Result], standin: StandIn) -> None:
    result = cli("price", "--gpu", "A100")
    assert result.code == 0, result.err
    assert "A100 PCIe" in result.out and "A100 SXM" in result.out
    assert "1.64" in result.out and "1.19" in result.out  # secure and community on-demand, from the stand-in
    assert "listGpuTypes" in standin.operations()
    two = cli("-o", "json", "price", "--gpu", "RTX 4090", "--gpu-count", "2").json()
    secure = next(o for o in two["offers"] if o["instance_type"].startswith("secure:"))
    assert secure["on_demand_hourly"] == pytest.approx(1.38) and secure["spot_hourly"] is None  # REST: no spot
    assert secure["availability"] == "high"


def test_preempted_spot_pod_is_reported_interrupted(
    project: Path, standin: StandIn, graphql_settings: dict[str, Any]
) -> None:
    (project / ".runctl.toml").write_text(_toml(graphql_settings))  # spot pods exist only on GraphQL
    proc = subprocess.Popen(
        [
            RUNCTL,
            "--provider",
            "runpod",
            "-o",
            "json",
            "run",
            "examples/train.py",
            "--gpu",
            "RTX 4090",
            "--spot",
            "--no-recover",
            "--",
            "--epochs",
            "200",
            "--sleep",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )
    try:
        pod_id, record = _wait_for_running_job(standin)
        assert standin.pods[pod_id].spot and standin.pods[pod_id].cost_per_hr == pytest.approx(0.35)
        standin.preempt(pod_id)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    doc = json.loads(out)
    assert doc["job"]["state"] == "interrupted", doc
    error = json.loads(err.strip().splitlines()[-1])["error"]
    assert "interrupted" in error["message"] and "--resume-from" in error["hint"]
    assert pids_alive([record["pid"]]) == []
    assert pod_id in standin.terminated and standin.pods == {}  # the stopped pod was still terminated


def test_ctrl_c_exits_130_and_terminates_the_pod(project: Path, standin: StandIn) -> None:
    proc = subprocess.Popen(
        [
            RUNCTL,
            "--provider",
            "runpod",
            "-o",
            "json",
            "run",
            "examples/train.py",
            "--gpu",
            "RTX 4090",
            "--",
            "--epochs",
            "200",
            "--sleep",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )
    try:
        pod_id, record = _wait_for_running_job(standin)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert json.loads(err.strip().splitlines()[-1])["error"]["code"] == "interrupted"
    assert pod_id in standin.terminated and standin.pods == {}
    assert pids_alive([record["pid"], record["supervisor_pid"]]) == []


def test_capacity_error_exits_4_and_leaves_nothing(cli: Callable[..., Result], standin: StandIn) -> None:
    standin.inject("capacity", "createPod")
    result = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090")
    assert result.code == 4, result.err
    error = result.error()
    assert error["code"] == "capacity" and "no longer any instances available" in error["message"]
    assert standin.pods == {}


def test_dry_run_makes_no_api_call(cli: Callable[..., Result], standin: StandIn) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--dry-run", env={"RUNPOD_API_KEY": ""})
    assert result.code == 0, result.err
    calls = result.json()["calls"]
    operations = [c["operation"] for c in calls]
    assert "POST /v2/pods" in operations and "DELETE /v2/pods/<pod>" in operations
    assert standin.requests == []


def test_dry_run_lists_the_ssh_commands_the_real_run_makes(cli: Callable[..., Result], standin: StandIn) -> None:
    """The plan's SSH commands up to the job's start are the ones a real run sends, in order: the first contact, ONE
    apply-sync carrying the tools with the files (no separate tool install, no manifest read: the HostCache), the
    launch; and terminate is the API call alone."""
    from roundtrips import label

    planned = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--dry-run").json()["calls"]
    ssh_plan = [f"ssh:{c['params']['command']}" for c in planned if c["api"] == "ssh" and c["step"] != "collect"]
    assert not [c for c in planned if c["step"] == "terminate" and c["api"] == "ssh"], planned
    words = " ".join(c["operation"] for c in planned)
    assert "manifest.json" not in words and "install bin/runner.py" not in words, words
    standin.events.clear()
    result = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--", "--epochs", "1")
    assert result.code == 0, result.err
    real = [label(kind, what) for _t, kind, what in standin.events if kind != "api"]
    assert real[: real.index("ssh:launch") + 1] == ssh_plan, (real, ssh_plan)


def test_step_by_step_create_sync_train_logs_terminate(cli: Callable[..., Result], standin: StandIn) -> None:
    checked = cli("-o", "json", "providers", "--check")
    assert checked.code == 0, checked.err
    assert API_KEY not in checked.out + checked.err
    instance_id = cli("-o", "id", "create", "--gpu", "RTX 4090", "--wait").out.strip()
    assert instance_id in standin.pods
    listed = cli("-o", "json", "resources", "list")
    assert listed.code == 0 and instance_id in listed.out
    synced = cli("-o", "json", "sync", instance_id).json()
    assert synced["files_sent"] == synced["files_total"] == 2  # train.py and .runctl.toml
    assert cli("-o", "json", "sync", instance_id).json()["files_sent"] == 0
    trained = cli("-o", "json", "train", instance_id, "examples/train.py", "--wait", "--no-sync", "--", "--epochs", "2")
    assert trained.code == 0, trained.err
    job = trained.json()
    assert job["state"] == "succeeded"
    logs = cli("logs", job["job_id"])
    assert logs.code == 0 and "epoch 2/2" in logs.out and "done:" in logs.out
    failed = cli("train", instance_id, "examples/train.py", "--wait", "--", "--fail-at-epoch", "1")
    assert failed.code == 1
    done = cli("-o", "json", "terminate", instance_id, "--yes")
    assert done.code == 0 and done.json()["state"] == "terminated"
    assert instance_id in standin.terminated
    assert cli("terminate", instance_id, "--yes").code == 0  # idempotent


def test_refused_spot_falls_back_through_the_core(
    cli: Callable[..., Result], standin: StandIn, project: Path, graphql_settings: dict[str, Any]
) -> None:
    (project / ".runctl.toml").write_text(_toml(graphql_settings))
    standin.spot_enabled = False
    never = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--spot", "--", "--epochs", "1")
    assert never.code == 4 and "spot refused" in never.error()["message"] and standin.pods == {}
    result = cli(
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--gpu",
        "RTX 4090",
        "--spot",
        "--on-demand-fallback",
        "always",
        "--",
        "--epochs",
        "1",
    )
    assert result.code == 0, result.err
    assert "spot $0.3500/h, on-demand $0.6900/h (2.0x)" in result.err
    pod = standin.terminated[result.json()["instance"]["id"]]
    assert not pod.spot and pod.cost_per_hr == pytest.approx(0.69)


def test_ssh_runs_a_command_in_the_jobs_directory(cli: Callable[..., Result], standin: StandIn) -> None:
    instance_id = cli("-o", "id", "create", "--gpu", "RTX 4090", "--wait").out.strip()
    trained = cli("-o", "json", "train", instance_id, "examples/train.py", "--wait", "--", "--epochs", "1")
    assert trained.code == 0, trained.err
    job = trained.json()["job_id"]
    shown = cli("ssh", job, "--", "sh", "-c", 'pwd; echo "$RUNCTL_CHECKPOINT_DIR"; ls "$RUNCTL_CHECKPOINT_DIR"')
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[0].endswith("/runctl/project") and f"jobs/{job}/checkpoints" in shown.out
    assert "ckpt-0001.json" in shown.out  # over the pod's own key, its host key pinned (no prompt)
    assert cli("terminate", instance_id, "--yes").code == 0

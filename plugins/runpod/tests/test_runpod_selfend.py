"""A pod that must end itself: after a detached job (issue 11, RunPod 1), at max_runtime (11.3); and what a
detached job leaves once its pod is gone (14.11). Through the CLI, against the stand-in whose SSH sessions do
not have the container's environment (RUNPOD_POD_ID, the pod-scoped RUNPOD_API_KEY), as on RunPod."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import _toml
from runpod_standin import StandIn

from runctl_core.testing.cli import CliResult

ENV_SCRIPT = "import os\nprint('pod id in the job:', os.environ.get('RUNPOD_POD_ID'), flush=True)\n"


def wait_for(condition: Callable[[], bool], timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pod_deletions(standin: StandIn) -> list[dict[str, Any]]:
    return [r for r in standin.requests if r["fields"] in (["deletePod"], ["podTerminate"])]


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_detached_run_ends_its_pod_with_the_pods_own_key(
    cli: Callable[..., CliResult],
    standin: StandIn,
    project: Path,
    runpod_settings: dict[str, Any],
    api: str,
) -> None:
    (project / ".runctl.toml").write_text(_toml({**runpod_settings, "api": api, "detached_grace": 0}))
    (project / "env.py").write_text(ENV_SCRIPT)
    started = cli("-o", "json", "run", "env.py", "--gpu", "RTX 4090", "--detach")
    assert started.code == 0, started.err
    pod_id = started.json()["instance"]["id"]
    wait_for(lambda: pod_id in standin.terminated, what="the pod to end itself")
    deletions = pod_deletions(standin)
    assert [r["auth"] for r in deletions] == ["pod"]  # by the pod itself, with its own key, by explicit id
    assert pod_id in (deletions[0].get("path") or deletions[0].get("query"))
    job = started.json()["job"]["job_id"]
    log = next((standin.terminated[pod_id].sandbox / "runctl" / "jobs").glob(f"{job}/log")).read_text()
    assert "pod id in the job: None" in log  # SSH sessions on RunPod do not get the container's environment


def test_max_runtime_ends_the_pod_itself(
    cli: Callable[..., CliResult],
    standin: StandIn,
    project: Path,
    runpod_settings: dict[str, Any],
) -> None:
    started = cli(
        "-o",
        "json",
        "run",
        "examples/train.py",
        "--gpu",
        "RTX 4090",
        "--detach",
        "--max-runtime",
        "20s",
        "--",
        "--epochs",
        "500",
        "--sleep",
        "0.2",
    )
    assert started.code == 0, started.err
    pod_id = started.json()["instance"]["id"]
    assert pod_id in standin.pods  # still training: the job did not end it
    wait_for(lambda: pod_id in standin.terminated, timeout=120, what="the max_runtime timer to end the pod")
    assert [r["auth"] for r in pod_deletions(standin)] == ["pod"]


def test_cleanup_first_keeps_the_detached_jobs_log_and_checkpoints(
    cli: Callable[..., CliResult], standin: StandIn
) -> None:
    started = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--detach", "--", "--epochs", "2")
    assert started.code == 0, started.err
    pod_id, job = started.json()["instance"]["id"], started.json()["job"]["job_id"]
    record = standin.pods[pod_id].sandbox / "runctl" / "jobs" / job / "job.json"
    wait_for(lambda: json.loads(record.read_text()).get("state") == "succeeded", what="the job to end")
    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")  # before anyone ran status or logs
    assert cleaned.code == 0, cleaned.err
    assert pod_id in standin.terminated and standin.pods == {}
    logs = cli("logs", job)
    assert logs.code == 0, logs.err
    assert "epoch 2/2" in logs.out and "SSH key" not in logs.err
    listed = cli("-o", "json", "checkpoint", "list", job)
    assert listed.code == 0, listed.err
    assert {"ckpt-0001.json", "ckpt-0002.json", "metrics.json"} <= {
        Path(c["name"]).name for c in listed.json()["checkpoints"]
    }

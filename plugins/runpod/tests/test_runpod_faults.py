"""Fault injection on the RunPod provider through the real CLI, checked at the stand-in (RunPod's pods and the
processes on them), not through runctl:

* ``runctl run`` killed with SIGKILL at each step -> ``runctl resources cleanup --yes`` leaves no pod running;
* a spot pod preempted mid-training -> ``run --recover`` finishes on a new pod with the same result as an
  uninterrupted run (from scratch: the checkpoints stay on the stopped pod's volume, see the README's limits);
* pods runctl did not make, or another owner's, survive ``runctl resources cleanup --yes --all``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runpod_standin import FakePod, StandIn

from runctl_core.testing.cli import CliResult, isolate, make_project, run_runctl, runctl_executable
from runctl_core.testing.faults import KILL_STEPS, kill_run_at, pids_alive

REPO = Path(__file__).resolve().parents[3]
OWNER = "fault-tester"
GPU = "RTX 4090"
GPU_ID = "NVIDIA GeForce RTX 4090"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: StandIn, runpod_settings: dict[str, Any]) -> Path:
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "runpod", runpod_settings)
    config = root / ".runctl.toml"
    config.write_text(f'owner = "{OWNER}"\n' + config.read_text())
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def cli(*args: str, timeout: float = 120) -> CliResult:
    return run_runctl("--provider", "runpod", *args, timeout=timeout)


def running_pods(standin: StandIn) -> list[str]:
    with standin.lock:
        return [pod.id for pod in standin.pods.values() if pod.status == "RUNNING"]


def job_pids(standin: StandIn) -> list[int]:
    pods = [*standin.pods.values(), *standin.terminated.values()]
    pids: list[int] = []
    for pod in pods:
        for record in pod.sandbox.glob("runctl/jobs/*/job.json"):
            try:
                data = json.loads(record.read_text())
            except ValueError:
                continue
            pids += [int(data[k]) for k in ("pid", "supervisor_pid") if data.get(k)]
    return pids


def slow_create(standin: StandIn) -> threading.Event:
    """From now on the stand-in carries out podFindAndDeployOnDemand at once but answers 2 s later; the event is
    set when the pod exists. Killing runctl then is a kill in the middle of the create call, with a pod at RunPod
    that runctl never heard of."""
    created = threading.Event()
    original = standin.create_pod

    def create_pod(data: dict[str, Any], bid: float | None) -> FakePod:
        pod = original(data, bid)
        created.set()
        time.sleep(2.0)
        return pod

    standin.create_pod = create_pod  # type: ignore[method-assign]
    return created


EPOCHS = {"during-collect": ["--epochs", "1"]}


@pytest.mark.parametrize("step", list(KILL_STEPS))
def test_kill_9_at_each_step_then_cleanup_leaves_no_pod_running(project: Path, standin: StandIn, step: str) -> None:
    args = EPOCHS.get(step, ["--epochs", "200", "--sleep", "0.1"])
    created = slow_create(standin) if step == "during-create" else None
    report = kill_run_at(
        ["--provider", "runpod", "run", "examples/train.py", "--gpu", GPU, "--", *args],
        step,
        provider="runpod",
        when=created.is_set if created else None,
    )
    assert report.killed, f"the run never reached {step}:\n{report.stderr[-3000:]}"
    assert report.returncode == -9
    if created:  # killed with the create call in flight: the pod exists, runctl never got its id
        assert "runpod.create ->" not in report.stderr and len(running_pods(standin)) == 1
    if "runpod.terminate(" not in report.stderr:  # killed before it could clean up: the pod is left running
        assert running_pods(standin), f"no pod left after a kill {step}"
    if step == "during-train":
        assert pids_alive(job_pids(standin)), "the job outlives its killed CLI (it runs on the pod)"

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes")
    assert cleaned.code == 0, cleaned.err
    if step == "during-create":  # runctl never heard back: the pod is found by its runctl tags alone
        assert [(t["kind"], t["in_journal"]) for t in cleaned.json()["targets"]] == [("orphan", False)]
    assert running_pods(standin) == []  # at RunPod: nothing running ...
    assert standin.pods == {}  # ... nor stopped: every pod runctl made is terminated
    assert pids_alive(job_pids(standin)) == []
    assert cli("-o", "json", "resources", "list").json()["resources"] == []
    assert cli("-o", "json", "status").json()["summary"] == {"instances_running": 0, "hourly_cost": 0, "jobs_active": 0}


def _job_checkpoint(standin: StandIn, name: str, timeout: float = 60) -> str:
    """The id of the pod whose job has written checkpoint ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with standin.lock:
            pods = list(standin.pods.values())
        for pod in pods:
            if list(pod.sandbox.glob(f"runctl/jobs/*/checkpoints/{name}")):
                return pod.id
        time.sleep(0.05)
    raise AssertionError(f"no job wrote {name} on the stand-in")


def test_preempted_spot_pod_recovers_on_a_new_pod_with_the_same_result(
    project: Path, standin: StandIn, graphql_settings: dict[str, Any]
) -> None:
    config = project / ".runctl.toml"  # spot pods exist only on RunPod's (deprecated) GraphQL API
    config.write_text(config.read_text().replace("[providers.runpod]", '[providers.runpod]\napi = "graphql"'))
    straight = cli("-o", "json", "run", "examples/train.py", "--gpu", GPU, "--", "--epochs", "5")
    assert straight.code == 0, straight.err
    expected = json.loads(Path(straight.json()["outputs_dir"], "metrics.json").read_text())

    args = ["-o", "json", "run", "examples/train.py", "--gpu", GPU, "--spot", "--recover"]
    proc = subprocess.Popen(
        [runctl_executable(), "--provider", "runpod", *args, "--", "--epochs", "5", "--sleep", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    try:
        first_pod = _job_checkpoint(standin, "ckpt-0002.json")  # mid-training: 2 of 5 epochs done
        standin.preempt(first_pod)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    doc = json.loads(out)
    attempts = doc["attempts"]
    assert [a["state"] for a in attempts] == ["interrupted", "succeeded"]
    assert attempts[0]["instance_id"] == first_pod and attempts[1]["instance_id"] != first_pod  # a new pod
    assert doc["job"]["job_id"] == attempts[1]["job_id"] and doc["job"]["parent_id"] == attempts[0]["job_id"]
    metrics = json.loads(Path(doc["outputs_dir"], "metrics.json").read_text())
    assert metrics["weights"] == expected["weights"] and metrics["bias"] == expected["bias"]
    # RunPod's limit: the preempted pod's checkpoints stay on its volume, so attempt 2 trained from scratch
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    second = standin.terminated[attempts[1]["instance_id"]]
    log = (second.sandbox / "runctl" / "jobs" / attempts[1]["job_id"] / "log").read_text()
    assert "resumed from" not in log and "epochs 0->5" in log
    assert standin.pods == {} and {first_pod, attempts[1]["instance_id"]} <= set(standin.terminated)


def _foreign_pod(standin: StandIn, name: str, env: dict[str, str]) -> str:
    data = {
        "name": name,
        "imageName": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
        "gpuTypeId": GPU_ID,
        "gpuCount": 1,
        "cloudType": "SECURE",
        "env": env,
        "ports": "8888/http",
    }
    return standin.create_pod(data, None).id


def test_foreign_pods_survive_cleanup_all(project: Path, standin: StandIn) -> None:
    ours = cli("-o", "id", "create", "--gpu", GPU).out.strip()  # kept: only --all removes it
    assert ours in standin.pods
    untagged = _foreign_pod(standin, "my-notebook", {})
    lookalike = _foreign_pod(standin, "runctl-job-abc123", {"RUNCTL_JOB_ID": "job-abc123"})  # no owner: not ours
    other_owner = _foreign_pod(
        standin,
        "runctl-job-0ther1",
        {
            "RUNCTL_OWNER": "someone-else",
            "RUNCTL_JOB_ID": "job-0ther1",
            "RUNCTL_INTENT": "intent-0ther1",
            "RUNCTL_CREATED": "2026-01-01T00:00:00+00:00",
        },
    )
    listed = cli("-o", "json", "resources", "list").json()
    assert {r["id"] for r in listed["resources"]} == {ours}

    cleaned = cli("-o", "json", "resources", "cleanup", "--yes", "--all")
    assert cleaned.code == 0, cleaned.err
    assert [t["id"] for t in cleaned.json()["terminated"]] == [ours]
    assert ours in standin.terminated
    assert sorted(running_pods(standin)) == sorted([untagged, lookalike, other_owner])
    terminations = [r["path"] for r in standin.requests if "deletePod" in r["fields"]]
    assert terminations == [f"/v2/pods/{ours}"]  # only ours was ever asked to terminate

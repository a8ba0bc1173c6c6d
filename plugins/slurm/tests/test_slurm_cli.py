"""The Slurm provider through the real CLI (``runctl`` subprocesses) against a real two-node Slurm cluster: a
distributed run that reaches the single-process weights, a failing rank, Ctrl-C and kill -9 of runctl, a job
waiting for resources, GPUs as GRES, the SSH login node, prerequisite errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import tomllib
from slurm_cluster import SlurmCluster

from runctl_core.testing.cli import CliResult, isolate, run_runctl, runctl_executable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
RANK_SCRIPT = """\
import os, sys, time
print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} on {os.environ.get('SLURMD_NODENAME')}", flush=True)
if os.environ["RANK"] == os.environ.get("FAIL_RANK"):
    print("rank failing on purpose", flush=True)
    sys.exit(int(os.environ["FAIL_CODE"]))
time.sleep(float(os.environ.get("SLEEP", "0")))
print("rank done", flush=True)
"""


def _settings(cluster: SlurmCluster, **extra: Any) -> dict[str, Any]:
    work = cluster.shared / f"work-{uuid.uuid4().hex[:8]}"
    return {"workdir": str(work), "partition": cluster.partition, "use_uv": False, "grace_period": 2.0, **extra}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster) -> Path:
    root = tmp_path / "project"
    (root / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "ddp_train.py", root / "examples" / "ddp_train.py")
    (root / "ranks.py").write_text(RANK_SCRIPT)
    (root / ".runctl.toml").write_text(tomli_w.dumps({"providers": {"slurm": _settings(slurm_cluster)}}))
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    return root


@pytest.fixture
def cli(project: Path) -> Callable[..., CliResult]:
    def run(*args: str, timeout: float = 300) -> CliResult:
        return run_runctl("--provider", "slurm", *args, timeout=timeout)

    return run


def _active(cluster: SlurmCluster) -> list[str]:
    out = cluster.run("squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING,CONFIGURING", "-o", "%i").stdout
    return out.split()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _weights(outputs_dir: str) -> list[float]:
    return list(json.loads(Path(outputs_dir, "weights.json").read_text())["weights"])


def test_two_node_run_matches_single_process_and_shows_all_ranks(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster
) -> None:
    single = subprocess.run(
        [sys.executable, "examples/ddp_train.py", "--steps", "20"],
        capture_output=True,
        text=True,
        env={**os.environ, "RUNCTL_CHECKPOINT_DIR": str(project / "single")},
        timeout=120,
    )
    assert single.returncode == 0, single.stderr
    result = cli("-o", "json", "run", "--nodes", "2", "examples/ddp_train.py", "--", "--steps", "20")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["job"]["state"] == "succeeded" and doc["job"]["exit_code"] == 0
    assert _weights(doc["outputs_dir"]) == _weights(str(project / "single"))
    every = cli("logs", doc["job"]["job_id"], "--all-ranks")
    assert every.code == 0, every.err
    assert "[rank 0] rank 0/2: 128 of 256 samples" in every.out
    assert "[rank 1] rank 1/2: 128 of 256 samples" in every.out
    assert _active(slurm_cluster) == []
    metrics = [json.loads(line) for line in (project.parent / "home/providers/slurm/metrics.jsonl").open()]
    assert [(m["step"], m["round_trips"]) for m in metrics] == [("create", 1), ("sync", 2), ("train", 2)]


def test_one_failing_rank_fails_the_job_with_its_exit_code(
    cli: Callable[..., CliResult], slurm_cluster: SlurmCluster
) -> None:
    result = cli(
        "-o", "json", "run", "--nodes", "2", "--env", "FAIL_RANK=1", "--env", "FAIL_CODE=7", "--env", "SLEEP=600",
        "ranks.py",
    )  # fmt: skip
    assert result.code == 1, result.err
    doc = result.json()
    assert doc["job"]["state"] == "failed" and doc["job"]["exit_code"] == 7 and doc["failed_rank"] == 1
    error = result.error()
    assert "rank 1 failed first" in error["message"] and "rank failing on purpose" in error["message"]
    rank0 = cli("logs", doc["job"]["job_id"], "--rank", "0")
    assert "rank done" not in rank0.out  # rank 0 was stopped by srun --kill-on-bad-exit, not waited for
    _wait(lambda: _active(slurm_cluster) == [], "the job to leave squeue")


def test_ctrl_c_cancels_the_slurm_job(project: Path, slurm_cluster: SlurmCluster) -> None:
    proc = subprocess.Popen(
        [runctl_executable(), "--provider", "slurm", "run", "--nodes", "2", "--env", "SLEEP=600", "ranks.py"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: "rank 0 of 2" in "".join(_job_logs(project)), "rank 0 to start")
        assert _active(slurm_cluster)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert _active(slurm_cluster) == []  # scancel'ed before runctl returned


def _workdir(project: Path) -> Path:
    return Path(tomllib.loads((project / ".runctl.toml").read_text())["providers"]["slurm"]["workdir"])


def _job_logs(project: Path) -> list[str]:
    return [p.read_text(errors="replace") for p in _workdir(project).glob("instances/*/jobs/*/ranks/*/log")]


def test_kill_9_then_resources_cleanup_cancels_the_job(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster
) -> None:
    proc = subprocess.Popen(
        [runctl_executable(), "--provider", "slurm", "run", "--nodes", "2", "--env", "SLEEP=600", "ranks.py"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: "rank 0 of 2" in "".join(_job_logs(project)), "rank 0 to start")
    finally:
        proc.kill()
        proc.wait()
    assert _active(slurm_cluster)  # runctl is gone; the job is not
    listed = cli("-o", "json", "resources", "list")
    assert listed.code == 0, listed.err
    kinds = {r["id"]: r["kind"] for r in listed.json()["resources"]}
    assert "abandoned" in kinds.values(), kinds
    cleaned = cli("resources", "cleanup", "--yes")
    assert cleaned.code == 0, cleaned.err
    assert _active(slurm_cluster) == []


def test_a_job_waiting_for_resources_shows_slurms_reason(
    cli: Callable[..., CliResult], slurm_cluster: SlurmCluster
) -> None:
    blocker = slurm_cluster.run("sbatch", "--parsable", "--nodes=2", "--wrap", "sleep 600").stdout.strip()
    try:
        _wait(lambda: blocker in slurm_cluster.run("squeue", "-h", "-t", "RUNNING", "-o", "%i").stdout, "the blocker")
        started = cli("-o", "json", "run", "--detach", "--nodes", "2", "ranks.py")
        assert started.code == 0, started.err
        job = started.json()["job"]["job_id"]
        seen: list[dict[str, Any]] = []

        def reason_shown() -> bool:  # a fresh job has no reason until the scheduler has looked at it
            status = cli("-o", "json", "status", job)
            assert status.code == 0, status.err
            seen.append(status.json())
            return "(Resources)" in seen[-1]["message"]

        _wait(reason_shown, "Slurm's reason in runctl status", timeout=120)
        assert seen[-1]["state"] == "pending" and "waiting in Slurm's queue" in seen[-1]["message"]
        assert cli("terminate", job, "--yes").code == 0
    finally:
        slurm_cluster.run("scancel", blocker)
    _wait(lambda: _active(slurm_cluster) == [], "the queue to empty")


def test_gpu_becomes_gres_and_max_runtime_a_time_limit(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster
) -> None:
    result = cli(
        "-o", "json", "run", "--gpu", "A100", "--gpu-count", "1", "--max-runtime", "90m", "--env", "SLEEP=0",
        "ranks.py",
    )  # fmt: skip
    assert result.code == 0, result.err
    batch = next(Path(p) for p in _batch_scripts(project))
    text = batch.read_text()
    assert "#SBATCH --gres=gpu:a100:1" in text and "#SBATCH --time=0-01:30:00" in text
    too_many = cli("run", "--gpu", "A100", "--gpu-count", "2", "ranks.py")  # the nodes have one each
    assert too_many.code == 4 and "sbatch refused" in too_many.err


def _batch_scripts(project: Path) -> list[Path]:
    return sorted(_workdir(project).glob("instances/*/jobs/*/batch.sh"))


def test_login_node_over_ssh_with_a_host_alias(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = project.parent / "user-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(slurm_cluster.ssh_config("login"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SLURM_CONF")  # only the login node knows the cluster (sshd's SetEnv)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    (project / ".runctl.toml").write_text(
        tomli_w.dumps({"providers": {"slurm": _settings(slurm_cluster, host="login")}})
    )
    result = cli("-o", "json", "run", "--nodes", "2", "examples/ddp_train.py", "--", "--steps", "5")
    assert result.code == 0, result.err
    assert Path(result.json()["outputs_dir"], "weights.json").is_file()
    assert _active(slurm_cluster) == []


def test_login_node_with_an_unknown_host_key_is_refused(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login node is reached as `ssh login` would: a host key your known_hosts does not list is refused (never
    trusted on first use), with the command that lets you check and accept it."""
    home = project.parent / "user-home"
    (home / ".ssh").mkdir(parents=True)
    config = slurm_cluster.ssh_config("login").replace(f"  UserKnownHostsFile {slurm_cluster.known_hosts}\n", "")
    (home / ".ssh" / "config").write_text(config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    (project / ".runctl.toml").write_text(
        tomli_w.dumps({"providers": {"slurm": _settings(slurm_cluster, host="login")}})
    )
    result = cli("-o", "json", "run", "examples/ddp_train.py", "--", "--steps", "1")
    assert result.code == 4, result.err
    error = json.loads(result.err)["error"]
    assert error["code"] == "auth" and "the login node login" in error["message"], error
    assert "known_hosts" in error["message"] and "ssh login" in error["hint"]
    assert _active(slurm_cluster) == []


def test_prerequisites_fail_with_the_fixing_command(cli: Callable[..., CliResult], project: Path) -> None:
    (project / ".runctl.toml").write_text(
        tomli_w.dumps({"providers": {"slurm": {"partition": "nosuch", "workdir": str(project / "w")}}})
    )
    result = cli("-o", "json", "run", "ranks.py")
    assert result.code == 3, result.err
    error = result.error()
    assert "partition nosuch does not exist" in error["message"] and "sinfo" in error["hint"]


CHECKPOINTING = """\
import json, os, pathlib, time
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
state = ckpt / "state.json"
start = json.loads(state.read_text())["step"] if state.exists() else 0
print(f"rank {os.environ['RANK']} starts at step {start}", flush=True)
for step in range(start + 1, 31):
    time.sleep(0.5)
    if os.environ["RANK"] == "0":
        state.write_text(json.dumps({"step": step, "resumed_from": start}))
print(f"rank {os.environ['RANK']} done", flush=True)
"""


def test_node_failure_is_interrupted_and_recover_resubmits_from_the_checkpoint(
    project: Path, slurm_cluster: SlurmCluster
) -> None:
    (project / "ckpt.py").write_text(CHECKPOINTING)
    proc = subprocess.Popen(
        [runctl_executable(), "-o", "json", "--provider", "slurm", "run", "--nodes", "2", "--recover",
         "--max-restarts", "1", "ckpt.py"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait(
            lambda: any(json.loads(p.read_text() or "{}").get("step", 0) >= 4 for p in _state_files(project)),
            "rank 0 to checkpoint a few steps",
        )
        slurm_cluster.run("scontrol", "update", "nodename=node2", "state=down", "reason=runctl-test")
        _wait(lambda: len(list(_workdir(project).glob("instances/*"))) == 2, "the second attempt", timeout=180)
        slurm_cluster.run("scontrol", "update", "nodename=node2", "state=resume")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        slurm_cluster.run("scontrol", "update", "nodename=node2", "state=resume")
    assert proc.returncode == 0, err
    doc = json.loads(out)
    attempts = doc["attempts"]
    assert [a["state"] for a in attempts] == ["interrupted", "succeeded"], attempts
    assert "NODE_FAIL" in attempts[0]["message"]
    final = json.loads(Path(doc["outputs_dir"], "state.json").read_text())
    assert final["step"] == 30 and final["resumed_from"] >= 4, final  # resumed, not restarted


def _state_files(project: Path) -> list[Path]:
    return list(_workdir(project).glob("instances/*/jobs/*/checkpoints/state.json"))


def test_torchrun_launcher_on_slurm(cli: Callable[..., CliResult], project: Path) -> None:
    # torch's launcher module stood in for by a project package (python -m looks in the working directory first)
    fake = project / "torch" / "distributed"
    fake.mkdir(parents=True)
    (project / "torch" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "run.py").write_text("import sys, os\nprint('torchrun', os.environ['NODE_RANK'], *sys.argv[1:])\n")
    result = cli("-o", "json", "run", "--nodes", "2", "--launcher", "torchrun", "ranks.py")
    assert result.code == 0, result.err
    logs = cli("-o", "json", "logs", result.json()["job"]["job_id"], "--all-ranks").json()["ranks"]
    for rank in ("0", "1"):
        words = next(x for x in logs[rank].splitlines() if x.startswith("torchrun ")).split()
        assert words[1] == rank and words[2:8] == ["--nnodes", "2", "--node-rank", rank, "--nproc-per-node", "1"]
        assert words[-1] == "ranks.py" and words[8] == "--master-addr" and words[9] == "127.0.0.1"


def test_time_limit_reached_is_reported_as_timeout(cli: Callable[..., CliResult]) -> None:
    # --max-runtime 1m -> --time=1 minute; Slurm ends the job at the limit (within its check interval)
    result = cli("-o", "json", "run", "--max-runtime", "1m", "--env", "SLEEP=600", "ranks.py", timeout=400)
    assert result.code == 1, result.err
    doc = result.json()
    assert doc["job"]["state"] == "failed" and "TIMEOUT" in doc["job"]["message"]


def test_dry_run_plans_sbatch_and_submits_nothing(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster
) -> None:
    result = cli("-o", "json", "run", "--nodes", "2", "--gpu", "A100", "--max-runtime", "2h", "ranks.py", "--dry-run")
    assert result.code == 0, result.err
    calls = {c["step"]: c for c in result.json()["calls"]}
    assert calls["train"]["operation"] == "sbatch --parsable" and calls["train"]["params"]["nodes"] == 2
    assert calls["train"]["params"]["options"] == ["--partition=debug", "--gres=gpu:a100:1", "--time=0-02:00:00"]
    assert "scancel" in calls["terminate"]["operation"]
    assert _active(slurm_cluster) == [] and not _workdir(project).exists()


def test_environment_is_prepared_once_for_all_ranks(
    cli: Callable[..., CliResult], project: Path, slurm_cluster: SlurmCluster
) -> None:
    marker = project.parent / "setup-ran"
    (project / "requirements.txt").write_text("")  # declared, nothing to download: no network needed
    result = cli("-o", "json", "run", "--nodes", "2", "--setup", f"echo once >> {marker}", "ranks.py")
    assert result.code == 0, result.err
    assert marker.read_text() == "once\n"  # one environment step on the shared filesystem, not one per rank
    logs = cli("-o", "json", "logs", result.json()["job"]["job_id"], "--all-ranks").json()["ranks"]
    assert "environment: cached" in logs["1"] and "rank done" in logs["1"]
    assert list((_workdir(project) / "envs").iterdir())  # cached beside the instances, reused by the next job

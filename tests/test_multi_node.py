"""Multi-node jobs through the CLI on the local provider: N process groups with torchrun-compatible variables,
success only when every rank exits 0, the first failing rank reported, logs per rank."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RANK_REPORT = """\
import json, os, sys
keys = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "RUNCTL_NUM_NODES"]
print("vars " + json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
if os.environ["RANK"] == os.environ.get("FAIL_RANK"):
    print("rank failing on purpose", flush=True)
    sys.exit(int(os.environ["FAIL_CODE"]))
import time
time.sleep(float(os.environ.get("SLEEP", "0")))
print("rank done", flush=True)
"""


@pytest.fixture
def ddp_project(project: Path) -> Path:
    shutil.copy(REPO / "examples" / "ddp_train.py", project / "examples" / "ddp_train.py")
    (project / "ranks.py").write_text(RANK_REPORT)
    return project


def _weights(doc: dict) -> list[float]:
    return json.loads(Path(doc["outputs_dir"], "weights.json").read_text())["weights"]


def test_two_nodes_reach_the_single_process_weights(cli, ddp_project: Path) -> None:
    single = cli("-o", "json", "run", "examples/ddp_train.py", "--", "--steps", "30")
    assert single.code == 0, single.err
    double = cli("-o", "json", "run", "--nodes", "2", "examples/ddp_train.py", "--", "--steps", "30")
    assert double.code == 0, double.err
    doc = double.json()
    assert doc["job"]["state"] == "succeeded"
    assert _weights(doc) == _weights(single.json())  # the exact all-reduce: same floats, not just close
    assert json.loads(Path(doc["outputs_dir"], "weights.json").read_text())["world_size"] == 2

    job = doc["job"]["job_id"]
    rank1 = cli("logs", job, "--rank", "1")
    assert rank1.code == 0 and "rank 1/2: 128 of 256 samples" in rank1.out
    every = cli("logs", job, "--all-ranks")
    assert "[rank 0] rank 0/2: 128 of 256 samples" in every.out
    assert "[rank 1] rank 1/2: 128 of 256 samples" in every.out
    default = cli("logs", job)
    assert "rank 0/2" in default.out and "rank 1/2" not in default.out  # rank 0 by default
    bad = cli("logs", job, "--rank", "2")
    assert bad.code == 2 and "0 to 1" in bad.err


def test_each_rank_gets_torchrun_variables(cli, ddp_project: Path) -> None:
    result = cli("-o", "json", "run", "--nodes", "3", "ranks.py")
    assert result.code == 0, result.err
    job = result.json()["job"]["job_id"]
    logs = cli("-o", "json", "logs", job, "--all-ranks").json()["ranks"]
    seen = {}
    for rank, text in logs.items():
        line = next(x for x in text.splitlines() if x.startswith("vars "))
        seen[int(rank)] = json.loads(line[5:])
    ports = {v["MASTER_PORT"] for v in seen.values()}
    assert len(ports) == 1 and next(iter(ports)).isdigit()
    for rank, env in seen.items():
        assert env["RANK"] == env["NODE_RANK"] == str(rank)
        assert env["LOCAL_RANK"] == "0" and env["WORLD_SIZE"] == env["RUNCTL_NUM_NODES"] == "3"
        assert env["MASTER_ADDR"] == "127.0.0.1"


def test_one_failing_rank_fails_the_job_and_stops_the_others(cli, ddp_project: Path) -> None:
    result = cli(
        "-o", "json", "run", "--nodes", "2", "--env", "FAIL_RANK=1", "--env", "FAIL_CODE=7",
        "--env", "SLEEP=600", "ranks.py",
    )  # fmt: skip
    assert result.code == 1
    error = result.error()
    assert "exited with code 7" in error["message"] and "rank 1 failed first" in error["message"]
    assert "rank failing on purpose" in error["message"]  # the failing rank's log tail
    assert "--rank 1" in error["hint"]
    doc = result.json()  # the result document is still printed
    assert doc["job"]["exit_code"] == 7 and doc["failed_rank"] == 1
    job = doc["job"]["job_id"]
    rank0 = cli("logs", job, "--rank", "0")
    assert "rank done" not in rank0.out  # rank 0 (sleeping 600 s) was stopped, not waited for
    assert "runctl: stopped on request" in rank0.out


def test_nodes_refused_where_the_provider_cannot(cli, ddp_project: Path, tmp_path: Path) -> None:
    from runctl_core.testing.cli import run_runctl

    result = run_runctl("--provider", "aws", "run", "--nodes", "2", "ranks.py", "--dry-run")
    assert result.code == 2, result.err
    assert "cannot run --nodes 2" in result.err and "one machine" in result.err


FAKE_TORCHRUN = """\
import json, os, sys
print("torchrun " + json.dumps({"argv": sys.argv[1:], "NODE_RANK": os.environ["NODE_RANK"]}), flush=True)
"""


def test_launcher_torchrun_starts_torchrun_per_node(cli, ddp_project: Path) -> None:
    # a stand-in for torch's launcher module in the project (python -m resolves the working directory first),
    # so that the command runctl builds for each node is observed without installing torch
    fake = ddp_project / "torch" / "distributed"
    fake.mkdir(parents=True)
    (ddp_project / "torch" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "run.py").write_text(FAKE_TORCHRUN)
    result = cli("-o", "json", "run", "--nodes", "2", "--launcher", "torchrun", "ranks.py", "--", "--flag")
    assert result.code == 0, result.err
    logs = cli("-o", "json", "logs", result.json()["job"]["job_id"], "--all-ranks").json()["ranks"]
    for rank in ("0", "1"):
        seen = json.loads(next(x for x in logs[rank].splitlines() if x.startswith("torchrun "))[9:])
        argv = seen["argv"]
        assert argv[:6] == ["--nnodes", "2", "--node-rank", rank, "--nproc-per-node", "1"]
        assert argv[6:8] == ["--master-addr", "127.0.0.1"] and argv[8] == "--master-port"
        assert argv[-2:] == ["ranks.py", "--flag"] and seen["NODE_RANK"] == rank


def test_terminate_stops_every_rank_even_when_the_launcher_was_killed(cli, ddp_project: Path) -> None:
    import os
    import signal
    import time

    from runctl_core.testing.faults import pids_alive

    started = cli("-o", "json", "run", "--detach", "--nodes", "2", "--env", "SLEEP=600", "ranks.py")
    assert started.code == 0, started.err
    doc = started.json()
    job_dir = Path(doc["instance"]["details"]["path"]) / "jobs" / doc["job"]["job_id"]
    records = [job_dir / "ranks" / str(k) / "job.json" for k in (0, 1)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(r.exists() and '"pid"' in r.read_text() for r in records):
        time.sleep(0.1)
    pids = [json.loads(r.read_text())["pid"] for r in records]
    assert len(pids_alive(pids)) == 2
    os.kill(json.loads((job_dir / "job.json").read_text())["supervisor_pid"], signal.SIGKILL)  # the launcher
    assert cli("terminate", doc["job"]["job_id"], "--yes").code == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and pids_alive(pids):
        time.sleep(0.1)
    assert pids_alive(pids) == []


def test_provider_auto_skips_providers_without_multi_node(cli, ddp_project: Path) -> None:
    plan = cli("-o", "json", "--provider", "auto", "run", "--nodes", "2", "ranks.py", "--dry-run")
    assert plan.code == 0, plan.err
    doc = plan.json()
    assert doc["provider"] == "local"
    reasons = {s["provider"]: s["reason"] for s in doc["skipped"]}
    assert "no multi-node jobs" in reasons["aws"] and "no multi-node jobs" in reasons["runpod"]


def test_train_on_an_existing_instance_with_nodes(cli, ddp_project: Path) -> None:
    instance = cli("--output", "id", "create").out.strip()
    try:
        trained = cli("-o", "json", "train", instance, "ranks.py", "--nodes", "2", "--wait")
        assert trained.code == 0, trained.err
        logs = cli("logs", trained.json()["job_id"], "--all-ranks")
        assert "[rank 0] rank done" in logs.out and "[rank 1] rank done" in logs.out
    finally:
        cli("terminate", instance, "--yes")


def test_job_file_resources_nodes(cli, ddp_project: Path) -> None:
    (ddp_project / "runctl.yaml").write_text(
        "script: examples/ddp_train.py\nargs: ['--steps', '10']\nresources:\n  nodes: 2\nprovider: local\n"
    )
    result = cli("-o", "json", "run")
    assert result.code == 0, result.err
    job = result.json()["job"]["job_id"]
    every = cli("logs", job, "--all-ranks")
    assert "[rank 1] rank 1/2: 128 of 256 samples" in every.out


def test_setup_commands_run_for_a_multi_node_job(cli, ddp_project: Path) -> None:
    """--setup with --nodes: the launch handed ranks.py neither the setup commands nor --python, so a multi-node
    job on the local provider (and on every JobHost provider) ran without its setup."""
    (ddp_project / "check.py").write_text(
        "import os\nprint('setup ran' if os.path.exists('setup-marker.txt') else 'no setup', flush=True)\n"
    )
    result = cli("-o", "json", "run", "--nodes", "2", "--setup", "echo made > setup-marker.txt", "check.py")
    assert result.code == 0, result.err
    job = result.json()["job"]["job_id"]
    log = cli("logs", job)
    assert "setup ran" in log.out and "no setup" not in log.out, log.out

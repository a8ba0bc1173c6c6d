"""What runctl says to Slurm and how it reads the answers, without a cluster: squeue output (a real 22.05 capture
and the 23.02+ shapes), job states, GRES/partition/time options, tags in --comment, the batch script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runctl_core.errors import UsageError
from runctl_core.models import JobState
from runctl_slurm.slurm import (
    BatchJob,
    SlurmJob,
    batch_script,
    comment_for,
    gres_options,
    map_state,
    parse_squeue_format,
    parse_squeue_json,
    tags_from_comment,
    time_limit,
)

DATA = Path(__file__).parent / "data"


def test_squeue_json_of_slurm_22_05() -> None:
    # captured from the test cluster: squeue --json with one running runctl job and one pending job
    jobs = {j.job_id: j for j in parse_squeue_json((DATA / "squeue-22.05.json").read_text())}
    assert jobs["2"].state == "RUNNING" and tags_from_comment(jobs["2"].comment)["runctl:job"] == "job-a"
    assert jobs["3"].state == "PENDING" and jobs["3"].reason == "Resources"
    assert tags_from_comment(jobs["3"].comment) == {}


def test_squeue_json_of_newer_slurm() -> None:
    # 23.02+ (data_parser): job_state is a list, exit_code an object; 24.05+: return_code {"set", "number"}
    text = json.dumps(
        {
            "jobs": [
                {"job_id": 7, "job_state": ["COMPLETED"], "state_reason": "None", "name": "runctl-job-b",
                 "comment": "runctl:job=job-b", "exit_code": {"status": ["SUCCESS"], "return_code": {"set": True,
                                                                                                  "number": 0}}},
                {"job_id": 8, "job_state": ["FAILED"], "exit_code": {"status": "ERROR", "return_code": 3}},
            ]
        }
    )  # fmt: skip
    seven, eight = parse_squeue_json(text)
    assert (seven.state, seven.exit_code, seven.name) == ("COMPLETED", 0, "runctl-job-b")
    assert (eight.state, eight.exit_code) == ("FAILED", 3)


def test_squeue_format_fallback() -> None:
    jobs = parse_squeue_format("12|PENDING|Priority|runctl-job-c|runctl:job=job-c runctl:owner=bo\n")
    assert jobs == [SlurmJob("12", "PENDING", "Priority", "runctl-job-c", "runctl:job=job-c runctl:owner=bo")]


@pytest.mark.parametrize(
    ("slurm_state", "expected", "words"),
    [
        ("PREEMPTED", JobState.INTERRUPTED, "resumable"),
        ("NODE_FAIL", JobState.INTERRUPTED, "lost its nodes"),
        ("TIMEOUT", JobState.FAILED, "TIMEOUT"),
        ("OUT_OF_MEMORY", JobState.FAILED, "OUT_OF_MEMORY"),
    ],
)
def test_slurm_end_states(slurm_state: str, expected: JobState, words: str) -> None:
    # the ranks were stopped by Slurm: their record says cancelled, Slurm says why
    state, _code, message = map_state(SlurmJob("5", slurm_state), {"state": "cancelled", "exit_code": 143})
    assert state is expected and words in message


def test_record_is_the_source_of_exit_codes() -> None:
    record = {"state": "failed", "exit_code": 7, "message": "rank 1: the script exited with code 7", "rank": 1}
    assert map_state(SlurmJob("5", "FAILED", exit_code=1), record) == (JobState.FAILED, 7, record["message"])
    assert map_state(None, record)[:2] == (JobState.FAILED, 7)  # gone from squeue, no accounting
    assert map_state(None, {"state": "running"})[0] is JobState.LOST
    assert map_state(SlurmJob("5", "PENDING", "Priority"), None) == (
        JobState.PENDING,
        None,
        "waiting in Slurm's queue (Priority)",
    )
    assert map_state(SlurmJob("5", "CANCELLED"), {"state": "running"})[0] is JobState.CANCELLED


def test_gres_partition_and_time() -> None:
    assert gres_options("A100", 4, {}, None) == ["--gres=gpu:a100:4"]
    assert gres_options("RTX 4090", 1, {}, "gpu") == ["--partition=gpu", "--gres=gpu:rtx4090:1"]
    assert gres_options("a100", 2, {"A100": "a100_80g"}, None) == ["--gres=gpu:a100_80g:2"]
    assert gres_options("H100", 8, {"H100": "partition:h100"}, "cpu") == ["--partition=h100", "--gres=gpu:8"]
    assert gres_options(None, 1, {}, "debug") == ["--partition=debug"]
    with pytest.raises(UsageError):
        gres_options("!!", 1, {}, None)
    assert time_limit(90 * 60) == "0-01:30:00" and time_limit(1) == "0-00:01:00"
    assert time_limit(3 * 86400 + 61) == "3-00:02:00"


def test_tags_round_trip_through_the_comment() -> None:
    tags = {"runctl:owner": "ann smith", "runctl:job": "job-1", "runctl:instance": "slurm-2"}
    assert tags_from_comment(comment_for(tags)) == {**tags, "runctl:owner": "ann_smith"}


def test_batch_script_is_valid_bash_with_the_options() -> None:
    job = BatchJob(
        job_id="job-1", job_dir="/shared/w/jobs/job-1", project_dir="/shared/w/project", tools_dir="/shared/w/bin",
        script="train.py", args=["--lr", "0.1 0.2"], nodes=2, options=["--gres=gpu:a100:4", "--time=0-01:00:00"],
        comment="runctl:job=job-1", timeout=60,
    )  # fmt: skip
    text = batch_script(job)
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gres=gpu:a100:4" in text and "#SBATCH --time=0-01:00:00" in text
    assert "srun --kill-on-bad-exit=1 --nodes=2 --ntasks-per-node=1" in text
    assert "'0.1 0.2'" in text and "--timeout 60" in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0

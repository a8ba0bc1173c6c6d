"""The Python API (`import runctl`): the same work as the CLI, returning models, printing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runctl

REPO = Path(__file__).resolve().parents[1]


def test_import_runctl_needs_no_click() -> None:
    code = "import sys, runctl; print('click' in sys.modules, 'runctl_core.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow
def test_notebook_style_script(project: Path) -> None:
    """examples/notebook_api.py (the docs' walk-through) run as a user would: from the project directory."""
    shutil_copy = (REPO / "examples" / "notebook_api.py").read_text()
    (project / "notebook_api.py").write_text(shutil_copy)
    proc = subprocess.run(
        [sys.executable, "notebook_api.py"], capture_output=True, text=True, timeout=300, env=os.environ
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("state: succeeded | checkpoints: ")
    assert lines[1].startswith("last log line: done: val_acc=")
    assert lines[2] == "detached job: succeeded"
    assert lines[3].startswith("files: ") and lines[4].startswith("failed as expected: job ")
    assert proc.stderr == ""  # nothing printed by runctl itself


@pytest.mark.slow
def test_run_returns_models_and_prints_nothing(project: Path, capfd: pytest.CaptureFixture[str]) -> None:
    chunks: list[str] = []
    result = runctl.run("examples/train.py", args=["--epochs", "2", "--samples", "200"], on_log=chunks.append)
    assert isinstance(result, runctl.RunResult)
    assert result.job.state == "succeeded" and result.job.exit_code == 0
    assert result.checkpoints and all(Path(p).is_file() for p in result.checkpoints)
    assert "epoch" in "".join(chunks)
    assert "".join(runctl.logs(result.job.job_id)) == "".join(chunks)
    names = {c.name for c in runctl.checkpoints(result.job.job_id)}
    assert "metrics.json" in names
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.slow
def test_run_from_a_job_object_with_overrides(project: Path) -> None:
    job_file = project / "runctl.yaml"
    job_file.write_text("script: examples/train.py\nargs: ['--epochs', '5']\noutputs: out\n")
    job = runctl.Job.from_file(job_file)
    plan = runctl.run(job=job, dry_run=True, timeout="1m")
    assert isinstance(plan, runctl.Plan) and plan.job is not None and plan.job["timeout"] == 60.0
    result = runctl.run(job=job, args=["--epochs", "1", "--samples", "100"])
    assert isinstance(result, runctl.RunResult)
    assert result.outputs_dir == str(project / "out" / result.job.job_id)


@pytest.mark.slow
def test_failure_raises_runctl_errors(project: Path) -> None:
    with pytest.raises(runctl.JobFailed) as failed:
        runctl.run("examples/train.py", args=["--epochs", "2", "--fail-at-epoch", "2"])
    assert failed.value.details["result"]["job"]["state"] == "failed", failed.value.details["result"]["job"]
    with pytest.raises(runctl.UsageError):
        runctl.run("missing.py")
    with pytest.raises(runctl.RunctlError):
        runctl.status("job-nope")


@pytest.mark.slow
def test_create_train_status_terminate_price(project: Path) -> None:
    offers = runctl.price(provider="local")
    assert offers.offers and offers.offers[0].provider == "local"
    instance = runctl.create(provider="local")
    assert isinstance(instance, runctl.Instance) and instance.state.value == "running"
    job = runctl.train(instance, "examples/train.py", args=["--epochs", "1", "--samples", "100"], wait=True)
    assert job.state == "succeeded"
    assert {c.where for c in runctl.checkpoints(job.job_id)} == {"local"}  # collected when it ended
    summary = runctl.status()
    assert summary["summary"]["instances_running"] == 1
    final = runctl.terminate(instance.id)
    assert final.state.value == "terminated"
    assert runctl.status()["summary"]["instances_running"] == 0


@pytest.mark.slow
def test_terminate_collects_and_pull_fetches(project: Path, home: Path) -> None:
    import time

    started = runctl.run("examples/train.py", args=["--epochs", "40", "--sleep", "0.3"], detach=True)
    assert isinstance(started, runctl.RunResult)
    job_id = started.job.job_id
    deadline = time.monotonic() + 120
    while not list(home.glob(f"providers/local/instances/*/jobs/{job_id}/checkpoints/ckpt-*.json")):
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.1)
    stopped = runctl.terminate(job_id)
    assert stopped["state"] == "cancelled" and stopped["instance"]["state"] == "terminated"
    assert any(c.where == "local" and c.name.startswith("ckpt-") for c in runctl.checkpoints(job_id))
    pulled = runctl.pull_checkpoints(job_id, project / "pulled")
    assert pulled and all(p.is_file() and p.parent == project / "pulled" for p in pulled)


@pytest.mark.slow
def test_train_with_an_environment_step(project: Path) -> None:
    (project / "uses_setup.py").write_text("from pathlib import Path\nprint(Path('made-by-setup.txt').read_text())\n")
    instance = runctl.create(provider="local")
    try:
        job = runctl.train(instance, "uses_setup.py", setup=["echo prepared > made-by-setup.txt"], wait=True)
        assert job.state == "succeeded"
        assert "prepared" in "".join(runctl.logs(job.job_id))
    finally:
        runctl.terminate(instance.id)

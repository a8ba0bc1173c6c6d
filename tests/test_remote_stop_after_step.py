"""Stopping a job never cuts its ``--after`` step short (AWS: the final push of checkpoints and the record to S3).

``runner.py stop`` used to SIGKILL the supervisor ``grace + 5`` seconds after its SIGTERM, whatever it was doing:
with a short grace and a slow upload, the final push was killed half-way and the checkpoints it carried were lost.
The supervisor now records ``phase: after`` with a deadline while the step runs, and stop waits for it (bounded)."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

from runctl_core.files import scan_project
from runctl_core.models import JobSpec, JobState
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.transport import LocalTransport

JOB = "import time\nprint('working', flush=True)\ntime.sleep(600)\n"


def test_stop_waits_for_a_slow_after_step(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    marker = tmp_path / "pushed"
    host = JobHost(LocalTransport(), str(tmp_path / "machine"), python=sys.executable)
    host.sync(scan_project(project))
    job_id = f"job-{uuid.uuid4().hex[:6]}"
    # a "final push" that takes longer than grace + 5 s
    after = f"sleep 7 && touch {marker}"
    host.launch(JobSpec(job_id=job_id, script="job.py"), grace=0.5, extra=["--after", after])
    deadline = time.monotonic() + 60
    while host.status(job_id).state is not JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = host.stop(job_id, grace=0.5)
    assert marker.exists(), "stop killed the supervisor while its --after step (the final push) was running"
    assert stopped.state is JobState.CANCELLED
    assert stopped.message != "killed"

"""Calls to the machine through the CLI on the local provider (issues 9 and 15.3): what `run` and `train` cost up to
the job's launch, counted by a CountingTransport around the provider's transport and its in-process (inline)
runner calls. A kept instance's second job with nothing changed costs one call; a stale or corrupt memory of the
machine (HostCache) still gives the right result."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runctl_core.files import scan_project
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.transport import LocalTransport
from runctl_core.testing.counting import CountingTransport, count_inline

SCRIPT = "print('version', open('version.txt').read().strip())\n"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import runctl_local.provider

    log: list[str] = []
    monkeypatch.setattr(
        runctl_local.provider, "LocalTransport", lambda env=None: CountingTransport(LocalTransport(env), log)
    )
    count_inline(monkeypatch, log)
    return log


def _until_launch(calls: list[str]) -> list[str]:
    """The calls up to and including the (last) launch: what the job waited for."""
    end = len(calls) - calls[::-1].index("launch")
    return calls[:end]


def _log(home: Path, job_id: str) -> str:
    found = list(home.rglob(f"jobs/{job_id}/log"))
    deadline = time.monotonic() + 60
    while not found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = list(home.rglob(f"jobs/{job_id}/log"))
    return found[0].read_text()


def _train(invoke: Any, calls: list[str], instance: str) -> str:
    calls.clear()
    result = invoke("-o", "json", "train", instance, "job.py", "--wait")
    assert result.code == 0, result.err
    return str(result.json()["job_id"])


def test_local_calls_first_job_kept_instance_change_stale_corrupt(
    invoke: Any, project: Path, home: Path, calls: list[str]
) -> None:
    (project / "job.py").write_text(SCRIPT)
    (project / "version.txt").write_text("A\n")
    first = invoke("-o", "json", "run", "job.py", "--keep")
    assert first.code == 0, first.err
    assert _until_launch(calls) == ["apply-sync", "launch"]  # fresh sandbox: no manifest read, tools in the sync
    instance = first.json()["instance"]["id"]
    sandbox = next(p for p in home.rglob(instance) if (p / "instance.json").is_file())
    assert not (sandbox / "bin").exists()  # runctl's tools run from its own package: never copied to a sandbox

    job = _train(invoke, calls, instance)  # kept instance, nothing changed: one call starts the job
    assert _until_launch(calls) == ["launch"]
    assert "version A" in _log(home, job)

    (project / "version.txt").write_text("B\n")  # one file changed: the sync and the launch
    job = _train(invoke, calls, instance)
    assert _until_launch(calls) == ["apply-sync", "launch"]
    assert "version B" in _log(home, job)

    # another runctl (no memory of ours) syncs other code to the sandbox: ours is re-synced before it runs
    other = project.parent / "other"
    other.mkdir()
    (other / "job.py").write_text(SCRIPT)
    (other / "version.txt").write_text("OTHER\n")
    JobHost(LocalTransport(), str(sandbox), python=sys.executable).sync(scan_project(other))
    job = _train(invoke, calls, instance)
    assert _until_launch(calls) == ["launch", "read_range", "apply-sync", "launch"]
    assert "version B" in _log(home, job)

    # a corrupt memory is an empty one: the machine is asked, the result is right
    (cache_file,) = home.rglob(f"hosts/{instance}.json")
    cache_file.write_text("{corrupt")
    (project / "version.txt").write_text("C\n")
    job = _train(invoke, calls, instance)
    assert _until_launch(calls)[0] == "read_range"
    assert "version C" in _log(home, job)

    assert invoke("terminate", instance, "--yes").code == 0
    assert not cache_file.exists()  # the provider forgets a machine it terminated

"""A kept machine runs exactly the code and config the laptop synced, even after a job edited them there.

The manifest on the machine records what was SENT (path -> sha256); a job that rewrites a synced file (its own
config, a script) changes what the next job runs, while both the laptop's HostCache and the manifest still say
"unchanged". The machine therefore also records each synced file's size, mtime, ctime and inode right after
writing it, and every command sent with ``--expect-manifest`` compares them with the project's files: a changed
or removed synced file is named back (exit 19), and JobHost re-sends it before the job starts. Files a job
writes that the laptop never synced (outputs, ``__pycache__``) are left alone.

Counted through JobHost over a LocalTransport used as a remote provider would, with a CountingTransport."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from runctl_core.files import scan_project
from runctl_core.models import JobSpec, JobState
from runctl_core.remote.hostcache import HostCache
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.transport import LocalTransport
from runctl_core.testing.counting import CountingTransport

# prints the config it was given, then rewrites it (and writes an output beside it): what the review found
SCRIPT = (
    "import json\n"
    "print('lr', json.load(open('cfg.json'))['lr'])\n"
    "json.dump({'lr': 999}, open('cfg.json', 'w'))\n"
    "open('output.txt', 'w').write('result')\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "t.py").write_text(SCRIPT)
    (root / "cfg.json").write_text(json.dumps({"lr": 0.1}))
    return root


def _host(tmp_path: Path, cache: HostCache | None) -> tuple[JobHost, CountingTransport]:
    transport = CountingTransport(LocalTransport())
    return JobHost(transport, str(tmp_path / "machine"), python=sys.executable, cache=cache), transport


def _cache(tmp_path: Path) -> HostCache:
    return HostCache.for_instance(tmp_path / "state", "i-0123")


def _job(n: int) -> JobSpec:
    return JobSpec(job_id=f"job-{n:06d}", script="t.py")


def _output(host: JobHost, job_id: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = host.status(job_id)
        if status.state.terminal:
            assert status.state is JobState.SUCCEEDED, status
            return Path(host.job_dir(job_id), "log").read_text()
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not end")


def _run(tmp_path: Path, project: Path, n: int, cache: bool = True) -> tuple[str, list[str]]:
    host, transport = _host(tmp_path, _cache(tmp_path) if cache else None)
    host.sync(scan_project(project))
    host.launch(_job(n))
    calls = list(transport.calls)  # sync and launch (the status polls below are the test's)
    return _output(host, _job(n).job_id), calls


def test_a_job_that_rewrites_its_config_does_not_change_the_next_job(tmp_path: Path, project: Path) -> None:
    _cache(tmp_path).mark_new()
    log, calls = _run(tmp_path, project, 1)
    assert "lr 0.1" in log and calls == ["apply-sync", "launch"]
    machine_cfg = tmp_path / "machine" / "project" / "cfg.json"
    assert json.loads(machine_cfg.read_text()) == {"lr": 999}  # the job did rewrite it

    # nothing changed on the laptop: the launch is refused (cfg.json drifted), cfg.json re-sent, then launched
    log, calls = _run(tmp_path, project, 2)
    assert "lr 0.1" in log, log
    assert calls == ["launch", "apply-sync", "launch"]
    # the job's own output, never synced, is left where it wrote it
    assert (tmp_path / "machine" / "project" / "output.txt").read_text() == "result"


def test_nothing_drifted_costs_one_call(tmp_path: Path, project: Path) -> None:
    (project / "t.py").write_text("import json\nprint('lr', json.load(open('cfg.json'))['lr'])\n")
    _cache(tmp_path).mark_new()
    assert _run(tmp_path, project, 1)[1] == ["apply-sync", "launch"]
    log, calls = _run(tmp_path, project, 2)
    assert calls == ["launch"] and "lr 0.1" in log


def test_drift_found_by_a_sync_that_sends_other_files(tmp_path: Path, project: Path) -> None:
    _cache(tmp_path).mark_new()
    _run(tmp_path, project, 1)
    (project / "notes.md").write_text("a new file on the laptop\n")
    log, calls = _run(tmp_path, project, 2)
    assert "lr 0.1" in log, log
    assert calls == ["apply-sync", "apply-sync", "launch"]  # refused (cfg.json drifted), then sent with it


def test_a_removed_synced_file_is_sent_again(tmp_path: Path, project: Path) -> None:
    (project / "t.py").write_text("import json\nprint('lr', json.load(open('cfg.json'))['lr'])\n")
    _cache(tmp_path).mark_new()
    _run(tmp_path, project, 1)
    (tmp_path / "machine" / "project" / "cfg.json").unlink()
    log, calls = _run(tmp_path, project, 2)
    assert "lr 0.1" in log and calls == ["launch", "apply-sync", "launch"]


def test_without_cache_drift_is_found_too(tmp_path: Path, project: Path) -> None:
    log, _ = _run(tmp_path, project, 1, cache=False)
    assert "lr 0.1" in log
    log, calls = _run(tmp_path, project, 2, cache=False)
    assert "lr 0.1" in log, log
    assert calls == ["read_range", "launch", "apply-sync", "launch"]


def test_machine_synced_without_file_records_is_resent_once(tmp_path: Path, project: Path) -> None:
    """A machine synced by an older runctl has a manifest but no file records: nothing can be verified, so every
    synced file is sent again once (then recorded)."""
    (project / "t.py").write_text("import json\nprint('lr', json.load(open('cfg.json'))['lr'])\n")
    _cache(tmp_path).mark_new()
    _run(tmp_path, project, 1)
    (tmp_path / "machine" / "manifest-stats.json").unlink()
    assert _run(tmp_path, project, 2)[1] == ["launch", "apply-sync", "launch"]
    assert _run(tmp_path, project, 3)[1] == ["launch"]

"""Round trips of the remote-job layer (issues 9 and 15.3): JobHost sends the files an operation needs WITH its
command, and remembers (HostCache) what the machine holds, so a kept machine starts a job in ONE call.

Counted through JobHost over a LocalTransport used as a remote provider would (every command a subprocess),
with a CountingTransport recording each call. Before this change: a fresh machine's first job cost 9 calls
(tools check + 3 tool puts + marker, manifest read, tar put, meta put, apply-sync ... then the env put and the
launch), a kept machine's second job 4 (tools check and manifest read, tools check and launch)."""

from __future__ import annotations

import io
import json
import secrets
import sys
import tarfile
import time
from pathlib import Path

import pytest

from runctl_core.files import scan_project
from runctl_core.models import JobSpec, JobState
from runctl_core.remote.hostcache import HostCache
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.transport import LocalTransport
from runctl_core.testing.counting import CountingTransport

SCRIPT = "import os\nprint('version', open('version.txt').read().strip(), os.environ.get('TOKEN', '-'))\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "job.py").write_text(SCRIPT)
    (root / "version.txt").write_text("A\n")
    return root


def _host(tmp_path: Path, cache: HostCache | None) -> tuple[JobHost, CountingTransport]:
    transport = CountingTransport(LocalTransport())
    return JobHost(transport, str(tmp_path / "machine"), python=sys.executable, cache=cache), transport


def _cache(tmp_path: Path) -> HostCache:
    return HostCache.for_instance(tmp_path / "state", "i-0123")


def _output(host: JobHost, job_id: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = host.status(job_id)
        if status.state.terminal:
            assert status.state is JobState.SUCCEEDED, status
            return Path(host.job_dir(job_id), "log").read_text()
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not end")


# job ids unique on this machine: a job's end sweeps every process carrying its RUNCTL_JOB_ID, so two tests (or
# two sessions' test runs) that reused an id would end each other's jobs
_PREFIX = ["job-"]


@pytest.fixture(autouse=True)
def _unique_job_ids() -> None:
    _PREFIX[0] = f"job-{secrets.token_hex(4)}"


def _id(n: int) -> str:
    return f"{_PREFIX[0]}{n:02d}"


def _job(n: int, **kw: object) -> JobSpec:
    return JobSpec(job_id=_id(n), script="job.py", **kw)  # type: ignore[arg-type]


def test_fresh_machine_then_kept_machine(tmp_path: Path, project: Path) -> None:
    cache = _cache(tmp_path)
    cache.mark_new()  # what a provider does right after creating the machine
    host, transport = _host(tmp_path, cache)
    host.sync(scan_project(project))
    host.launch(_job(1, env={"TOKEN": "s3cret-value"}))
    assert transport.calls == ["apply-sync", "launch"]  # the tools rode in the sync's bundle
    assert "version A s3cret-value" in _output(host, _id(1))

    # the secret travelled in a 0600 file inside the bundle, never on a command line
    argv, stdin = transport.commands[1]
    assert not any("s3cret-value" in arg for arg in argv)
    with tarfile.open(fileobj=io.BytesIO(stdin or b"")) as bundle:
        member = bundle.getmember("env.json")
        assert member.mode == 0o600 and not any(m.name.startswith("bin/") for m in bundle.getmembers())

    # a second job on the kept machine, nothing changed, a new command (new JobHost, the cache from disk): 1 call
    host, transport = _host(tmp_path, _cache(tmp_path))
    assert host.sync(scan_project(project)).files_sent == 0
    host.launch(_job(2))
    assert transport.calls == ["launch"]
    assert "version A" in _output(host, _id(2))

    # one file changed: the sync (with the changed file) and the launch
    (project / "version.txt").write_text("B\n")
    host, transport = _host(tmp_path, _cache(tmp_path))
    assert host.sync(scan_project(project)).files_sent == 1
    host.launch(_job(3))
    assert transport.calls == ["apply-sync", "launch"]
    assert "version B" in _output(host, _id(3))


def test_without_cache_still_correct(tmp_path: Path, project: Path) -> None:
    host, transport = _host(tmp_path, None)
    host.sync(scan_project(project))
    host.launch(_job(1, setup=["echo setting-up"]))
    assert transport.calls == ["read_range", "apply-sync", "launch"]
    log = _output(host, _id(1))
    assert "setting-up" in log and "version A" in log
    host, transport = _host(tmp_path, None)
    host.sync(scan_project(project))
    host.launch(_job(2))
    assert transport.calls == ["read_range", "launch"]


def test_stale_cache_another_sync_changed_the_machine(tmp_path: Path, project: Path) -> None:
    cache = _cache(tmp_path)
    cache.mark_new()
    host, _ = _host(tmp_path, cache)
    host.sync(scan_project(project))

    # another laptop (no memory of ours) syncs a different project to the same machine
    other = tmp_path / "other"
    other.mkdir()
    (other / "job.py").write_text(SCRIPT)
    (other / "version.txt").write_text("OTHER\n")
    _host(tmp_path, None)[0].sync(scan_project(other))

    # our memory says "unchanged": the sync is skipped, the launch is refused by the machine, runctl re-reads
    # the machine's manifest, sends the differences and launches: our code runs, never the other laptop's
    host, transport = _host(tmp_path, _cache(tmp_path))
    assert host.sync(scan_project(project)).files_sent == 0
    host.launch(_job(1))
    assert transport.calls == ["launch", "read_range", "apply-sync", "launch"]
    assert "version A" in _output(host, _id(1))
    assert list(Path(host.root, ".incoming").iterdir()) == []  # nothing staged is left behind, refused or not

    # and a changed file while the machine holds another sync: the sync is refused, then redone
    _host(tmp_path, None)[0].sync(scan_project(other))
    (project / "version.txt").write_text("C\n")
    host, transport = _host(tmp_path, _cache(tmp_path))
    host.sync(scan_project(project))
    host.launch(_job(2))
    assert transport.calls == ["apply-sync", "read_range", "apply-sync", "launch"]
    assert "version C" in _output(host, _id(2))
    assert sorted(p.name for p in Path(host.project_dir).iterdir()) == ["job.py", "version.txt"]


@pytest.mark.parametrize("garbage", [b"{not json", b"[1, 2]", b'{"manifest": {"job.py": 3}, "tools": 7}', b"\xff\xfe"])
def test_corrupt_cache_file_is_an_empty_memory(tmp_path: Path, project: Path, garbage: bytes) -> None:
    cache = _cache(tmp_path)
    cache.mark_new()
    host, _ = _host(tmp_path, cache)
    host.sync(scan_project(project))
    cache.path.write_bytes(garbage)
    (project / "version.txt").write_text("D\n")
    host, transport = _host(tmp_path, _cache(tmp_path))
    host.sync(scan_project(project))
    host.launch(_job(1))
    assert transport.calls[0] == "read_range"  # the memory was unusable: the machine is asked
    assert "version D" in _output(host, _id(1))
    assert json.loads(_cache(tmp_path).path.read_text())["manifest"] == scan_project(project).manifest()
    assert (_cache(tmp_path).path.stat().st_mode & 0o777) == 0o600


def test_tools_gone_from_the_machine_are_sent_again(tmp_path: Path, project: Path) -> None:
    cache = _cache(tmp_path)
    cache.mark_new()
    host, _ = _host(tmp_path, cache)
    host.sync(scan_project(project))
    import shutil

    shutil.rmtree(Path(host.root, "bin"))  # e.g. the machine's disk was replaced under the same id
    host, transport = _host(tmp_path, _cache(tmp_path))
    host.sync(scan_project(project))
    host.launch(_job(1))
    assert transport.calls == ["launch", "launch"]  # refused (no tools), then with them
    assert "version A" in _output(host, _id(1))


def test_resume_checkpoints_travel_in_the_launch(tmp_path: Path, project: Path) -> None:
    resume = tmp_path / "resume"
    (resume / "sub").mkdir(parents=True)
    (resume / "a.ckpt").write_bytes(b"A" * 1000)
    (resume / "sub" / "b.ckpt").write_bytes(b"B")
    (project / "job.py").write_text(
        "import os\nd = os.environ['RUNCTL_CHECKPOINT_DIR']\n"
        "print(sorted(os.path.relpath(os.path.join(b, n), d) for b, _, ns in os.walk(d) for n in ns))\n"
    )
    cache = _cache(tmp_path)
    cache.mark_new()
    host, transport = _host(tmp_path, cache)
    host.sync(scan_project(project))
    host.launch(_job(1, resume_dir=str(resume)))
    assert transport.calls == ["apply-sync", "launch"]  # before: one put per checkpoint file
    assert "['a.ckpt', 'sub/b.ckpt']" in _output(host, _id(1))


def test_cache_file_per_instance_and_clear(tmp_path: Path) -> None:
    state = tmp_path / "state"
    a, b = HostCache.for_instance(state, "i-a"), HostCache.for_instance(state, "../../etc/passwd")
    a.mark_new()
    b.mark_new()
    assert a.path != b.path and b.path.parent == state / "hosts"
    assert HostCache.for_instance(state, "i-a") is a  # one object per file in a process
    a.clear()
    assert not a.path.exists() and HostCache.for_instance(state, "i-a").manifest is None

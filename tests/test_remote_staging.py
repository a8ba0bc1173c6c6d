"""What a provider's ``stage`` hook relies on in the remote-job layer: ``JobHost.sync_payload`` is exactly the bundle
the next ``sync`` sends (deterministic bytes, so a transport can recognise a bundle it uploaded while the machine
booted), and files keep their modes through a bundle (the sync contract: "keep the files' modes")."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from runctl_core.files import scan_project
from runctl_core.remote.hostcache import HostCache
from runctl_core.remote.jobs import JobHost
from runctl_core.remote.transport import LocalTransport
from runctl_core.testing.counting import CountingTransport


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "data.txt").write_text("data\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "train.py").chmod(0o644)
    (root / "pkg" / "data.txt").chmod(0o640)
    (root / "run.sh").chmod(0o755)
    return root


def test_sync_payload_is_the_bundle_the_next_sync_sends(tmp_path: Path) -> None:
    project = scan_project(_project(tmp_path))
    cache = HostCache.for_instance(tmp_path / "state", "i-0stage")
    cache.mark_new()  # a machine the provider just created: nothing there
    transport = CountingTransport(LocalTransport())
    host = JobHost(transport, str(tmp_path / "machine"), python=sys.executable, cache=cache)
    staged = host.sync_payload(project)
    assert staged and host.sync_payload(project) == staged  # built twice: the same bytes
    assert transport.calls == []  # computed on the laptop, nothing asked of the machine
    result = host.sync(project)
    assert result.files_sent == 3 and transport.calls == ["apply-sync"]
    assert transport.commands[0][1] == staged  # what sync sent is what stage could have uploaded
    assert host.sync_payload(project) == b""  # synced: the next sync sends nothing


def test_sync_payload_is_empty_when_the_machine_is_unknown(tmp_path: Path) -> None:
    project = scan_project(_project(tmp_path))
    unknown = JobHost(LocalTransport(), str(tmp_path / "machine"), python=sys.executable)
    assert unknown.sync_payload(project) == b""  # no memory of the machine: sync must ask it first
    forgotten = HostCache.for_instance(tmp_path / "state", "i-0other")
    cached = JobHost(LocalTransport(), str(tmp_path / "machine2"), python=sys.executable, cache=forgotten)
    assert cached.sync_payload(project) == b""


def test_files_keep_their_modes_through_a_bundle(tmp_path: Path) -> None:
    root = _project(tmp_path)
    cache = HostCache.for_instance(tmp_path / "state", "i-0modes")
    cache.mark_new()
    host = JobHost(LocalTransport(), str(tmp_path / "machine"), python=sys.executable, cache=cache)
    host.sync(scan_project(root))
    synced = tmp_path / "machine" / "project"
    modes = {p: stat.S_IMODE((synced / p).stat().st_mode) for p in ("train.py", "pkg/data.txt", "run.sh")}
    assert modes == {"train.py": 0o644, "pkg/data.txt": 0o640, "run.sh": 0o755}

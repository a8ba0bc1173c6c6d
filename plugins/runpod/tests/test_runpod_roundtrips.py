"""Issue 15.3 for RunPod: sequential round trips between "pod accepted" and "job started", counted by the
stand-in (see roundtrips.py). The figures are printed (run with -s); the bounds guard the count, not time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from roundtrips import measure

from runctl_core.testing.cli import isolate, runctl_executable


def test_round_trips_from_pod_accepted_to_job_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    paths = measure(tmp_path, runctl_executable(), dict(os.environ))
    first, second = paths["accepted -> job started"], paths["2nd job on kept instance"]
    print(f"\nRunPod round trips, pod accepted -> job started: {len(first)}: {first}")
    print(f"second job on the kept pod, command -> job started: {len(second)}: {second}")
    # before issue 15.3: 17 (2 boot polls; readiness + timer 3; sync 5; train 7); through the core's remote-job
    # layer before it sent files with its commands: 10 and 4. Now: the boot polls + first contact (directory,
    # timer) + sync (the changed files and runctl's tools in one command) + launch (env file in it); a kept pod
    # whose project did not change: the launch alone (the HostCache knows what the pod holds)
    assert len(first) - first.count("api:getPod") == 3, first
    assert second == ["ssh:launch"]  # before: 11 (two pod lookups, one SFTP session per file), then 4

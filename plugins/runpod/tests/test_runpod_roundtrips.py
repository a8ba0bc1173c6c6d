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
    # before issue 15.3: 17 (2 boot polls; readiness + timer 3; sync 5; train 7). Now, through the core's
    # remote-job layer (which adds the environment step): 2 boot polls + first contact (directory, tools, timer)
    # + sync (manifest, tar, meta, apply) + launch (tools check, env file, launch)
    assert len(first) - first.count("api:getPod") <= 8
    assert len(second) <= 4  # before: 11 (two pod lookups, one SFTP session per file)

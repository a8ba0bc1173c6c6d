"""Fixtures: one real Slurm test cluster (munged, slurmctld, two slurmd) and an SSH login node, per session."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from slurm_cluster import ClusterUnavailable, SlurmCluster, start_cluster


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The running cluster. In CI (CI=true) a cluster that cannot start fails the tests with the reason;
    elsewhere they are skipped with it (install: apt-get install -y slurm-wlm munge openssh-server)."""
    # a short path: munge's and slurmd's unix sockets must fit in sockaddr_un (108 bytes)
    root = Path(tempfile.mkdtemp(prefix="runctl-slurm-"))
    try:
        cluster = start_cluster(root)
    except (ClusterUnavailable, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        message = f"the Slurm test cluster could not start: {exc}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

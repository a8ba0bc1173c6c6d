"""The test cluster itself behaves like a two-node Slurm cluster (what every other Slurm test relies on)."""

from __future__ import annotations

import pytest
from slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slow


def test_two_nodes_run_one_task_each(slurm_cluster: SlurmCluster) -> None:
    result = slurm_cluster.run(
        "srun", "--nodes=2", "--ntasks-per-node=1", "sh", "-c", "echo $SLURM_NODEID $SLURMD_NODENAME", timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:2]) == ["0 node1", "1 node2"]


def test_login_node_reaches_the_cluster_over_ssh(slurm_cluster: SlurmCluster) -> None:
    import subprocess

    ssh = [
        "ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={slurm_cluster.known_hosts}",
        "-i", str(slurm_cluster.ssh_key), "-p", str(slurm_cluster.ssh_port),
        f"{slurm_cluster.user}@127.0.0.1", "sinfo", "-h", "-o", "%P",
    ]  # fmt: skip
    result = subprocess.run(ssh, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{slurm_cluster.partition}*"

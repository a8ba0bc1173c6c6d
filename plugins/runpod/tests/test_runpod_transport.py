"""RunPod reaches its pods through the core's SSH transport (runctl_core.remote.ssh, policy "pinned"), against a
stand-in pod (bare environment). The transport's own contract is tested in tests/test_ssh_transport.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from runpod_standin import StandIn

from runctl_core.remote.ssh import SshTarget, SshTransport, generate_key_pair
from runctl_core.remote.transport import Transport
from runctl_core.testing.cli import CliResult


@pytest.fixture
def transport(standin: StandIn, tmp_path: Path) -> SshTransport:
    key = tmp_path / "key"
    public = generate_key_pair(key, "t")
    pod = standin.create_pod(
        {
            "gpuTypeId": "NVIDIA GeForce RTX 4090",
            "cloudType": "SECURE",
            "ports": "22/tcp",
            "env": {"PUBLIC_KEY": public},
            "name": "runctl-t",
        },
        None,
    )
    assert pod.ssh_port
    return SshTransport(SshTarget("127.0.0.1", pod.ssh_port, "root", key_file=key, host_keys="pinned"))


def test_ssh_transport_follows_the_protocol(transport: SshTransport, tmp_path: Path, standin: StandIn) -> None:
    assert isinstance(transport, Transport)
    home = next(iter(standin.pods.values())).sandbox
    ran = transport.run(
        ["sh", "-c", 'printf "%s|%s|" "$X" "$(pwd)"; cat; echo oops >&2; exit 3'],
        env={"X": "a b"},
        cwd=str(home),
        stdin=b"in\xff",
    )
    assert ran.exit_code == 3 and ran.stdout == f"a b|{home}|in".encode() + b"\xff" and b"oops" in ran.stderr
    assert transport.run(["printenv", "RUNPOD_POD_ID"]).exit_code == 1  # no container environment over SSH
    target = f"{home}/d/e/f.bin"
    transport.put(b"0123456789", target, mode=0o600)
    assert (home / "d/e/f.bin").stat().st_mode & 0o777 == 0o600
    assert transport.read_range(target, 3, 4) == b"3456" and transport.read_range(target, 20, 4) == b""
    with pytest.raises(FileNotFoundError):
        transport.read_range(f"{home}/missing", 0, 1)
    local = tmp_path / "copy.bin"
    transport.get(target, local)
    assert local.read_bytes() == b"0123456789"
    with pytest.raises(FileNotFoundError):
        transport.get(f"{home}/missing", tmp_path / "x")
    assert [f.path for f in transport.walk(f"{home}/d")] == ["e/f.bin"] and transport.walk(f"{home}/none") == []
    transport.remove(f"{home}/d")
    transport.remove(f"{home}/d")  # missing: nothing happens
    assert not (home / "d").exists()


def test_a_stale_address_now_serving_another_pod_falls_back_to_the_api(
    cli: Callable[..., CliResult], standin: StandIn, project: Path
) -> None:
    """Pod addresses are reused: the last address runctl saw for pod A may answer as pod B (which refuses A's
    key, or shows another host key). That address is only a guess: runctl then asks the API where A is."""
    a = cli("-o", "id", "create", "--gpu", "RTX 4090", "--wait").out.strip()
    b = cli("-o", "id", "create", "--gpu", "RTX 4090", "--wait").out.strip()
    record = Path(os.environ["RUNCTL_HOME"]) / "providers" / "runpod" / "pods" / f"{a}.json"
    data = json.loads(record.read_text())
    assert data["ssh"] == ["127.0.0.1", standin.pods[a].ssh_port]
    data["ssh"] = ["127.0.0.1", standin.pods[b].ssh_port]  # A moved; B now listens at A's old address
    record.write_text(json.dumps(data))
    synced = cli("-o", "json", "sync", a)
    assert synced.code == 0, synced.err
    assert json.loads(record.read_text())["ssh"] == ["127.0.0.1", standin.pods[a].ssh_port]
    assert (standin.pods[a].sandbox / "runctl" / "project" / "examples" / "train.py").is_file()
    assert not (standin.pods[b].sandbox / "runctl" / "project").exists()
    for pod in (a, b):
        assert cli("terminate", pod, "--yes").code == 0

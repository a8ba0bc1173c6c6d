"""Fixtures: moto's S3 server (Lyceum storage) and the Lyceum stand-in, both on 127.0.0.1; dummy credentials only."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lyceum_standin import API_KEY, StandIn, free_port

from runctl_core.models import ProviderContext
from runctl_core.plugins import Provider, load_provider
from runctl_core.retry import RetryPolicy

# never reach the instance metadata service (boto3 gets explicit endpoints and dummy keys everywhere here)
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def standin(tmp_path: Path, s3_endpoint: str) -> Iterator[StandIn]:
    bucket = f"lyceum-{uuid.uuid4().hex[:12]}"
    stand = StandIn(
        api_key=API_KEY,
        work_dir=tmp_path / "standin",
        mount_dir=tmp_path / "mnt-s3",
        s3_endpoint=s3_endpoint,
        bucket=bucket,
    )
    stand.s3().create_bucket(Bucket=bucket)
    stand.start()
    try:
        yield stand
    finally:
        stand.stop()


@pytest.fixture
def lyceum_settings(standin: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Env with the dummy key (HOME moved so no real ~/.lyceum is read) and the [providers.lyceum] table."""
    for name in ("LYCEUM_ORG", "LYCEUM_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LYCEUM_API_KEY", API_KEY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return {
        "base_url": standin.url,
        "storage_mount": str(standin.mount_dir),
        "poll_interval": 0.05,
        "retry_base_delay": 0.01,
        "checkpoint_sync_interval": 0.2,
        "grace_period": 1.0,
        "stream_timeout": 5.0,
        "stream_reconnects": 3,
    }


@pytest.fixture
def make_provider(tmp_path: Path) -> Any:
    def make(settings: dict[str, Any], owner: str = "tester") -> Provider:
        home = tmp_path / "runctl-home"
        ctx = ProviderContext(
            provider="lyceum", state_dir=home / "providers" / "lyceum", settings=settings, owner=owner
        )
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
        return load_provider("lyceum", ctx, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))

    return make


@pytest.fixture(autouse=True)
def _stop_log_followers() -> Iterator[None]:
    yield
    from runctl_lyceum import logcache

    logcache.stop_followers()

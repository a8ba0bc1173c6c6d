"""What runctl keeps about Lyceum under ``ctx.state_dir`` (no secrets):

* ``instances/<id>.json``: the reservation (hardware profile, tags, the executions started on it);
* ``instances/<id>/project/`` + ``manifest.json``: the project as last synced (sent with every execution);
* ``executions/<execution id>/``: ``stream.json`` (the streaming URL, mode 0600), ``log`` (the output as
  received, so that byte offsets stay stable), ``meta.json`` (whether the log is complete, the return code).

Records are written with the core's atomic JSON writer (``runctl_core.remote.records``), never seen half-written.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runctl_core.remote.records import read_json
from runctl_core.remote.records import write_json_atomic as write_json
from runctl_lyceum.models import Reservation

_ID = re.compile(r"^lyc-[0-9a-f]{12}$")
_EXEC = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.instances = state_dir / "instances"
        self.executions = state_dir / "executions"

    @staticmethod
    def new_id() -> str:
        return f"lyc-{uuid.uuid4().hex[:12]}"

    # -------------------------------------------------------------------------------- reservations

    def _record_path(self, instance_id: str) -> Path | None:
        return self.instances / f"{instance_id}.json" if _ID.match(instance_id) else None

    def load(self, instance_id: str) -> Reservation | None:
        path = self._record_path(instance_id)
        data = read_json(path) if path else None
        return Reservation.model_validate(data) if isinstance(data, dict) else None

    def save(self, reservation: Reservation) -> None:
        path = self._record_path(reservation.id)
        assert path is not None
        write_json(path, reservation.model_dump(mode="json"))

    def all(self) -> Iterator[Reservation]:
        for path in sorted(self.instances.glob("lyc-*.json")):
            record = self.load(path.stem)
            if record is not None:
                yield record

    def project_dir(self, instance_id: str) -> Path:
        return self.instances / instance_id / "project"

    def manifest(self, instance_id: str) -> dict[str, dict[str, Any]]:
        data = read_json(self.instances / instance_id / "manifest.json")
        return data if isinstance(data, dict) else {}

    def save_manifest(self, instance_id: str, manifest: dict[str, dict[str, Any]]) -> None:
        write_json(self.instances / instance_id / "manifest.json", manifest)

    def drop_project(self, instance_id: str) -> None:
        shutil.rmtree(self.instances / instance_id, ignore_errors=True)

    # -------------------------------------------------------------------------------- executions

    def execution_dir(self, execution_id: str) -> Path:
        if not _EXEC.match(execution_id):
            raise ValueError(f"unexpected execution id {execution_id!r}")
        return self.executions / execution_id

    def save_stream_url(self, execution_id: str, url: str | None) -> None:
        write_json(self.execution_dir(execution_id) / "stream.json", {"streaming_url": url}, mode=0o600)

    def stream_url(self, execution_id: str) -> str | None:
        data = read_json(self.execution_dir(execution_id) / "stream.json")
        value = data.get("streaming_url") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

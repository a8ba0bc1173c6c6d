"""The ``intents`` table: an intent is written before any call that may create something paid and completed
after it; a claim marks an instance as in use by a live process."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runctl_core.errors import StateError
from runctl_core.state.database import Database, _now
from runctl_core.state.processes import process_start
from runctl_core.state.rows import IntentRow


class IntentsTable(Database):
    def begin_intent(self, provider: str, kind: str, job_id: str | None, spec: dict[str, Any]) -> str:
        intent_id = f"intent-{secrets.token_hex(6)}"
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO intents(id, provider, kind, job_id, status, pid, pid_start, spec, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    intent_id,
                    provider,
                    kind,
                    job_id,
                    "pending",
                    os.getpid(),
                    process_start(os.getpid()),
                    json.dumps(spec, default=str),
                    _now(),
                    _now(),
                ),
            )
            self._event(cur, f"intent.{kind}", provider, job_id, None, {"intent": intent_id})
        return intent_id

    def finish_intent(self, intent_id: str, *, resource_id: str | None = None, error: str | None = None) -> None:
        status = "failed" if error else "done"
        with self.transaction() as cur:
            cur.execute(
                "UPDATE intents SET status = ?, resource_id = ?, error = ?, updated_at = ? WHERE id = ?",
                (status, resource_id, error, _now(), intent_id),
            )

    @contextmanager
    def claim(self, provider: str, instance_id: str, job_id: str | None, what: str) -> Iterator[str]:
        """Mark ``instance_id`` as being used by this process (e.g. collecting a finished job's checkpoints
        before terminating it): ``runctl resources`` classes it in-use while this process lives."""
        intent_id = self.begin_intent(provider, "use", job_id, {"instance": instance_id, "what": what})
        try:
            yield intent_id
        finally:
            try:
                self.finish_intent(intent_id, resource_id=instance_id)
            except StateError:
                pass  # left pending: its process ends soon and the claim dies with it

    def claims(self, provider: str, instance_id: str) -> list[IntentRow]:
        """Pending "use" claims on an instance (their processes may be dead: check with :func:`process_alive`)."""
        return [
            intent
            for intent in self.pending_intents()
            if intent.kind == "use" and intent.provider == provider and intent.spec.get("instance") == instance_id
        ]

    def pending_intents(self) -> list[IntentRow]:
        rows = self._read("SELECT * FROM intents WHERE status = 'pending' ORDER BY created_at")
        return [self._intent(r) for r in rows]

    def intent(self, intent_id: str) -> IntentRow | None:
        rows = self._read("SELECT * FROM intents WHERE id = ?", (intent_id,))
        return self._intent(rows[0]) if rows else None

    @staticmethod
    def _intent(row: sqlite3.Row) -> IntentRow:
        return IntentRow(**{**dict(row), "spec": json.loads(row["spec"])})

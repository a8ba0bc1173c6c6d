"""The ``instances`` table: every instance a provider created, as the provider last described it."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from runctl_core.models import Instance
from runctl_core.state.database import Database, _now
from runctl_core.state.rows import InstanceRow


class InstancesTable(Database):
    def save_instance(
        self,
        instance: Instance,
        *,
        job_id: str | None = None,
        intent_id: str | None = None,
        keep: bool | None = None,
        billing: str = "instance",
    ) -> None:
        """Insert or update an instance record (its state, price and details as the provider last said)."""
        ended = _now() if not instance.state.alive else None
        record = instance.model_dump_json()
        with self.transaction() as cur:
            existing = cur.execute(
                "SELECT ended_at FROM instances WHERE provider = ? AND id = ?", (instance.provider, instance.id)
            ).fetchone()
            if existing is None:
                created = (instance.created_at or datetime.now(timezone.utc)).isoformat()
                cur.execute(
                    "INSERT INTO instances(provider, id, state, job_id, intent_id, hourly_price, created_at, ended_at,"
                    " keep, billing, record) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        instance.provider,
                        instance.id,
                        instance.state.value,
                        job_id,
                        intent_id,
                        instance.hourly_price,
                        created,
                        ended,
                        int(bool(keep)),
                        billing,
                        record,
                    ),
                )
                self._event(
                    cur,
                    "instance.created",
                    instance.provider,
                    job_id,
                    instance.id,
                    {"state": instance.state.value, "hourly_price": instance.hourly_price},
                )
            else:
                cur.execute(
                    "UPDATE instances SET state = ?, record = ?, hourly_price = COALESCE(?, hourly_price),"
                    " ended_at = COALESCE(ended_at, ?), job_id = COALESCE(?, job_id),"
                    " keep = COALESCE(?, keep) WHERE provider = ? AND id = ?",
                    (
                        instance.state.value,
                        record,
                        instance.hourly_price,
                        ended,
                        job_id,
                        None if keep is None else int(keep),
                        instance.provider,
                        instance.id,
                    ),
                )
                if ended and existing["ended_at"] is None:
                    self._event(
                        cur, "instance.ended", instance.provider, job_id, instance.id, {"state": instance.state.value}
                    )

    def instance(self, instance_id: str, provider: str | None = None) -> InstanceRow | None:
        query = "SELECT * FROM instances WHERE id = ?" + (" AND provider = ?" if provider else "")
        rows = self._read(query, (instance_id, provider) if provider else (instance_id,))
        return self._instance(rows[0]) if rows else None

    def instances(self, *, alive_only: bool = False, provider: str | None = None) -> list[InstanceRow]:
        clauses, params = [], []
        if alive_only:
            clauses.append("ended_at IS NULL")
        if provider:
            clauses.append("provider = ?")
            params.append(provider)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._read(f"SELECT * FROM instances{where} ORDER BY created_at", params)
        return [self._instance(r) for r in rows]

    @staticmethod
    def _instance(row: sqlite3.Row) -> InstanceRow:
        instance = Instance.model_validate_json(row["record"])
        return InstanceRow(
            instance=instance,
            job_id=row["job_id"],
            intent_id=row["intent_id"],
            created_at=datetime.fromisoformat(row["created_at"]),
            ended_at=datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
            keep=bool(row["keep"]),
            billing=row["billing"],
        )

    def instances_for_job(self, job_id: str) -> list[InstanceRow]:
        rows = self._read("SELECT * FROM instances WHERE job_id = ? ORDER BY created_at", (job_id,))
        return [self._instance(r) for r in rows]

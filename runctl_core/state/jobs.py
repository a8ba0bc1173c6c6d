"""The ``jobs`` table: every job with its spec (environment variable names only, never values), its last
status and its cost. A terminal state is final."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import datetime

from runctl_core.models import JobSpec, JobState, JobStatus
from runctl_core.state.database import Database, _now
from runctl_core.state.rows import JobRow


class JobsTable(Database):
    def new_job_id(self) -> str:
        while True:
            candidate = f"job-{secrets.token_hex(3)}"
            if not self._read("SELECT 1 FROM jobs WHERE id = ?", (candidate,)):
                return candidate

    def create_job(
        self, spec: JobSpec, provider: str, *, parent_id: str | None = None, attempt: int = 1, keep: bool = False
    ) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO jobs(id, provider, state, script, spec, parent_id, attempt, keep, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    spec.job_id,
                    provider,
                    JobState.PENDING.value,
                    spec.script,
                    spec.model_copy(update={"env": dict.fromkeys(spec.env, "")}).model_dump_json(),  # names only
                    parent_id,
                    attempt,
                    int(keep),
                    _now(),
                ),
            )
            self._event(
                cur,
                "job.created",
                provider,
                spec.job_id,
                None,
                {"script": spec.script, "attempt": attempt, "parent": parent_id},
            )

    def update_job(
        self,
        job_id: str,
        *,
        instance_id: str | None = None,
        status: JobStatus | None = None,
        state: JobState | None = None,
        message: str | None = None,
        outputs_dir: str | None = None,
        cost: float | None = None,
    ) -> None:
        """Record what is known about a job. A terminal state is final: later reports cannot move it back."""
        with self.transaction() as cur:
            row = cur.execute("SELECT state, provider FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            if status is not None and JobState(row["state"]).terminal and not status.state.terminal:
                status = None
            new_state = status.state if status else state
            sets: list[str] = []
            params: list[object] = []
            if instance_id is not None:
                sets.append("instance_id = ?")
                params.append(instance_id)
            if status is not None:
                sets += ["status = ?", "exit_code = ?"]
                params += [status.model_dump_json(), status.exit_code]
                if message is None and status.message:
                    message = status.message
            if new_state is not None and not JobState(row["state"]).terminal:
                sets.append("state = ?")
                params.append(new_state.value)
                if new_state.terminal:
                    sets.append("ended_at = ?")
                    params.append(_now())
            if message is not None:
                sets.append("message = ?")
                params.append(message)
            if outputs_dir is not None:
                sets.append("outputs_dir = ?")
                params.append(outputs_dir)
            if cost is not None:
                sets.append("cost = ?")
                params.append(cost)
            if not sets:
                return
            cur.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*params, job_id))
            if new_state is not None and new_state.value != row["state"] and not JobState(row["state"]).terminal:
                self._event(
                    cur,
                    f"job.{new_state.value}",
                    row["provider"],
                    job_id,
                    instance_id,
                    {"exit_code": status.exit_code if status else None},
                )

    def job(self, job_id: str) -> JobRow | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._job(rows[0]) if rows else None

    def jobs(
        self, *, active_only: bool = False, instance_id: str | None = None, since: datetime | None = None
    ) -> list[JobRow]:
        clauses, params = [], []
        if active_only:
            clauses.append("state IN ('pending', 'running')")
        if instance_id:
            clauses.append("instance_id = ?")
            params.append(instance_id)
        if since:
            clauses.append("created_at >= ?")
            params.append(since.isoformat())
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._read(f"SELECT * FROM jobs{where} ORDER BY created_at", params)
        return [self._job(r) for r in rows]

    def outputs_dirs(self) -> list[str]:
        """Every directory checkpoints were collected into, once each (one query: no job record is parsed, so a
        long history costs a run nothing)."""
        rows = self._read("SELECT DISTINCT outputs_dir FROM jobs WHERE outputs_dir IS NOT NULL AND outputs_dir != ''")
        return [str(r[0]) for r in rows]

    @staticmethod
    def _job(row: sqlite3.Row) -> JobRow:
        return JobRow(
            id=row["id"],
            provider=row["provider"],
            instance_id=row["instance_id"],
            state=JobState(row["state"]),
            exit_code=row["exit_code"],
            spec=JobSpec.model_validate_json(row["spec"]),
            status=JobStatus.model_validate_json(row["status"]) if row["status"] else None,
            parent_id=row["parent_id"],
            attempt=row["attempt"],
            keep=bool(row["keep"]),
            outputs_dir=row["outputs_dir"],
            cost=row["cost"],
            created_at=datetime.fromisoformat(row["created_at"]),
            ended_at=datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
            message=row["message"],
        )

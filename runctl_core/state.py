"""The state store: one SQLite database (WAL) under ``RUNCTL_HOME`` with instances, jobs, intents and an
event journal. Safe for many runctl processes at once: every write is one ``BEGIN IMMEDIATE`` transaction.

An *intent* is written before any call that may create something paid, and completed (with the resource id)
or failed after it. An intent still ``pending`` after its process died means "something may exist at the
provider that we never heard back about": ``runctl resources`` finds it by its ``runctl:intent`` tag.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runctl_core import signals
from runctl_core.errors import StateError, StateLocked
from runctl_core.models import Instance, JobSpec, JobState, JobStatus

SCHEMA_VERSION = 3
# version -> statements that bring a database of the version before it up to this one
MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE instances ADD COLUMN billing TEXT NOT NULL DEFAULT 'instance'",
        "ALTER TABLE jobs ADD COLUMN cost REAL",
    ],
    3: ["ALTER TABLE intents ADD COLUMN pid_start TEXT"],
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    job_id TEXT,
    intent_id TEXT,
    hourly_price REAL,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    keep INTEGER NOT NULL DEFAULT 0,
    billing TEXT NOT NULL DEFAULT 'instance',
    record TEXT NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    instance_id TEXT,
    state TEXT NOT NULL,
    exit_code INTEGER,
    script TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT,
    parent_id TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    keep INTEGER NOT NULL DEFAULT 0,
    outputs_dir TEXT,
    cost REAL,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS intents (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT,
    status TEXT NOT NULL,
    resource_id TEXT,
    pid INTEGER,
    pid_start TEXT,
    spec TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    provider TEXT,
    job_id TEXT,
    instance_id TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_instance ON jobs(provider, instance_id);
CREATE INDEX IF NOT EXISTS intents_status ON intents(status);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id);
"""


BUSY_SLICE_MS = 50  # sqlite waits this long per try for a lock; runctl's own loop says and bounds the rest
LOCK_NOTICE_AFTER = 2.0  # seconds of waiting for the write lock before saying so


def lock_timeout() -> float:
    """Seconds to wait for another runctl's write lock before giving up: ``RUNCTL_LOCK_TIMEOUT``, default 120."""
    raw = os.environ.get("RUNCTL_LOCK_TIMEOUT", "")
    try:
        value = float(raw) if raw else 120.0
    except ValueError:
        value = 120.0
    return value if math.isfinite(value) and value > 0 else 120.0


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc/PID/stat), or None where unknown: with
    the pid it identifies a process for good, since a pid can be reused once its process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether process ``pid`` is running (zombies are not) and, when ``start`` is known, is the same process
    that had that start time (not another one that was given the pid later)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc (macOS): the pid alone
    if fields[0] == b"Z":
        return False
    return start is None or fields[19].decode() == start


def _connect(path: Path) -> sqlite3.Connection:
    """The one place the database is opened (tests wrap it to inject storage faults)."""
    return sqlite3.connect(path, timeout=BUSY_SLICE_MS / 1000, isolation_level=None, check_same_thread=False)


def _private(path: Path, mode: int) -> None:
    """The state directory holds job records and logs: readable by its owner only (0700, the database 0600)."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(mode)
    except OSError:
        pass  # not ours to change (e.g. a shared RUNCTL_HOME): the files inside are still created 0600


def _say_on_stderr(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


def runctl_home() -> Path:
    explicit = os.environ.get("RUNCTL_HOME")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_state_dir

    return Path(user_state_dir("runctl"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class InstanceRow(BaseModel):
    model_config = ConfigDict(defer_build=True)

    instance: Instance
    job_id: str | None = None
    intent_id: str | None = None
    created_at: datetime
    ended_at: datetime | None = None
    keep: bool = False
    billing: str = "instance"

    def billed_seconds(self, now: datetime | None = None) -> float:
        end = self.ended_at or (now or datetime.now(timezone.utc))
        return max(0.0, (end - self.created_at).total_seconds())

    def cost(self, now: datetime | None = None) -> float | None:
        """What the instance itself cost: rate x lifetime; 0 for providers that bill jobs, not instances."""
        if self.billing == "job":
            return 0.0
        rate = self.instance.hourly_price
        if rate is None:
            return None
        return rate * self.billed_seconds(now) / 3600.0


class JobRow(BaseModel):
    """A job as journalled. ``spec.env`` holds the variables' names only: values are never stored."""

    model_config = ConfigDict(defer_build=True)

    id: str
    provider: str
    instance_id: str | None
    state: JobState
    exit_code: int | None = None
    spec: JobSpec
    status: JobStatus | None = None
    parent_id: str | None = None
    attempt: int = 1
    keep: bool = False
    outputs_dir: str | None = None
    cost: float | None = None
    created_at: datetime
    ended_at: datetime | None = None
    message: str = ""


class IntentRow(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    provider: str
    kind: str
    job_id: str | None
    status: str
    resource_id: str | None
    pid: int | None
    pid_start: str | None = None  # the process's start time: a pid reused by another process does not match
    spec: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    error: str | None = None


class Store:
    """Typed access to the state database. One instance per process; cheap to open.

    Every failure of the database itself (damaged, read-only, full, newer schema) is a :class:`StateError`
    naming the file and what to do; a write lock held by another runctl is waited for (said on stderr after
    ``LOCK_NOTICE_AFTER`` seconds, interruptible by Ctrl-C) at most ``RUNCTL_LOCK_TIMEOUT`` seconds.
    """

    def __init__(self, home: Path | None = None, on_wait: Callable[[str], None] | None = None) -> None:
        self.home = home or runctl_home()
        self.path = self.home / "state.db"
        self._on_wait = on_wait or _say_on_stderr
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            _private(self.home, 0o700)
            self._conn = _connect(self.path)
            self._conn.row_factory = sqlite3.Row
            _private(self.path, 0o600)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_SLICE_MS}")
            if self._locked_retry(lambda: self._conn.execute("PRAGMA journal_mode").fetchone()[0]) != "wal":
                self._locked_retry(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))
            self._locked_retry(lambda: self._conn.execute("PRAGMA synchronous = NORMAL"))
            if self._locked_retry(lambda: self._conn.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:
                self._upgrade()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        except OSError as exc:
            raise StateError(
                f"runctl's state directory {self.home} cannot be used: {exc.strerror or exc}",
                "make it writable by you, or set RUNCTL_HOME to a directory that is",
            ) from None

    def _upgrade(self) -> None:
        """Create the schema, or migrate an older one, in one transaction (safe against concurrent first runs)."""
        with self.transaction() as cur:
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
            elif version > SCHEMA_VERSION:
                raise StateError(
                    f"the state store {self.path} was written by a newer runctl (schema {version}, this runctl"
                    f" knows {SCHEMA_VERSION})",
                    "upgrade runctl (pip install -U runctl), or set RUNCTL_HOME to another directory to keep both",
                )
            else:
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS.get(target, []):
                        cur.execute(statement)
            cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------------------------ faults and locks

    def _error(self, exc: sqlite3.Error) -> StateError:
        """The store's own failure as a message naming the file and what to do."""
        text = str(exc)
        lowered = text.lower()
        if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            return StateError(
                f"the state store {self.path} is damaged ({text})",
                f"move it aside (mv {self.path} {self.path}.broken) and rerun: runctl starts a new one; then"
                " `runctl resources list` finds instances the old journal knew (they carry runctl's tags)",
            )
        if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
            return StateError(
                f"the state store {self.path} cannot be written ({text})",
                f"make {self.home} and the files in it writable by you, or set RUNCTL_HOME to a writable directory",
            )
        if "full" in lowered or "disk i/o" in lowered or "no space" in lowered:
            return StateError(
                f"the state store {self.path} could not be written: {text}",
                f"free space on the disk that holds {self.home} (df -h {self.home}), then check what is"
                " running: runctl resources list",
            )
        return StateError(
            f"the state store {self.path} failed: {type(exc).__name__}: {text}",
            f"check the disk and permissions of {self.home}; rerun with RUNCTL_HOME set to another directory to"
            " see whether the store is the cause",
        )

    def _locked_retry(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` until it stops failing with "database is locked": bounded, said, interruptible."""
        limit = lock_timeout()
        started = time.monotonic()
        noticed = False
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if signals.take_pending():  # Ctrl-C while waiting: nothing is open, deliver it now
                raise KeyboardInterrupt
            waited = time.monotonic() - started
            if waited >= limit:
                raise StateLocked(
                    f"gave up after {waited:.0f}s waiting for the state store {self.path}: another runctl"
                    " command holds its write lock",
                    "let the other runctl command finish (ps -ef | grep runctl), then rerun; wait longer with"
                    " RUNCTL_LOCK_TIMEOUT=SECONDS",
                )
            if not noticed and waited >= LOCK_NOTICE_AFTER:
                noticed = True
                self._on_wait(
                    f"waiting for the state store {self.path}: another runctl command is writing to it"
                    f" (gives up after {limit:.0f}s; RUNCTL_LOCK_TIMEOUT changes that)"
                )
            time.sleep(0.01)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction. SIGINT/SIGTERM are held until it has committed or rolled back, so an interrupt
        never leaves it open; a storage failure rolls it back and becomes a :class:`StateError`."""
        with signals.deferred():
            cur = self._conn.cursor()
            try:
                if self._conn.in_transaction:  # left open by an earlier failure: never build on it
                    self._conn.execute("ROLLBACK")
                self._locked_retry(lambda: cur.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from None
                raise

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable; the transaction dies with it

    def _read(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        try:
            rows: list[sqlite3.Row] = self._locked_retry(lambda: self._conn.execute(query, params).fetchall())
            return rows
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    # ------------------------------------------------------------------------------------ journal

    def event(
        self,
        kind: str,
        *,
        provider: str | None = None,
        job_id: str | None = None,
        instance_id: str | None = None,
        **data: Any,
    ) -> None:
        with self.transaction() as cur:
            self._event(cur, kind, provider, job_id, instance_id, data)

    @staticmethod
    def _event(
        cur: sqlite3.Cursor,
        kind: str,
        provider: str | None,
        job_id: str | None,
        instance_id: str | None,
        data: dict[str, Any],
    ) -> None:
        cur.execute(
            "INSERT INTO events(at, kind, provider, job_id, instance_id, data) VALUES (?,?,?,?,?,?)",
            (_now(), kind, provider, job_id, instance_id, json.dumps(data, default=str)),
        )

    def events(self, job_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = "SELECT * FROM events" + (" WHERE job_id = ?" if job_id else "") + " ORDER BY seq LIMIT ?"
        rows = self._read(query, (job_id, limit) if job_id else (limit,))
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    # ------------------------------------------------------------------------------------ intents

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

    # ------------------------------------------------------------------------------------ instances

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

    # ------------------------------------------------------------------------------------ jobs

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

    def instances_for_job(self, job_id: str) -> list[InstanceRow]:
        rows = self._read("SELECT * FROM instances WHERE job_id = ? ORDER BY created_at", (job_id,))
        return [self._instance(r) for r in rows]

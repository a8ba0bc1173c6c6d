"""The state database itself: where it lives, opening it (WAL, private to its owner), creating or migrating
its schema, storage faults as :class:`StateError` naming the file and what to do, waiting for another runctl's
write lock (bounded, said, interruptible), one ``BEGIN IMMEDIATE`` transaction per write, and the event journal
every table writes to. The tables (``instances``, ``jobs``, ``intents``) build on :class:`Database`."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core import signals
from runctl_core.errors import StateError, StateLocked
from runctl_core.state.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

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


class Database:
    """The connection to the state database and what every table shares: schema upgrades, storage faults,
    the write lock, transactions, reads and the event journal. :class:`Store` (all the tables) is the class to
    use."""

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

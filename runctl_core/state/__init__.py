"""The state store: one SQLite database (WAL) under ``RUNCTL_HOME`` with instances, jobs, intents and an
event journal. Safe for many runctl processes at once: every write is one ``BEGIN IMMEDIATE`` transaction.

An *intent* is written before any call that may create something paid, and completed (with the resource id)
or failed after it. An intent still ``pending`` after its process died means "something may exist at the
provider that we never heard back about": ``runctl resources`` finds it by its ``runctl:intent`` tag.

The store is put together from one module per part: ``database`` (opening, the schema and its migrations from
``schema``, storage faults, the write lock, transactions, the event journal), ``instances``, ``jobs`` and
``intents`` (one table each), ``rows`` (the typed rows they return) and ``processes`` (which process holds an
intent). Every name this module offered before is still importable from ``runctl_core.state``.
"""

from __future__ import annotations

from runctl_core.state.database import BUSY_SLICE_MS, LOCK_NOTICE_AFTER, Database, lock_timeout, runctl_home
from runctl_core.state.instances import InstancesTable
from runctl_core.state.intents import IntentsTable
from runctl_core.state.jobs import JobsTable
from runctl_core.state.processes import process_alive, process_start
from runctl_core.state.rows import InstanceRow, IntentRow, JobRow
from runctl_core.state.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

__all__ = [
    "BUSY_SLICE_MS",
    "LOCK_NOTICE_AFTER",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Database",
    "InstanceRow",
    "IntentRow",
    "JobRow",
    "Store",
    "lock_timeout",
    "process_alive",
    "process_start",
    "runctl_home",
]


class Store(InstancesTable, JobsTable, IntentsTable):
    """Typed access to the state database. One instance per process; cheap to open.

    Every failure of the database itself (damaged, read-only, full, newer schema) is a :class:`StateError`
    naming the file and what to do; a write lock held by another runctl is waited for (said on stderr after
    ``LOCK_NOTICE_AFTER`` seconds, interruptible by Ctrl-C) at most ``RUNCTL_LOCK_TIMEOUT`` seconds.
    """

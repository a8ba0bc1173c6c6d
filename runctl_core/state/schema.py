"""The state database's schema and its migrations (``PRAGMA user_version`` is the schema version)."""

from __future__ import annotations

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

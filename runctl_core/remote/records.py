"""Pieces every provider needs, written once: tags, terminal states, job records, atomic JSON, log chunks.

* :func:`runctl_tags` - the ``runctl:*`` tags of a new instance, with one documented precedence;
* :data:`TERMINAL_JOB_STATES` / :data:`ALIVE_INSTANCE_STATES` - the state sets;
* :func:`job_status_from_record` - the runner's ``job.json`` (as printed by ``runner.py status``) -> ``JobStatus``;
* :func:`write_json_atomic` / :func:`read_json` - records on the laptop that are never seen half-written;
* :func:`decode_log_chunk` - bytes read from a byte offset -> text + next offset, never splitting a UTF-8
  character and always making progress (one invalid byte must not stall a reader).
"""

from __future__ import annotations

import codecs
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core.models import EnvironmentReport, InstanceSpec, InstanceState, JobState, JobStatus
from runctl_core.timestamps import parse_time

TAG_OWNER = "runctl:owner"
TAG_INTENT = "runctl:intent"
TAG_JOB = "runctl:job"
TAG_CREATED = "runctl:created"
RESERVED_TAGS = (TAG_OWNER, TAG_INTENT, TAG_JOB, TAG_CREATED)

TERMINAL_JOB_STATES = frozenset(s for s in JobState if s.terminal)
ALIVE_INSTANCE_STATES = frozenset(s for s in InstanceState if s.alive)


def runctl_tags(spec: InstanceSpec, created: datetime | None = None) -> dict[str, str]:
    """The tags (labels, metadata) to put on the instance created for ``spec``.

    Precedence, lowest first: ``spec.tags`` (extra tags from the user/config), then runctl's own keys, which
    always win: ``runctl:owner`` (``spec.owner``), ``runctl:intent`` (``spec.intent_id``), ``runctl:created``
    (``created``, default now, ISO 8601 UTC, seconds) and ``runctl:job`` (``spec.job_id``, only when set). A
    ``runctl:*`` key in ``spec.tags`` can therefore never spoof ownership or hide an instance from
    ``runctl resources``; other ``runctl:*`` keys in ``spec.tags`` are kept. Providers whose tags cannot hold
    ``:`` map the keys themselves, from this dict.
    """
    when = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
    tags = {str(k): str(v) for k, v in spec.tags.items()}
    for key in RESERVED_TAGS:
        tags.pop(key, None)
    tags[TAG_OWNER] = spec.owner
    tags[TAG_INTENT] = spec.intent_id
    tags[TAG_CREATED] = when.isoformat(timespec="seconds")
    if spec.job_id:
        tags[TAG_JOB] = spec.job_id
    return tags


def job_status_from_record(job_id: str, record: dict[str, Any]) -> JobStatus:
    """Map the runner's job record (``runner.py status`` output) to a :class:`JobStatus`.

    An unknown or missing state is ``lost``; a setup failure (``setup_failed``) is ``failed`` with the
    runner's message, which names the setup step.
    """
    state = str(record.get("state") or "lost")
    exit_code = record.get("exit_code")
    setup = record.get("setup")
    report = None
    if isinstance(setup, dict) and setup.get("state") in ("none", "cached", "installed", "failed", "skipped"):
        seconds = setup.get("seconds")
        report = EnvironmentReport(
            state=setup["state"],
            seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
            summary=str(setup.get("summary") or ""),
            message=str(setup.get("message") or ""),
            hint=str(setup.get("hint") or ""),
        )
    return JobStatus(
        job_id=job_id,
        state=JobState(state) if state in JobState._value2member_map_ else JobState.LOST,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        started_at=parse_time(record.get("started_at")),
        ended_at=parse_time(record.get("ended_at")),
        message=str(record.get("message") or ""),
        rank=record.get("rank") if isinstance(record.get("rank"), int) else None,  # multi-node: the deciding rank
        setup=report,
    )


def write_json_atomic(path: Path, data: Any, mode: int = 0o600, indent: int | None = 1) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader sees the old file or the new one, never a mix
    (temporary file in the same directory, fsync, rename). Parent directories are created. ``indent=None``
    for large data: json's C encoder only runs without indentation (a 5,000-file manifest: ~10x faster)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=indent, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return default


def decode_log_chunk(data: bytes, final: bool) -> tuple[str, int]:
    """Decode log bytes read from some offset; return ``(text, consumed)``: the caller's next offset is
    ``offset + consumed``.

    An incomplete UTF-8 sequence at the end (at most 3 bytes: a character may be mid-write, or cut by the read
    size) is held back for the next read, unless ``final`` (the job ended and this is the end of the log).
    Invalid bytes anywhere else are replaced by U+FFFD and consumed, so every call with 4 or more bytes
    makes progress - a stray byte never stalls ``logs --follow``.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=final)
    pending, _flags = decoder.getstate()
    return text, len(data) - len(pending)

"""Timestamps as providers' APIs and runctl's records give them, read one way for every provider.

``parse_time`` takes what an SDK or an API answers (a ``datetime``, an ISO 8601 string with ``Z`` or an offset) and
returns an aware ``datetime`` (UTC when the value carries no zone), or ``None`` for anything it cannot read: a missing,
empty or malformed value is "unknown", never an error, since a timestamp is informative in runctl's models.

Third-party providers use it for ``Instance.created_at``, ``Checkpoint.modified_at`` and the like::

    from runctl_core.timestamps import parse_time

    created_at = parse_time(answer.get("createdAt"))  # "2025-05-01T12:00:00Z" -> 2025-05-01 12:00:00+00:00
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An aware ``datetime`` from a ``datetime`` or an ISO 8601 string (``Z`` accepted; no zone means UTC), else
    ``None`` (None, empty, not a string, malformed)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

"""Durations as people write them: ``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import math
import re

MAX_SECONDS = 10 * 366 * 86400.0  # ten years: beyond that a duration is a typo (or 1e400)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``; raises ``ValueError`` with the accepted forms when it cannot be read."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _checked(float(value), value)
    text = str(value).strip().lower().replace(" ", "")
    try:
        seconds = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration; use e.g. 90, 90s, 15m, 2h, 1d or 1h30m") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return _checked(seconds, value)


def _checked(seconds: float, value: object) -> float:
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration; use e.g. 90, 90s, 15m, 2h, 1d or 1h30m")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is longer than ten years; use e.g. 90, 90s, 15m, 2h, 1d or 1h30m")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"

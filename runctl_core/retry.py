"""Retries with exponential backoff and full jitter, for transient provider errors only."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from runctl_core.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, including the first
    base_delay: float = 0.5  # seconds before the first retry
    max_delay: float = 20.0
    budget: float = 120.0  # give up once this many seconds were spent sleeping

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[TransientError, int, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> T:
    """Call ``fn``; on :class:`TransientError` wait and try again, up to ``policy.attempts`` tries.

    ``deadline`` (a ``time.monotonic()`` value) ends the retries early: no wait goes past it, so a caller's own
    timeout (``--wait-timeout``) is honoured. The last error is re-raised with a note of how many tries were
    made, so the user sees the real cause.
    """
    slept = 0.0
    attempt = 1
    while True:
        try:
            return fn()
        except TransientError as exc:
            delay = policy.delay(attempt, exc.retry_after)
            past_deadline = deadline is not None and time.monotonic() + delay > deadline
            if attempt >= policy.attempts or slept + delay > policy.budget or past_deadline:
                exc.message = f"{exc.message} (gave up after {attempt} tries)"
                exc.args = (exc.message,)
                raise
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            sleep(delay)
            slept += delay
            attempt += 1

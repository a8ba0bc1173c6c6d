"""Watching a started job: poll its status until it ends, follow its log by byte offset (no repeats, no gaps),
keep the tail of what was printed for a failure summary, and show the log of the rank that failed a
multi-node job."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from runctl_core import signals
from runctl_core.errors import RunctlError, WaitTimeout
from runctl_core.models import Instance, JobStatus
from runctl_core.plugins import Provider
from runctl_core.run_models import LogSink
from runctl_core.session import Session


def wait_job(
    session: Session,
    provider: Provider,
    instance: Instance,
    status: JobStatus,
    *,
    sink: LogSink | None,
    offset: int = 0,
    timeout: float | None = None,
    rank: int = 0,
) -> tuple[JobStatus, int]:
    """Poll until the job ends, sending new log text to ``sink`` (by byte offset: no repeats, no gaps)."""
    caps = provider.capabilities()
    delay = caps.poll_interval
    deadline = time.monotonic() + timeout if timeout else None
    current = status
    first = True
    follow = sink is not None and provider.has("logs")
    while True:
        signals.raise_pending()
        report = provider.status(instance, current)
        previous, current = current, report.job or current
        if current != previous or first:  # a poll that brings nothing new writes nothing
            session.store.update_job(current.job_id, status=current)
        first = False
        got_output = False
        if follow:
            read = read_logs(
                provider, instance, current, offset, sink, until_complete=current.state.terminal, rank=rank
            )
            offset, got_output = read.offset, read.got_output
        if current.state.terminal:
            return current, offset
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(
                f"job {current.job_id} still {current.state.value} after {timeout:.0f}s",
                f"it keeps running; follow it with: runctl logs {current.job_id} --follow",
            )
        session.progress.update(f"job {current.job_id} {current.state.value} on {instance.id}")
        delay = caps.poll_interval if got_output else min(delay * 1.3, caps.poll_interval * 5, 10.0)
        provider.wait_change(instance, current, delay)  # returns early when the provider sees the job end


class LogRead(BaseModel):
    model_config = ConfigDict(defer_build=True)

    offset: int  # where the next read starts
    got_output: bool  # some text was sent to the sink
    complete: bool  # the job has ended and everything up to ``offset`` has been read


def read_logs(
    provider: Provider,
    instance: Instance,
    job: JobStatus,
    offset: int,
    sink: LogSink | None,
    until_complete: bool,
    rank: int = 0,
) -> LogRead:
    """Send the job's log from ``offset`` to ``sink`` chunk by chunk (by byte offset: no repeats, no gaps): all
    that exists now when ``until_complete``, else until a read brings nothing new."""
    got = complete = False
    for _ in range(100_000):
        signals.raise_pending()
        chunk = provider.logs(instance, job, offset, rank)
        if chunk is None:
            break
        if chunk.data and sink is not None:
            sink(chunk.data)
            got = True
        moved = chunk.next_offset > offset
        offset, complete = chunk.next_offset, chunk.complete
        if chunk.complete or not moved or (not until_complete and not chunk.data):
            break
    return LogRead(offset=offset, got_output=got, complete=complete)


class LogTail:
    """The last ``limit`` characters of a log (for the failure summary): a job's log can be far larger than
    runctl's memory should be, so nothing more is kept."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text[-self.limit :])
        self._size += min(len(text), self.limit)
        while self._size - len(self._parts[0]) >= self.limit:
            self._size -= len(self._parts.pop(0))

    def text(self) -> str:
        return "".join(self._parts)[-self.limit :]


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def failing_rank_tail(provider: Provider, instance: Instance, status: JobStatus) -> str:
    """The end of the log of the rank that failed a multi-node job (rank 0's log is the job's log)."""
    if not status.rank:
        return ""
    parts: list[str] = []
    try:
        read_logs(provider, instance, status, 0, parts.append, until_complete=True, rank=status.rank)
    except RunctlError:
        return ""
    return f"rank {status.rank}'s log ends with:\n{tail(''.join(parts))}"

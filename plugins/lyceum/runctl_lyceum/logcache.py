"""An execution's output kept on disk as it arrives, so that ``logs`` can serve stable byte offsets.

Lyceum gives output two ways: the execution's server-sent event stream (``data: {"output": {"content"}}`` events,
then ``{"jobFinished": {"job": {"result": {"returnCode", "error"}}}}``), which replays the output from the start
to every new connection, and ``GET /logs/execution/{id}`` (stored log lines, after the fact). runctl appends what
the stream brings to ``log``; on a reconnect it skips the bytes it already has. One process at a time follows an
execution (an exclusive ``flock`` on ``lock``); others read the file. While the execution runs, a daemon thread
follows the stream so ``logs`` never blocks; once it has ended, ``logs`` reads the rest synchronously and falls
back to the logs endpoint when the stream is gone.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runctl_core.errors import NotFoundError, RunctlError, TransientError
from runctl_core.remote.records import decode_log_chunk, read_json
from runctl_core.remote.records import write_json_atomic as write_json
from runctl_lyceum.models import LogEntry

MAX_CHUNK = 1 << 20

EventSource = Callable[[], Iterator[dict[str, Any]]]


class LogCache:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.log = directory / "log"
        self.meta_path = directory / "meta.json"
        self.lock_path = directory / "lock"

    def size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, data: bytes) -> None:
        if not data:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def meta(self) -> dict[str, Any]:
        data = read_json(self.meta_path)
        return data if isinstance(data, dict) else {}

    @property
    def complete(self) -> bool:
        return bool(self.meta().get("complete"))

    def finish(self, return_code: Any = None, error: Any = None, source: str = "stream") -> None:
        write_json(self.meta_path, {"complete": True, "return_code": return_code, "error": error, "source": source})

    def read(self, offset: int) -> tuple[str, int, bool]:
        """Text from byte ``offset`` (cut before an incomplete UTF-8 character), the next offset, at end."""
        try:
            with self.log.open("rb") as fh:
                fh.seek(offset)
                data = fh.read(MAX_CHUNK)
                at_end = fh.read(1) == b""
        except FileNotFoundError:
            return "", offset, True
        text, consumed = decode_log_chunk(data, final=at_end and self.complete)
        return text, offset + consumed, at_end and consumed == len(data)

    @contextmanager
    def following(self) -> Iterator[bool]:
        """Hold the right to follow this execution (True) or learn that another process holds it (False)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def pump(
    cache: LogCache, events: EventSource, *, reconnects: int, delay: float = 0.5, stop: threading.Event | None = None
) -> bool:
    """Append the stream's output to ``cache`` until the job finishes (True) or the stream is gone (False).

    Each connection replays the output from its start: the bytes already cached are skipped.
    """
    failures = 0
    while True:
        have = cache.size()
        seen = 0
        got_event = False
        try:
            for event in events():
                got_event = True
                content = None
                if isinstance(event.get("output"), dict):
                    content = event["output"].get("content")
                elif event.get("type") == "output":
                    content = event.get("content")
                if isinstance(content, str) and content:
                    data = content.encode("utf-8")
                    if seen + len(data) > have:
                        cache.append(data[max(0, have - seen) :])
                    seen += len(data)
                elif isinstance(event.get("jobFinished"), dict):
                    result = (event["jobFinished"].get("job") or {}).get("result") or {}
                    cache.finish(result.get("returnCode"), result.get("error"))
                    return True
                elif event.get("type") in ("completed", "error"):
                    cache.finish(None, event.get("message"))
                    return True
                if stop is not None and stop.is_set():
                    return False
        except NotFoundError:
            return False
        except TransientError:
            pass
        if stop is not None and stop.is_set():
            return False
        failures = 0 if got_event else failures + 1
        if failures > reconnects:
            return False
        time.sleep(delay * (2 ** min(failures, 5)) if failures else 0.05)


def fill_from_entries(cache: LogCache, entries: list[LogEntry]) -> None:
    """Complete the cache from the stored log lines, where they continue what is cached."""
    text = "".join(e.message if e.message.endswith("\n") else e.message + "\n" for e in entries)
    data = text.encode("utf-8")
    have = cache.size()
    if have == 0:
        cache.append(data)
    else:
        with cache.log.open("rb") as fh:
            cached = fh.read()
        if data.startswith(cached):
            cache.append(data[have:])
    cache.finish(source="logs endpoint")


# -------------------------------------------------------------------------------- background followers

_followers: dict[str, tuple[threading.Thread, threading.Event]] = {}
_followers_lock = threading.Lock()


def ensure_follower(key: str, cache: LogCache, events: EventSource, reconnects: int) -> None:
    """Follow the stream in a daemon thread of this process, unless one already does (here or elsewhere)."""
    with _followers_lock:
        current = _followers.get(key)
        if current is not None and current[0].is_alive():
            return
        stop = threading.Event()

        def run() -> None:
            with cache.following() as mine:
                if mine and not cache.complete:
                    try:
                        pump(cache, events, reconnects=reconnects, stop=stop)
                    except RunctlError:
                        pass

        thread = threading.Thread(target=run, name=f"lyceum-log-{key}", daemon=True)
        _followers[key] = (thread, stop)
        thread.start()


def join_follower(key: str, timeout: float) -> None:
    with _followers_lock:
        current = _followers.get(key)
    if current is not None:
        current[0].join(timeout)


def stop_followers() -> None:
    """Ask every follower of this process to stop (tests; process exit kills them anyway)."""
    with _followers_lock:
        items = list(_followers.values())
    for thread, stop in items:
        stop.set()
        thread.join(2.0)

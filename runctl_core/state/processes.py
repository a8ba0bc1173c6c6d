"""Which process holds an intent: a pid with its start time identifies a process for good (a pid can be
reused once its process is gone), so ``runctl resources`` can tell a live run's instance from an abandoned one."""

from __future__ import annotations

import os


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

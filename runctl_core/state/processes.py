"""Which process holds an intent: a pid with its start time identifies a process for good (a pid can be
reused once its process is gone), so ``runctl resources`` can tell a live run's instance from an abandoned one.

The facts come from the job runner's process module (the same code judges a job's supervisor on a machine)."""

from __future__ import annotations

from runctl_core.remote.runner_procs import _alive, start_time


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc/PID/stat), or None where unknown: with
    the pid it identifies a process for good, since a pid can be reused once its process is gone."""
    found: str | None = start_time(pid)
    return found


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether process ``pid`` is running (zombies are not) and, when ``start`` is known, is the same process
    that had that start time (not another one that was given the pid later). Without /proc: the pid alone."""
    if not pid or not _alive(pid):
        return False
    return start is None or start_time(pid) in (None, start)

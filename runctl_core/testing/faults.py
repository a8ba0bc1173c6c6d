"""Fault injection through the real CLI: SIGKILL a ``runctl run`` at a chosen step of the workflow.

The run is started with ``RUNCTL_TRACE_PLUGINS=1``, so its stderr (line-buffered) gets
``[runctl trace] <provider>.<hook>(...)`` when a hook starts and ``[runctl trace] <provider>.<hook> -> X in N ms``
when it returns. :func:`kill_run_at` reads stderr line by line and kills the process (SIGKILL: no cleanup of
any kind can run) when the step's line appears, optionally once a further condition holds (e.g. "the stand-in
has received the create call"), so a test can then prove that ``runctl resources cleanup`` leaves nothing::

    report = kill_run_at(["--provider", "mycloud", "run", "train.py"], "during-train", provider="mycloud")
    assert report.killed
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runctl_core.testing.cli import runctl_executable

# step -> the trace text (after "<provider>.") that marks it
KILL_STEPS: dict[str, str] = {
    "during-create": "create(",  # the create hook has started: its call may be in flight
    "after-create": "create -> ",  # the provider answered; runctl has not necessarily recorded it yet
    "during-sync": "sync(",
    "starting-train": "train(",  # the job is being started: the provider may have started it without saying so
    "during-train": "train -> ",  # the job runs on the instance; runctl is following it
    "during-collect": "collect(",
}


@dataclass
class KillReport:
    """What happened: whether the step was reached and the process killed there, and its stderr."""

    step: str
    killed: bool
    returncode: int | None
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _pump(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


def kill_run_at(
    args: Sequence[str],
    step: str,
    *,
    provider: str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    when: Callable[[], bool] | None = None,
    timeout: float = 90.0,
) -> KillReport:
    """Run ``runctl *args`` and SIGKILL it at ``step`` (a key of :data:`KILL_STEPS`).

    ``when``: after the step's trace line, poll this until it is true before killing (bounded by ``timeout``),
    e.g. to kill only once a slowed-down stand-in has carried out the call. Returns when the process has exited.
    """
    marker = f"] {provider}.{KILL_STEPS[step]}"
    proc = subprocess.Popen(
        [runctl_executable(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        cwd=cwd,
        env={**os.environ, **(env or {}), "RUNCTL_TRACE_PLUGINS": "1"},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stderr, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    killed = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if line is None:
                break  # the run ended before the step: the caller's assertion on ``killed`` says so
            seen.append(line)
            if "[runctl trace]" in line and marker in line:
                while when is not None and not when() and time.monotonic() < deadline:
                    time.sleep(0.01)
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(30)
        reader.join(5)
        while True:
            try:
                rest = lines.get_nowait()
            except queue.Empty:
                break
            if rest is not None:
                seen.append(rest)
    return KillReport(step=step, killed=killed, returncode=proc.returncode, lines=seen)


def pids_alive(pids: Sequence[int | None]) -> list[int]:
    """Those of ``pids`` that are running processes (zombies count as dead)."""
    alive = []
    for pid in pids:
        if not pid:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            alive.append(pid)
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[-1].split()[0] != "Z":
                    alive.append(pid)
        except OSError:
            continue
    return alive

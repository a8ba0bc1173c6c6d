"""The contracts the conformance suite holds a provider to, and the helpers that check them.

Every failure the suite reports starts with ``contract broken:`` and names the contract, so that a provider
author reads *what* their provider promised and did not do, not an assertion's internals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest

from runctl_core.errors import ProviderError, RunctlError
from runctl_core.models import Instance

T = TypeVar("T")

# A job process finder: job id -> pids of that job's live processes on the machine (None: cannot observe)
ProcessFinder = Callable[[str], list[int]]

CONTRACTS = {
    "terminate-idempotent": "terminate must not raise when the instance is already gone",
    "terminate-stops-jobs": "terminate must stop the instance's jobs",
    "cancel-stops-job": "cancel must stop the job before it reports it stopped",
    "runctl-errors": "a hook raises only runctl's error types (runctl_core.errors)",
    "one-instance-per-create": "create makes exactly one instance, tagged for runctl",
    "tags": "every instance carries runctl:owner, runctl:intent, runctl:created (and runctl:job)",
    "list-only-runctl": "list_instances lists only instances runctl created (tagged runctl:owner)",
    "timeout": "a job is stopped after JobSpec.timeout seconds",
    "sync-delivers": "sync puts the files it reports on the instance",
    "logs-complete": "logs says complete only once the job has ended",
    "vanished-job": "a job the instance does not have is never reported pending or running",
    "not-lost-after-train": "a healthy job is never reported lost right after train",
    "no-leak": "every instance a test created is gone after it",
}


def broken(contract: str, detail: str) -> NoReturn:
    """Fail the test, naming the contract (a key of :data:`CONTRACTS`) and what the provider did."""
    pytest.fail(f"contract broken: {CONTRACTS[contract]} [{contract}]: {detail}", pytrace=False)


def hook_exception(exc: BaseException) -> BaseException:
    """The exception the hook itself raised (the core wraps a foreign one in a ProviderError)."""
    cause = exc.__cause__
    if isinstance(exc, ProviderError) and cause is not None and not isinstance(cause, RunctlError):
        return cause
    return exc


def call(contract: str, what: str, fn: Callable[[], T]) -> T:
    """Call a hook that must not fail; any exception breaks ``contract``."""
    try:
        return fn()
    except Exception as exc:
        raised = hook_exception(exc)
        broken(contract, f"{what} raised {type(raised).__name__}: {raised}")


def wait_for(poll: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float = 0.1) -> T | None:
    """Poll until ``done``; the last value when it came true, None when ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if done(value):
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


def tagged_alive(listed: list[Instance] | None, owner: str) -> set[str]:
    return {i.id for i in listed or [] if i.state.alive and i.tags.get("runctl:owner") == owner}


def processes_with_job_id(job_id: str) -> list[int]:
    """Pids of this machine's live processes whose environment has RUNCTL_JOB_ID=job_id (Linux /proc): an
    ``observed_processes`` for providers whose jobs run on this machine (local, or a stand-in's runner)."""
    marker = f"RUNCTL_JOB_ID={job_id}".encode()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, IndexError):
            continue
    return found


def stops_growing(read_size: Callable[[], int], settle: float = 1.0) -> bool:
    """True when the size read does not change over ``settle`` seconds (a stopped job writes no more log)."""
    before = read_size()
    time.sleep(settle)
    return read_size() == before


SCRIPT = """\
import os, sys, time, pathlib
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
print("conformance job", os.environ.get("RUNCTL_JOB_ID"), "extra", os.environ.get("CONFORMANCE_EXTRA"), flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
if mode == "tick":
    for i in range(int(float(sys.argv[2]) * 5)):
        print("tick", i, flush=True)
        time.sleep(0.2)
if mode == "show":
    for name in sys.argv[2:]:
        print("file", name, repr(pathlib.Path(name).read_text()), flush=True)
for i in range(3):
    print(f"line {i} \\u00e9", flush=True)
(ckpt / "ckpt-0001.json").write_text('{"step": 1}')
if mode == "fail":
    print("failing on purpose", file=sys.stderr, flush=True)
    sys.exit(7)
print("done", flush=True)
"""


def read_all_logs(provider: Any, instance: Instance, job: Any) -> str:
    """The job's whole log as far as it exists now (empty when the provider has no logs hook)."""
    text, offset = "", 0
    for _ in range(1000):
        chunk = provider.logs(instance, job, offset)
        if chunk is None:
            return text
        text += chunk.data
        if chunk.complete or chunk.next_offset <= offset:
            return text
        offset = chunk.next_offset
    return text

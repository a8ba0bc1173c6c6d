"""How runctl receives SIGINT/SIGTERM: never swallowed by a finalizer, never cutting a journal write in half,
never turning an interrupted run into a ``lost`` job."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl_core import signals
from runctl_core.testing.faults import pids_alive


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _deliver(sig: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), sig)
    for _ in range(1000):  # let the interpreter run the handler (it does so between bytecodes)
        time.sleep(0)


class _InterruptedFinalizer:
    def __del__(self) -> None:
        _deliver()


def test_a_signal_inside_a_finalizer_is_kept_for_later() -> None:
    signals.install()
    obj = _InterruptedFinalizer()
    del obj  # Python would print "Exception ignored in __del__" and drop a KeyboardInterrupt raised here
    assert signals.received() == 1
    with pytest.raises(KeyboardInterrupt):
        signals.raise_pending()
    signals.raise_pending()  # delivered once only


def test_sigterm_is_an_interrupt_and_deferred_blocks_hold_it() -> None:
    signals.install()
    reached_end = False
    with pytest.raises(KeyboardInterrupt), signals.deferred():
        _deliver(signal.SIGTERM)
        reached_end = True
    assert reached_end and signals.received() == 1


def test_deferred_works_under_pythons_own_sigint_handler() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # e.g. the Python API in a notebook
    done = False
    with pytest.raises(KeyboardInterrupt), signals.deferred():
        _deliver()
        done = True
    assert done and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_that_surfaces_as_another_error_is_cancelled_not_lost(
    invoke, home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runctl_core import workflow

    def wait_then_break(*args: Any, **kwargs: Any) -> Any:
        with signals.deferred():  # as inside a library that catches everything and re-raises its own error
            _deliver()
            signals.take_pending()
        raise ValueError("Error serializing to JSON: KeyboardInterrupt")

    monkeypatch.setattr(workflow, "wait_job", wait_then_break)
    result = invoke("-o", "json", "run", "examples/train.py", "--", "--epochs", "200", "--sleep", "0.3")
    assert result.code == 130, result.err
    assert json.loads(result.err.strip().splitlines()[-1])["error"]["code"] == "interrupted"
    paths = list(home.glob("providers/local/instances/*/jobs/*/job.json"))
    records = [json.loads(p.read_text()) for p in paths]
    deadline = time.monotonic() + 30
    while pids_alive([r.get("pid") for r in records]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert records and pids_alive([r.get("pid") for r in records]) == []
    status = invoke("-o", "json", "status", paths[0].parent.name)
    assert json.loads(status.out)["state"] == "cancelled", status.out

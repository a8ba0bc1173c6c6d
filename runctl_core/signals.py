"""SIGINT and SIGTERM in runctl: both mean "stop, clean up what this command created, exit 130".

Rules (the README's "Costs and safety" states the guarantees they give):

* ``install()`` (called by the CLI for every command) makes SIGTERM behave like Ctrl-C: a ``KeyboardInterrupt``
  in the main thread, which each command turns into its cleanup and ``Interrupted`` (exit 130).
* Inside ``deferred()`` (every state-store transaction) a signal is only recorded; it is raised when the block
  ends, so a journal write is never cut in half and never leaves a transaction open.
* A signal that lands inside a finalizer (``__del__``, e.g. ``Popen.__del__``), where Python would print
  "Exception ignored" and drop it, is recorded instead; ``raise_pending()`` (called by every wait loop and at
  the end of each deferred block) delivers it.
* ``received()`` counts every signal, delivered or not: the CLI exits 130 (never 0, never "internal error") for
  a command during which one arrived, and a run ended by a signal is recorded cancelled, never lost.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_state = {"depth": 0, "pending": 0, "received": 0}


def _unsafe_frame(frame: FrameType | None) -> bool:
    """True when raising here would be swallowed: inside a finalizer (``__del__``)."""
    depth = 0
    while frame is not None and depth < 50:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
        depth += 1
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    _state["received"] += 1
    if _state["depth"] > 0 or _unsafe_frame(frame):
        _state["pending"] += 1
        return
    raise KeyboardInterrupt


def _unraisable(unraisable: Any) -> None:
    """An interrupt raised where Python cannot propagate it (a finalizer, a callback from C) is not printed as
    "Exception ignored": it is kept and delivered by the next ``raise_pending()``."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _state["pending"] += 1
        return
    sys.__unraisablehook__(unraisable)


def install() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread, deferred where that is unsafe."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(depth=0, pending=0, received=0)
    sys.unraisablehook = _unraisable
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def received() -> int:
    """How many SIGINT/SIGTERM this process has received through runctl's handler."""
    return _state["received"]


def take_pending() -> bool:
    """Whether a signal was recorded and not yet delivered; it counts as delivered now (the caller raises)."""
    pending = bool(_state["pending"])
    _state["pending"] = 0
    return pending


def raise_pending() -> None:
    """Deliver a recorded signal now (as ``KeyboardInterrupt``), unless inside a deferred block."""
    if _state["pending"] and _state["depth"] == 0:
        _state["pending"] = 0
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (main thread only; nests). Outside the CLI (the Python API in a
    notebook), Python's own SIGINT handler is swapped for runctl's for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    swapped = None
    if _state["depth"] == 0 and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        swapped = signal.signal(signal.SIGINT, _handler)
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if swapped is not None:
            signal.signal(signal.SIGINT, swapped)
        if _state["depth"] == 0 and _state["pending"]:
            _state["pending"] = 0
            raise KeyboardInterrupt

"""What the user sees while runctl works: a rich spinner on stderr when stderr is a TTY (and not -q /
--no-progress), warnings always, questions only when interactive."""

from __future__ import annotations

import sys
from typing import Any

from runctl_core.redact import redact

_OPEN: list[Progress] = []


def close_all() -> None:
    """Stop every spinner (before an error is printed, so it does not share a line with one)."""
    for progress in _OPEN:
        progress.pause()


class Progress:
    def __init__(self, enabled: bool, quiet: bool = False, silent: bool = False) -> None:
        self.enabled = enabled and sys.stderr.isatty() and not silent
        self.quiet = quiet or silent
        self.silent = silent  # the Python API: nothing on the terminal; warnings go to logging ("runctl")
        self._status: Any = None
        self._console: Any = None
        _OPEN.append(self)

    def _get_console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def update(self, message: str) -> None:
        if not self.enabled:
            return
        message = redact(message)
        try:
            if self._status is None:
                self._status = self._get_console().status(message, spinner="dots")
                self._status.start()
            else:
                self._status.update(message)
        except (OSError, ValueError):  # a closed terminal or pipe: see _show
            self.enabled = False

    def step(self, message: str) -> None:
        """A line that stays (a finished step), shown unless quiet."""
        if self.quiet:
            return
        self.pause()
        if sys.stderr.isatty():
            self._show(f"[green]✓[/green] {redact(message)}", rich=True)
        else:
            self._show(redact(message))

    def warn(self, message: str) -> None:
        if self.silent:
            import logging

            logging.getLogger("runctl").warning(redact(message))
            return
        self.pause()
        if sys.stderr.isatty():
            self._show(f"[bold yellow]warning:[/bold yellow] {redact(message)}", rich=True)
        else:
            self._show(f"warning: {redact(message)}")

    def _show(self, text: str, *, rich: bool = False) -> None:
        """Never raises: when stderr is a pipe that was closed (``runctl run ... 2>&1 | head``) or a terminal
        that went away, the line is lost but whatever runctl was doing - above all cleaning up after a run -
        goes on (a write error here would skip terminating a paid instance)."""
        try:
            if rich:
                self._get_console().print(text)
            else:
                print(text, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def confirm(self, question: str) -> bool:
        if self.silent or not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False
        self.pause()
        import click

        return bool(click.confirm(redact(question), default=False, err=True))

    def pause(self) -> None:
        if self._status is not None:
            status, self._status = self._status, None
            try:
                status.stop()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.pause()

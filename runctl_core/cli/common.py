"""Options shared by commands, and how results and errors are written (text, JSON, id)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from runctl_core.session import Session

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_CHOICES = ("text", "json", "id")


def _set_provider(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.find_object(_Holder).options.provider = value  # type: ignore[union-attr]
    return value


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.find_object(_Holder).options.output = value  # type: ignore[union-attr]
    return value


class Options:
    """The global options (a plain class: no dataclasses import on the `--help` path)."""

    def __init__(
        self,
        provider: str | None = None,
        output: str = "text",
        config_path: str | None = None,
        verbose: int = 0,
        quiet: bool = False,
        no_progress: bool = False,
    ) -> None:
        self.provider = provider
        self.output = output
        self.config_path = config_path
        self.verbose = verbose
        self.quiet = quiet
        self.no_progress = no_progress


def handle_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C (clean up, exit 130); main() already does this for every command."""
    from runctl_core import signals

    signals.install()


class _Holder:
    """ctx.obj: the options, and the session made from them on first use."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            from runctl_core.session import Session

            self._session = Session(self.options)
        return self._session


def provider_option(f: F) -> F:
    return click.option(
        "--provider",
        "-p",
        "provider_",
        metavar="NAME",
        expose_value=False,
        callback=_set_provider,
        help="Provider to use (local, aws, runpod, lyceum, or a third party's). Also accepted before the command. "
        "Default: $RUNCTL_PROVIDER, then the config's default_provider, then local.",
    )(f)


def output_option(f: F) -> F:
    return click.option(
        "--output",
        "-o",
        "output_",
        type=click.Choice(OUTPUT_CHOICES),
        expose_value=False,
        callback=_set_output,
        help="text for people, json for scripts (one JSON document on stdout), id for just the id produced.",
    )(f)


def common(f: F) -> F:
    """--provider and --output, accepted after the command name too."""
    return provider_option(output_option(f))


def session_of(ctx: click.Context, *, load_config: bool = True) -> Session:
    """The command's session; the configuration is read and validated first, so a bad file always shows."""
    session = ctx.find_object(_Holder).session  # type: ignore[union-attr]
    if load_config:
        session.loaded  # noqa: B018 - validates the configuration now
    return session


def refuse_id_output(session: Session) -> None:
    """For commands that change something and produce no id: refuse `--output id` before acting, not after."""
    if session.options.output == "id":
        raise click.UsageError("this command produces no id; use --output text or --output json")


def emit(session: Session, data: Any, text: str | Callable[[], None] | None = None, ident: str | None = None) -> None:
    """Write the command's result: the JSON document, the id alone, or the text (a string or a printer)."""
    import json

    from runctl_core.redact import redact

    if "progress" in session.__dict__:  # a spinner still on screen would share the line with the result
        session.progress.close()
    mode = session.options.output
    if mode == "json":
        sys.stdout.write(redact(json.dumps(to_jsonable(data), indent=2, default=str)) + "\n")
    elif mode == "id":
        if ident is None:
            raise click.UsageError("this command produces no id; use --output text or --output json")
        sys.stdout.write(ident + "\n")
    elif callable(text):
        text()
    elif text is not None:
        sys.stdout.write(redact(text) + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()


def to_jsonable(data: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return {k: to_jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_jsonable(v) for v in data]
    return data


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Callable[[], None]:
    def show() -> None:
        from rich.table import Table

        from runctl_core.redact import redact

        t = Table(title=title, box=None, header_style="bold", pad_edge=False)
        for column in columns:
            t.add_column(column, overflow="fold")
        for row in rows:
            t.add_row(*[redact("" if v is None else str(v)) for v in row])
        console().print(t)

    return show


def money(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def examples(*lines: str) -> str:
    """An epilog block that click prints as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)

"""How results are written: text, one JSON document, or the id alone; tables, money, plans."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from runctl_core.session import Session


def emit(session: Session, data: Any, text: str | Callable[[], None] | None = None, ident: str | None = None) -> None:
    """Write the command's result: the JSON document, the id alone, or the text (a string or a printer)."""

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
        from runctl_core.redact import redact

        if not sys.stdout.isatty():  # plain columns for pipes and files: rich costs ~40 ms of start-up to import
            cells = [[redact("" if v is None else str(v)) for v in row] for row in rows]
            widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
            lines = [title] if title else []
            for line in [columns, *cells]:
                lines.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
            click.echo("\n".join(lines))
            return
        from rich.table import Table

        t = Table(title=title, box=None, header_style="bold", pad_edge=False)
        for column in columns:
            t.add_column(column, overflow="fold")
        for row in rows:
            t.add_row(*[redact("" if v is None else str(v)) for v in row])
        console().print(t)

    return show


def money(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def environment_line(environment: dict[str, Any]) -> str:
    """One line saying how the job's environment was prepared, with the setup time apart from the run's."""
    seconds = environment.get("seconds")
    took = f" in {seconds:.1f}s" if isinstance(seconds, (int, float)) and environment.get("state") != "none" else ""
    what = environment.get("summary") or environment.get("state", "")
    return f"environment: {what}{took}"


def examples(*lines: str) -> str:
    """An epilog block that click prints as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def log_sink(session: Session) -> Callable[[str], None] | None:
    if session.options.output != "text" or session.options.quiet:
        return None

    def write(text: str) -> None:
        from runctl_core.redact import redact

        sys.stderr.write(redact(text))
        sys.stderr.flush()

    return write


ALTERNATIVES_SHOWN = 10  # a dry run with --provider auto: the first ones in text (JSON has all)


def print_plan(session: Session, plan: Any) -> None:
    """A dry run's ``Plan``: the merged job (when there is one), the cost, each provider call in order, and with
    --provider auto the alternatives."""

    def text() -> None:
        import json

        out = [f"dry run - nothing will be created. Provider: {plan.provider}", f"cost: {plan.estimate}", "calls:"]
        for i, call in enumerate(plan.calls, 1):
            paid = "  [starts billing]" if call.paid else ""
            params = json.dumps(call.params, default=str, sort_keys=True)
            out.append(f"  {i}. [{call.step}] {call.api} {call.operation} {params}{paid}")
        if plan.alternatives is not None:
            out.append("alternatives, in the order they are tried:")
            shown = plan.alternatives[:ALTERNATIVES_SHOWN]
            out.extend(
                f"  {a.provider:<8} {a.offer.instance_type:<28} {money(a.hourly)}/h"
                + ("" if a.credentials else "  (no credentials here)")
                for a in shown
            )
            if len(plan.alternatives) > len(shown):
                more = len(plan.alternatives) - len(shown)
                out.append(f"  ... and {more} more (--output json lists every one)")
            notes = {a.provider: a.offer.source for a in reversed(shown) if not a.credentials and a.offer.source}
            out.extend(f"  {name}: {source}" for name, source in sorted(notes.items()))  # once per provider
            out.extend(f"  {s['provider']:<8} skipped: {s['reason']}" for s in plan.skipped or [])
        if plan.job is not None:
            import yaml

            out.append("job (job file and flags merged):")
            def given(value: Any) -> Any:  # what the job sets, nested tables too (no "gpu: null")
                if isinstance(value, dict):
                    value = {k: given(v) for k, v in value.items()}
                    return {k: v for k, v in value.items() if v not in (None, [], {})}
                return value

            out.extend("  " + line for line in yaml.safe_dump(given(plan.job), sort_keys=False).splitlines())
        click.echo("\n".join(out))

    emit(session, plan.document(), text)

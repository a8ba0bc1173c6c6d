"""`runctl providers`: installed providers and their credentials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    output_option,
    session_of,
)
from runctl_core.cli.output import emit, examples, table

if TYPE_CHECKING:
    pass


@click.command("providers", epilog=examples("runctl providers", "runctl providers --check --output json"))
@click.option(
    "--check",
    is_flag=True,
    help="Also ask each provider's API: each key is then accepted or refused (exit 3 if any is refused), e.g. "
    "runctl providers --check.",
)
@output_option
@click.pass_context
def providers_cmd(ctx: click.Context, check: bool) -> None:
    """Installed providers: name, package, version, and whether credentials are found (or accepted, with
    --check). Loads each provider's plugin but no cloud SDK unless --check."""
    from runctl_core.errors import EXIT_CONFIG, AuthError, RunctlError
    from runctl_core.plugins import installed_providers

    session = session_of(ctx)
    rows = []
    for info in installed_providers():
        entry: dict[str, Any] = {
            "name": info.name,
            "package": info.distribution,
            "version": info.version,
            "entry_point": info.target,
        }
        if info.blocked:
            entry.update(credentials="-", status=info.blocked)
        else:
            try:
                creds = session.provider(info.name).check_credentials(probe=check)
                entry.update(credentials=creds.model_dump(mode="json"), status=credential_state(creds))
            except AuthError as exc:  # the provider's API refused them (raised instead of reported)
                entry.update(credentials=None, status="refused", message=exc.message, hint=exc.hint)
            except RunctlError as exc:
                entry.update(credentials=None, status=f"error: {exc.message}", hint=exc.hint)
        rows.append(entry)

    def cred_text(entry: dict[str, Any]) -> str:
        creds = entry.get("credentials")
        if not isinstance(creds, dict):
            return str(entry["status"]) + (f": {entry['message']}" if entry.get("message") else "")
        if creds["found"]:
            state = entry["status"]  # found | accepted | refused
            text = f"{state} ({creds['source']})" if creds.get("source") else state
            if state == "refused" and creds.get("message"):
                text += f": {creds['message']}"
            return text + (f" as {creds['identity']}" if creds.get("identity") else "")
        return "missing" if not creds.get("message") else f"missing: {creds['message']}"

    def text() -> None:
        table(
            None,
            ["PROVIDER", "PACKAGE", "VERSION", "CREDENTIALS"],
            [[r["name"], r["package"], r["version"], cred_text(r)] for r in rows],
        )()
        for r in rows:  # what to do, under the table: one line per provider that needs something
            creds = r.get("credentials")
            needs = isinstance(creds, dict) and (not creds["found"] or r["status"] == "refused")
            hint = r.get("hint") or (creds.get("hint") if needs and isinstance(creds, dict) else "")
            if hint:
                click.echo(f"{r['name']}: {hint}")

    emit(session, {"providers": rows}, text)
    if any(r["status"] == "refused" for r in rows):
        raise SystemExit(EXIT_CONFIG)  # a rejected key is a credentials problem (ctx.exit is lost in main())


def credential_state(creds: Any) -> str:
    """found (looked only) / accepted / refused (the provider's API said so) / no credentials."""
    if not creds.found:
        return "no credentials"
    if creds.accepted is None:
        return "found"
    return "accepted" if creds.accepted else "refused"

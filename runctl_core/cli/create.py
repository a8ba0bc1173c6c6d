"""`runctl create`: one instance, kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    ask_before_paying,
    build_instance_request,
    common,
    instance_options,
    session_of,
    yes_option,
)
from runctl_core.cli.output import emit, examples, money, print_plan

if TYPE_CHECKING:
    pass


@click.command(
    "create",
    epilog=examples(
        "ID=$(runctl --provider aws create --instance-type t3.micro --wait --output id)",
        "runctl --provider runpod create --gpu A100 --spot --dry-run",
    ),
)
@instance_options
@click.option(
    "--wait/--no-wait",
    default=False,
    show_default=True,
    help="Block until the instance is ready for sync/train (with progress and a timeout).",
)
@click.option("--dry-run", is_flag=True, help="Show the provider calls and the hourly price; create nothing.")
@yes_option
@common
@click.pass_context
def create_cmd(ctx: click.Context, wait: bool, dry_run: bool, yes: bool, **instance_kw: Any) -> None:
    """Create one instance and keep it (until `runctl terminate ID`).

    Prints its id; with --wait, returns only once it is ready. It still ends itself after
    --max-runtime on providers that support it. On a terminal, a paid offer's price is shown and
    `Proceed? [Y/n]` asked first (--yes skips it).
    """
    from runctl_core.plans import create_plan
    from runctl_core.single_steps import create_kept

    session = session_of(ctx)
    provider = session.provider(session.provider_name())
    request = build_instance_request(session, instance_kw)
    if dry_run:
        print_plan(session, create_plan(session, provider, request, wait=wait))
        return
    ask_before_paying(session, provider, request, yes)
    instance = create_kept(session, provider, request, wait=wait)
    session.progress.close()
    emit(
        session,
        instance,
        f"{instance.id} {instance.state.value}"
        f"{' ' + money(instance.hourly_price) + '/h' if instance.hourly_price else ''}\n"
        f"terminate it with: runctl terminate {instance.id}",
        instance.id,
    )

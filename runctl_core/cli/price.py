"""`runctl price`: offers from every provider, cheapest first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from runctl_core.cli.options import (
    common,
    session_of,
)
from runctl_core.cli.output import emit, examples, money, table

if TYPE_CHECKING:
    pass


@click.command(
    "price",
    epilog=examples(
        "runctl price --gpu A100",
        "runctl price --gpu 'RTX 4090' --gpu-count 2 --output json",
        "runctl --provider aws price --instance-type g5.xlarge --spot",
    ),
)
@click.option("--gpu", metavar="NAME", help="A GPU by name: A100, H100, L4, T4, 'RTX 4090'...")
@click.option("--instance-type", "-t", metavar="TYPE", help="A provider machine type, e.g. g5.xlarge.")
@click.option("--gpu-count", type=click.IntRange(1, 64), help="Only offers with this many GPUs.")
@click.option("--spot", is_flag=True, default=None, help="Sort by spot price (default: by on-demand price).")
@click.option("--region", metavar="REGION", help="Region, where the provider has them.")
@common
@click.pass_context
def price_cmd(
    ctx: click.Context,
    gpu: str | None,
    instance_type: str | None,
    gpu_count: int | None,
    spot: bool | None,
    region: str | None,
) -> None:
    """Prices, side by side, from every installed provider (or only --provider): offer, GPUs, on-demand
    and spot $/h, availability - cheapest first. Providers without credentials are listed with the reason; an
    --instance-type a provider does not have is "not offered" there, with its closest types."""
    from runctl_core.models import PriceQuery
    from runctl_core.spending import price_list

    session = session_of(ctx)
    query = PriceQuery(gpu=gpu, instance_type=instance_type, gpu_count=gpu_count, spot=spot, region=region)
    result = price_list(session, query, session.options.provider)
    session.progress.close()
    offers, skipped = result.offers, result.skipped
    doc = result

    def text() -> None:
        if offers:
            table(
                None,
                ["PROVIDER", "OFFER", "GPU", "ON-DEMAND $/H", "SPOT $/H", "AVAILABILITY", "REGION"],
                [
                    [
                        o.provider,
                        o.instance_type,
                        f"{o.gpu} x{o.gpu_count}" if o.gpu else "-",
                        money(o.on_demand_hourly),
                        money(o.spot_hourly),
                        o.availability,
                        o.region or "-",
                    ]
                    for o in offers
                ],
            )()
        else:
            click.echo(
                "no offers match"
                + (f" --gpu {gpu}" if gpu else "")
                + (f" --instance-type {instance_type}" if instance_type else "")
            )
        for provider_name, source in sorted({(o.provider, o.source) for o in offers if o.source}):
            click.echo(f"{provider_name} prices: {source}")
        if result.not_offered:  # answered: no such instance type / GPU there; one line, not one per provider
            missing = [m.provider for m in result.not_offered]
            close = [(m.provider, s) for m in result.not_offered for s in m.suggestions]
            named = [s if len(missing) == 1 else f"{s} ({p})" for p, s in close]
            look = f"runctl --provider {missing[0] if len(missing) == 1 else 'NAME'} price"
            click.echo(
                f"{instance_type or gpu}: not offered by {', '.join(missing)}"
                + (f" - did you mean: {', '.join(named)}?" if named else f" - see what is offered: {look}")
            )
        quiet = [] if session.options.provider else [k for k in skipped if k.get("credentials") == "missing"]
        for skip in skipped:
            if skip not in quiet:
                click.echo(
                    f"{skip['provider']}: not asked - {skip['reason']}"
                    + (f" ({skip['hint']})" if skip["hint"] else "")
                )
        if quiet:
            click.echo(
                f"not asked (no credentials): {', '.join(k['provider'] for k in quiet)} - `runctl providers` says "
                "how to set up each; `--provider NAME` shows one's details"
            )
        guesses = [f"{s} ({p})" for p, names in result.suggestions.items() for s in names]
        if guesses:
            click.echo(f"did you mean: {', '.join(guesses)}?")

    emit(session, doc, text)

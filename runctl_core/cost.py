"""Cost in one place: the price shown before spending (estimate, the cost line) and what a job and an instance
cost, from rates and billed time."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from runctl_core.errors import PluginError, ProviderError, RunctlError
from runctl_core.models import Capabilities, JobStatus, Offer, PriceQuery
from runctl_core.state import InstanceRow

if TYPE_CHECKING:
    from runctl_core.plugins import Provider
    from runctl_core.run_models import InstanceRequest


def job_cost(instance: InstanceRow | None, status: JobStatus | None, now: datetime | None = None) -> float | None:
    """USD for one job attempt: the provider's own figure when it reports one; for job-billed providers the rate
    times the job's run time; otherwise what the instance created for it cost over its lifetime."""
    if status is not None and status.cost is not None:
        return status.cost
    if instance is None:
        return None
    if instance.billing == "job":
        rate = instance.instance.hourly_price
        if rate is None or status is None or status.started_at is None:
            return None
        end = status.ended_at or now or datetime.now(timezone.utc)
        return rate * max(0.0, (end - status.started_at).total_seconds()) / 3600.0
    return instance.cost(now)


# ------------------------------------------------------------------------------------------------ before spending


class PriceUnavailable(ProviderError):
    """The provider's price hook failed: a paid run does not start without the price shown first (exit 4)."""

    code = "price_unavailable"


def estimate(provider: Provider, request: InstanceRequest, *, before_spending: bool = False) -> Offer | None:
    """The offer matching the request, for the price shown before anything is spent; None when the provider has
    no price for it. When its ``price`` hook fails: None for a dry run or a preview, but ``before_spending`` on a
    paid provider raises PriceUnavailable (nothing has been created yet). An offer above ``max_price`` raises
    UsageError (exit 2), before spending, in a dry run and before the Proceed? question alike."""
    try:
        offers = provider.price(
            PriceQuery(
                gpu=request.gpu,
                instance_type=request.instance_type,
                gpu_count=request.gpu_count if request.gpu else None,
                spot=bool(request.spot),  # the market asked for only: an on-demand estimate needs no spot lookup
                region=request.region,
            )
        )
    except RunctlError as exc:
        if before_spending and provider.capabilities().paid:
            if type(exc) not in (ProviderError, PluginError):
                raise  # a refused key, a service down...: already says what is wrong, and nothing was created
            raise PriceUnavailable(
                f"cannot show the price of this request on {provider.name} before spending, so nothing was "
                f"created: {exc.message}",
                (exc.hint + "; " if exc.hint else "") + f"check prices with: runctl price --provider {provider.name}",
                details={"cause": exc.code},
            ) from exc
        return None
    if not offers:
        if before_spending and request.instance_type and provider.capabilities().paid:
            _not_offered(provider, request.instance_type)
        return None
    chosen = [offer for offer in offers if offer.chosen]  # the machine create will make, when the provider says
    key = (
        (lambda o: o.spot_hourly if o.spot_hourly is not None else float("inf"))
        if request.spot
        else (lambda o: o.on_demand_hourly if o.on_demand_hourly is not None else float("inf"))
    )
    offer = chosen[0] if chosen else min(offers, key=key)
    if request.max_price is not None:  # a dry run and the Proceed? question refuse it too, as the run would
        _check_max_price(provider, request, offer, request.max_price)
    return offer


def _check_max_price(provider: Provider, request: InstanceRequest, offer: Offer, cap: float) -> None:
    """--max-price caps every run before anything is created, whatever the provider (a spot bid is also passed
    to the provider; an on-demand machine is only ever capped here)."""
    from runctl_core.errors import UsageError

    market = "spot" if request.spot else "on-demand"
    rate = offer.best_price(bool(request.spot))
    if rate is None:
        if request.spot or not provider.capabilities().paid:
            return  # the spot bid is capped by the provider itself; a free machine is under any cap
        raise UsageError(
            f"{provider.name} has no {market} price for {offer.instance_type}, so --max-price "
            f"${cap}/h cannot be checked; nothing was created",
            f"see its prices with: runctl --provider {provider.name} price; or run without --max-price",
        )
    if rate > cap:
        raise UsageError(
            f"{provider.name} {offer.instance_type} costs ${rate:.4f}/h {market}, above --max-price ${cap}/h; "
            "nothing was created",
            f"raise --max-price to at least {rate:.4f}, or choose a cheaper machine with --instance-type/--gpu "
            f"(compare them: runctl --provider {provider.name} price)",
        )


def _not_offered(provider: Provider, instance_type: str) -> None:
    """A paid provider answered that it has no offer of ``instance_type``: nothing is created for a machine whose
    price cannot be shown (a mistyped type, or one it does not have in that region/now)."""
    from runctl_core.errors import UsageError
    from runctl_core.spending import close_names

    close = close_names(provider, instance_type, "instance_type")
    raise UsageError(
        f"{provider.name} has no offer for --instance-type {instance_type} (not a type it has here, or none "
        "available now); nothing was created",
        (f"did you mean: {', '.join(close)}? " if close else "")
        + f"see what it offers: runctl --provider {provider.name} price",
    )


def describe_estimate(offer: Offer | None, request: InstanceRequest, caps: Capabilities | None = None) -> str:
    """The cost line. "Ends itself" only when the provider declares ``max_runtime`` supported (``caps``)."""
    if offer is None:
        return "price unknown for this request"
    if offer.on_demand_hourly == 0 and not request.spot:
        return f"free (runs on {offer.source or 'this machine'})"
    rate = offer.best_price(request.spot)
    if rate is None and request.spot and offer.on_demand_hourly is not None:
        # spot is never billed above on-demand: that is the honest upper bound when the spot price is unknown
        return (
            f"{offer.instance_type} spot: price not known here ({offer.source or 'no spot price'}); "
            f"at most the on-demand ${offer.on_demand_hourly:.4f}/h"
        )
    if rate is None:
        where = f" in {offer.region}" if offer.region else ""
        known = f" ({offer.source})" if offer.source else ""
        return f"{offer.instance_type}{where}: no {'spot' if request.spot else 'on-demand'} price known{known}"
    gpus = f" ({offer.gpu_count}x {offer.gpu})" if offer.gpu and offer.gpu_count else ""
    text = f"{offer.instance_type}{gpus} {'spot' if request.spot else 'on-demand'} ${rate:.4f}/h"
    if offer.region:
        text += f" in {offer.region}"
    if rate > 0 and request.max_runtime:
        if caps is not None and caps.max_runtime.supported:
            text += f"; at most ${rate * request.max_runtime / 3600:.2f} before it ends itself"
        else:
            why = f" ({caps.max_runtime.reason})" if caps is not None and caps.max_runtime.reason else ""
            text += (
                f"; it does not end itself after --max-runtime{why}: it bills until runctl terminates it "
                "(keep this machine running, or check with: runctl resources list)"
            )
    return text

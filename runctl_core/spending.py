"""What runctl has spent and what it could spend: cost from the journal, and prices from every provider."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runctl_core.errors import RunctlError
from runctl_core.models import Offer, PriceQuery
from runctl_core.session import Session


class CostReport(BaseModel):
    model_config = ConfigDict(defer_build=True)

    since: datetime
    total: float
    by_provider: dict[str, float]
    by_job: dict[str, float]
    instances: int
    instances_without_price: int


def cost_report(session: Session, window_seconds: float) -> CostReport:
    """What runctl's instances cost (rate x billed time) since ``window_seconds`` ago, by provider and by job:
    instance-billed providers by the instances' lifetimes, job-billed ones by each job's own cost."""
    start = datetime.now(timezone.utc) - timedelta(seconds=window_seconds)
    rows = [r for r in session.store.instances() if r.created_at >= start]
    by_provider: dict[str, float] = {}
    by_job: dict[str, float] = {}
    unknown = 0
    for r in rows:
        cost = r.cost()
        if cost is None:
            unknown += 1
            continue
        by_provider[r.instance.provider] = by_provider.get(r.instance.provider, 0.0) + cost
        if r.job_id and r.billing == "instance":
            by_job[r.job_id] = by_job.get(r.job_id, 0.0) + cost
    job_billed = {(r.instance.provider, r.instance.id) for r in rows if r.billing == "job"}
    for job in session.store.jobs(since=start):
        if (job.provider, job.instance_id) in job_billed and job.cost is not None:
            by_provider[job.provider] = by_provider.get(job.provider, 0.0) + job.cost
            by_job[job.id] = by_job.get(job.id, 0.0) + job.cost
    return CostReport(
        since=start,
        total=sum(by_provider.values()),
        by_provider=by_provider,
        by_job=by_job,
        instances=len(rows),
        instances_without_price=unknown,
    )


class NotOffered(BaseModel):
    """A provider that answered but has no offer of the ``--instance-type`` asked for, with its closest types."""

    model_config = ConfigDict(defer_build=True)

    provider: str
    suggestions: list[str] = Field(default_factory=list)


class PriceList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    query: dict[str, Any]
    offers: list[Offer]
    skipped: list[dict[str, str]] = Field(default_factory=list)  # providers that could not answer, and why
    not_offered: list[NotOffered] = Field(default_factory=list)  # answered: no such instance type there
    suggestions: dict[str, list[str]] = Field(default_factory=dict)  # skipped providers' close types, where known


def close_types(provider: Any, wanted: str) -> list[str]:
    """The instance types of ``provider``'s offers closest to ``wanted`` (its unfiltered, on-demand listing;
    nothing when it cannot list)."""
    import difflib

    try:
        names = sorted({o.instance_type for o in provider.price(PriceQuery(spot=False))})
    except RunctlError:
        return []
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(wanted.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[c] for c in close]


def price_list(session: Session, query: PriceQuery, only: str | None = None) -> PriceList:
    """Offers from every installed provider (or ``only`` one, whose errors are raised), cheapest first by the
    price asked for (spot with ``query.spot``, else on-demand). For ``query.instance_type``, a provider with no
    offer of it is ``not_offered`` (when it answered) with did-you-mean from its own offers."""
    from runctl_core.plugins import installed_providers

    names = [only] if only else [i.name for i in installed_providers() if not i.blocked]
    offers: list[Offer] = []
    skipped: list[dict[str, str]] = []
    not_offered: list[NotOffered] = []
    suggestions: dict[str, list[str]] = {}
    for name in names:
        provider = None
        try:
            provider = session.provider(name)
            session.progress.update(f"asking {name} for prices")
            found = provider.price(query)
        except RunctlError as exc:
            if only:
                raise
            skipped.append({"provider": name, "reason": exc.message, "hint": exc.hint})
            close = close_types(provider, query.instance_type) if provider and query.instance_type else []
            if close:
                suggestions[name] = close
            continue
        offers.extend(found)
        if query.instance_type and not found:
            not_offered.append(NotOffered(provider=name, suggestions=close_types(provider, query.instance_type)))

    def sort_key(offer: Offer) -> tuple[float, str]:
        value = offer.spot_hourly if query.spot else offer.on_demand_hourly
        if value is None:
            value = offer.spot_hourly if offer.spot_hourly is not None else offer.on_demand_hourly
        return (value if value is not None else float("inf"), offer.provider)

    offers.sort(key=sort_key)
    return PriceList(
        query=query.model_dump(mode="json", exclude_none=True),
        offers=offers,
        skipped=skipped,
        not_offered=not_offered,
        suggestions=suggestions,
    )

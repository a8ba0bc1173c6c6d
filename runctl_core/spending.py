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


class PriceList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    query: dict[str, Any]
    offers: list[Offer]
    skipped: list[dict[str, str]] = Field(default_factory=list)  # providers that could not answer, and why


def price_list(session: Session, query: PriceQuery, only: str | None = None) -> PriceList:
    """Offers from every installed provider (or ``only`` one, whose errors are raised), cheapest first by the
    price asked for (spot with ``query.spot``, else on-demand)."""
    from runctl_core.plugins import installed_providers

    names = [only] if only else [i.name for i in installed_providers() if not i.blocked]
    offers: list[Offer] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        try:
            provider = session.provider(name)
            session.progress.update(f"asking {name} for prices")
            offers.extend(provider.price(query))
        except RunctlError as exc:
            if only:
                raise
            skipped.append({"provider": name, "reason": exc.message, "hint": exc.hint})

    def sort_key(offer: Offer) -> tuple[float, str]:
        value = offer.spot_hourly if query.spot else offer.on_demand_hourly
        if value is None:
            value = offer.spot_hourly if offer.spot_hourly is not None else offer.on_demand_hourly
        return (value if value is not None else float("inf"), offer.provider)

    offers.sort(key=sort_key)
    return PriceList(query=query.model_dump(mode="json", exclude_none=True), offers=offers, skipped=skipped)

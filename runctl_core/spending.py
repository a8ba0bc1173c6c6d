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
    """A provider that answered but has no offer of the ``--instance-type`` (or ``--gpu``) asked for, with its
    closest names."""

    model_config = ConfigDict(defer_build=True)

    provider: str
    suggestions: list[str] = Field(default_factory=list)


class PriceList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    query: dict[str, Any]
    offers: list[Offer]
    skipped: list[dict[str, str]] = Field(default_factory=list)  # providers that could not answer, and why
    not_offered: list[NotOffered] = Field(default_factory=list)  # answered: no such instance type / GPU there
    suggestions: dict[str, list[str]] = Field(default_factory=dict)  # skipped providers' close names, where known


def close_names(provider: Any, wanted: str, field: str) -> list[str]:
    """The names (``field``: ``instance_type`` or ``gpu``) in ``provider``'s offers closest to ``wanted``, from its
    unfiltered on-demand listing; nothing when it cannot list. ``wanted`` itself is never suggested (a GPU it has,
    but not in the count asked for)."""
    import difflib

    try:
        names = sorted({str(getattr(o, field)) for o in provider.price(PriceQuery(spot=False)) if getattr(o, field)})
    except RunctlError:
        return []
    lowered = {n.lower(): n for n in names if n.lower() != wanted.lower()}
    close = difflib.get_close_matches(wanted.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[c] for c in close]


def _credentials_found(provider: Any) -> bool:
    try:
        return bool(provider.check_credentials(probe=False).found)
    except RunctlError:
        return False


def price_list(session: Session, query: PriceQuery, only: str | None = None) -> PriceList:
    """Offers from every installed provider (or ``only`` one, whose errors are raised), cheapest first by the
    price asked for (spot with ``query.spot``, else on-demand). For ``query.instance_type`` (or ``query.gpu``), a
    provider with no offer of it is ``not_offered`` (when it answered) with did-you-mean from its own offers."""
    from runctl_core.plugins import installed_providers

    names = [only] if only else [i.name for i in installed_providers() if not i.blocked]
    offers: list[Offer] = []
    skipped: list[dict[str, str]] = []
    not_offered: list[NotOffered] = []
    suggestions: dict[str, list[str]] = {}
    wanted, field = (query.instance_type, "instance_type") if query.instance_type else (query.gpu, "gpu")
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
            if provider is not None and not _credentials_found(provider):
                skipped[-1]["credentials"] = "missing"  # text output names these in one line
            close = close_names(provider, wanted, field) if provider and wanted else []
            if close:
                suggestions[name] = close
            continue
        offers.extend(found)
        if wanted and not found and _credentials_found(provider):  # one without could not have offered it
            not_offered.append(NotOffered(provider=name, suggestions=close_names(provider, wanted, field)))

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

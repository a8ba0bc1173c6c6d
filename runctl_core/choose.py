"""``--provider auto``: the cheapest offer that fits, across every installed provider, and the ones after it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from runctl_core.errors import RunctlError, UsageError
from runctl_core.models import Offer, PriceQuery
from runctl_core.session import Session
from runctl_core.workflow import InstanceRequest

AUTO = "auto"


class Candidate(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    offer: Offer
    hourly: float

    def request_for(self, base: InstanceRequest) -> InstanceRequest:
        """The user's request pinned to this offer's machine type."""
        return base.model_copy(
            update={"instance_type": self.offer.instance_type, "gpu_count": self.offer.gpu_count or base.gpu_count}
        )


class Skipped(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    reason: str


def rank(session: Session, request: InstanceRequest) -> tuple[list[Candidate], list[Skipped]]:
    """Offers from every installed provider that can serve ``request``, cheapest first."""
    from runctl_core.plugins import installed_providers

    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    query = PriceQuery(
        gpu=request.gpu,
        instance_type=request.instance_type,
        gpu_count=request.gpu_count if request.gpu else None,
        spot=request.spot or None,
        region=request.region,
    )
    for info in installed_providers():
        if info.blocked:
            continue
        try:
            provider = session.provider(info.name)
            caps = provider.capabilities()
            if request.spot and not caps.spot.supported:
                skipped.append(Skipped(provider=info.name, reason=f"no spot: {caps.spot.reason}"))
                continue
            if request.gpu and not caps.gpu.supported:
                skipped.append(Skipped(provider=info.name, reason=f"no GPU: {caps.gpu.reason}"))
                continue
            creds = provider.check_credentials(probe=False)
            if not creds.found:
                skipped.append(Skipped(provider=info.name, reason=f"no credentials ({creds.hint or creds.message})"))
                continue
            offers = provider.price(query)
        except RunctlError as exc:
            skipped.append(Skipped(provider=info.name, reason=exc.message))
            continue
        for offer in offers:
            hourly = offer.best_price(request.spot)
            if hourly is None or offer.availability == "none":
                continue
            if request.max_price is not None and hourly > request.max_price:
                continue
            candidates.append(Candidate(provider=info.name, offer=offer, hourly=hourly))
    candidates.sort(key=lambda c: (c.hourly, c.provider, c.offer.instance_type))
    return candidates, skipped


def require_candidates(candidates: list[Candidate], skipped: list[Skipped], request: InstanceRequest) -> None:
    if candidates:
        return
    wanted = request.gpu or request.instance_type or "any machine"
    reasons = "; ".join(f"{s.provider}: {s.reason}" for s in skipped) or "no installed provider has a matching offer"
    raise UsageError(
        f"no provider can run {wanted}{' as spot' if request.spot else ''}"
        f"{f' under ${request.max_price}/h' if request.max_price else ''} ({reasons})",
        "compare what is offered with: runctl price" + (f" --gpu {request.gpu}" if request.gpu else ""),
    )

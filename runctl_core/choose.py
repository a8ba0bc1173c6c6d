"""``--provider auto``: the cheapest offer that fits, across every installed provider, and the ones after it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from runctl_core.errors import CredentialsError, RunctlError, UsageError
from runctl_core.models import Offer, PriceQuery
from runctl_core.run_models import InstanceRequest
from runctl_core.session import Session

AUTO = "auto"


class Candidate(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    offer: Offer
    hourly: float
    credentials: bool = True  # False: offered from bundled/public prices in a dry run; a real run needs credentials

    def request_for(self, base: InstanceRequest) -> InstanceRequest:
        """The user's request pinned to this offer's machine type."""
        return base.model_copy(
            update={"instance_type": self.offer.instance_type, "gpu_count": self.offer.gpu_count or base.gpu_count}
        )


class Skipped(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    reason: str
    kind: str = "other"  # "credentials" | "capability" | "other"


def rank(
    session: Session, request: InstanceRequest, *, dry_run: bool = False, nodes: int = 1
) -> tuple[list[Candidate], list[Skipped]]:
    """Offers from every installed provider that can serve ``request``, cheapest first.

    A provider without credentials is skipped, except in a dry run: there its ``price`` hook is still asked (it
    answers from bundled or public price data, or raises CredentialsError) and its offers are marked
    ``credentials=False`` and ranked after every offer a real run could take, so the dry run's choice is the real
    run's whenever some provider has credentials."""
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
                skipped.append(Skipped(provider=info.name, reason=f"no spot: {caps.spot.reason}", kind="capability"))
                continue
            if request.gpu and not caps.gpu.supported:
                skipped.append(Skipped(provider=info.name, reason=f"no GPU: {caps.gpu.reason}", kind="capability"))
                continue
            if nodes > 1 and not caps.multi_node.supported:
                reason = f"no multi-node jobs: {caps.multi_node.reason}"
                skipped.append(Skipped(provider=info.name, reason=reason, kind="capability"))
                continue
            creds = provider.check_credentials(probe=False)
            missing = f"no credentials ({creds.hint or creds.message})"
            if not creds.found and not dry_run:
                skipped.append(Skipped(provider=info.name, reason=missing, kind="credentials"))
                continue
            offers = provider.price(query)
        except CredentialsError as exc:
            skipped.append(Skipped(provider=info.name, reason=f"no credentials ({exc.message})", kind="credentials"))
            continue
        except RunctlError as exc:
            skipped.append(Skipped(provider=info.name, reason=exc.message))
            continue
        fitting = 0
        unpriced = False
        over: tuple[float, Offer] | None = None  # the cheapest offer above --max-price
        for offer in offers:
            hourly = offer.best_price(request.spot)
            if hourly is None or offer.availability == "none":
                unpriced = unpriced or hourly is None
                continue
            if request.max_price is not None and hourly > request.max_price:
                over = min(over, (hourly, offer), key=lambda o: o[0]) if over else (hourly, offer)
                continue
            fitting += 1
            if not creds.found:
                offer = offer.model_copy(
                    update={
                        "source": f"{offer.source or 'provider price data'}; no credentials here, a real run needs "
                        f"them ({creds.message or 'none found'})"
                    }
                )
            candidates.append(Candidate(provider=info.name, offer=offer, hourly=hourly, credentials=creds.found))
        if offers and not fitting:  # say why, rather than leave the provider out of the reasons
            skipped.append(_none_fits(info.name, request, over, unpriced, creds.found, creds.hint or creds.message))
    candidates.sort(key=lambda c: (not c.credentials, c.hourly, c.provider, c.offer.instance_type))
    return candidates, skipped


def _none_fits(
    name: str, request: InstanceRequest, over: tuple[float, Offer] | None, unpriced: bool, creds: bool, hint: str
) -> Skipped:
    """Why a provider that answered with offers has none that fits the request."""
    if over is not None:
        hourly, offer = over
        cap = f"--max-price ${request.max_price}/h"
        reason = f"the cheapest offer, {offer.instance_type} at ${hourly:.4f}/h, is over {cap}"
        return Skipped(provider=name, reason=reason, kind="capability")
    kind = f"{'spot ' if request.spot else ''}price"
    if unpriced and not creds:
        return Skipped(provider=name, reason=f"no {kind} without credentials ({hint})", kind="credentials")
    if unpriced:
        return Skipped(provider=name, reason=f"its offers have no {kind}")
    return Skipped(provider=name, reason="none of its offers is available now", kind="capability")


def require_candidates(candidates: list[Candidate], skipped: list[Skipped], request: InstanceRequest) -> None:
    if candidates:
        return
    wanted = request.gpu or request.instance_type or "any machine"
    if skipped and any(s.kind == "credentials" for s in skipped) and all(s.kind != "other" for s in skipped):
        names = ", ".join(s.provider for s in skipped if s.kind == "credentials")
        raise CredentialsError(
            f"no provider can run {wanted} without credentials: {names} have none configured here "
            f"({'; '.join(f'{s.provider}: {s.reason}' for s in skipped)})",
            "set up one provider's credentials (runctl providers shows what each needs), then retry",
        )
    reasons = "; ".join(f"{s.provider}: {s.reason}" for s in skipped) or "no installed provider has a matching offer"
    raise UsageError(
        f"no provider can run {wanted}{' as spot' if request.spot else ''}"
        f"{f' under ${request.max_price}/h' if request.max_price else ''} ({reasons})",
        "compare what is offered with: runctl price" + (f" --gpu {request.gpu}" if request.gpu else ""),
    )

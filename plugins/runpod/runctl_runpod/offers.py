"""What RunPod offers: GPU name matching, prices and stock per cloud, the ordered create candidates, and the
provider's capabilities (which depend on the API in use)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runctl_core.errors import UsageError
from runctl_core.models import Capabilities, Capability, Offer, PriceQuery
from runctl_runpod.client import RunpodApi
from runctl_runpod.models import GpuType, LowestPrice, StockFilter
from runctl_runpod.settings import PROVIDER, RunpodSettings

CLOUDS = ("SECURE", "COMMUNITY", "ALL")
STOCK = {"high": "high", "medium": "medium", "low": "low"}


def capabilities(s: RunpodSettings, spot_reason: str) -> Capabilities:
    return Capabilities(
        spot=Capability(supported=not spot_reason, reason=spot_reason or "spot pods through the GraphQL API"),
        stop=Capability(supported=False, reason="runctl terminates RunPod pods; a stopped pod still bills its volume"),
        max_runtime=Capability(
            supported=True,
            reason="a timer on the pod ends it through RunPod's API with the pod's own key, counted from its creation",
        ),
        poll_interval=s.poll_interval,
        retries="client",
        shell=Capability(supported=True, reason="the system ssh with the pod's own key"),
        port_forward=Capability(
            supported=True, reason="ssh -L"
        ),  # one retry layer: the API clients retry idempotent calls; SSH paths fall back themselves
        ready_timeout=s.ready_timeout,
    )


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _tokens(text: str) -> set[str]:
    return set(_norm(text).split()) - {"nvidia", "geforce"}


def match_gpus(name: str, catalogue: list[GpuType]) -> list[GpuType]:
    """GPU types a friendly name means: an exact id/display name wins; otherwise every type whose name
    contains all the words (``A100`` -> A100 PCIe, A100 SXM; ``RTX 4090`` -> RTX 4090)."""
    wanted = _norm(name)
    exact = [g for g in catalogue if wanted in (_norm(g.id), _norm(g.display_name))]
    if exact:
        return exact
    words = _tokens(name)
    if not words:
        return []
    return [g for g in catalogue if words <= (_tokens(g.display_name) | _tokens(g.id))]


def split_instance_type(value: str) -> tuple[str | None, str]:
    """``community:NVIDIA GeForce RTX 4090`` -> ("COMMUNITY", "NVIDIA GeForce RTX 4090")."""
    head, sep, tail = value.partition(":")
    if sep and head.upper() in CLOUDS:
        return head.upper(), tail.strip()
    return None, value.strip()


def resolve(api: RunpodApi, name: str) -> list[GpuType]:
    catalogue = api.gpu_types()
    found = match_gpus(name, catalogue)
    if not found:
        known = ", ".join(sorted({g.display_name or g.id for g in catalogue})[:40])
        raise UsageError(f"RunPod has no GPU called {name!r}", f"known GPUs: {known}")
    return found


def lowest(gpu: GpuType, cloud: str) -> tuple[float | None, float | None, str]:
    """(on-demand, spot, stock) per GPU in one cloud. When stock was asked for (``lowestPrice`` / the catalogue's
    availability), a missing stock level or a zero price means "not available" (RunPod answers a combination
    it cannot place with ``stockStatus: null`` and a price of 0); only flat catalogue prices are "unknown"."""
    lp: LowestPrice | None = gpu.secure if cloud == "SECURE" else gpu.community
    if lp is not None:
        on_demand = lp.uninterruptable_price if lp.uninterruptable_price and lp.uninterruptable_price > 0 else None
        spot = lp.minimum_bid_price if lp.minimum_bid_price and lp.minimum_bid_price > 0 else None
        stock = STOCK.get((lp.stock_status or "").lower(), "none")
        if on_demand is None and spot is None:
            stock = "none"
        return on_demand, spot, stock
    flat = gpu.secure_price if cloud == "SECURE" else gpu.community_price
    flat_spot = gpu.secure_spot_price if cloud == "SECURE" else gpu.community_spot_price
    return flat or None, flat_spot or None, "unknown"


def times(value: float | None, count: int) -> float | None:
    return None if value is None else round(value * count, 4)


@dataclass(frozen=True)
class Candidate:
    """One place a pod may be created: a GPU type in a cloud, with its per-GPU prices and stock."""

    gpu: GpuType
    cloud: str
    on_demand: float | None
    spot: float | None
    stock: str


def candidates(priced: list[GpuType], clouds: list[str], spot: bool, count: int) -> list[Candidate]:
    """Every (GPU type, cloud) in stock with a price, cheapest first within each cloud group; ``clouds`` is in
    preference order (a fallback cloud comes after all of the preferred one's candidates), ``ALL`` mixes both."""
    groups = [["SECURE", "COMMUNITY"]] if clouds == ["ALL"] else [[c] for c in clouds]
    ordered: list[Candidate] = []
    for group in groups:
        found = []
        for gpu in priced:
            if gpu.max_gpu_count is not None and count > gpu.max_gpu_count:
                continue
            for cloud in group:
                on_demand, spot_price, stock = lowest(gpu, cloud)
                price = spot_price if spot else on_demand
                if price is None or stock == "none":
                    continue
                found.append(Candidate(gpu, cloud, on_demand, spot_price, stock))
        ordered += sorted(found, key=lambda c: (c.spot if spot else c.on_demand) or float("inf"))
    return ordered


def clouds_for(s: RunpodSettings, forced: str | None) -> list[str]:
    if forced:
        return [forced]
    if s.cloud_type == "SECURE" and s.community_fallback:
        return ["SECURE", "COMMUNITY"]
    return [s.cloud_type]


def price(api: RunpodApi, query: PriceQuery, stock: StockFilter) -> list[Offer]:
    clouds: tuple[str, ...] = ("SECURE", "COMMUNITY")
    if query.instance_type:
        cloud, name = split_instance_type(query.instance_type)
        if cloud and cloud != "ALL":
            clouds = (cloud,)
    else:
        name = query.gpu or ""
    try:
        wanted = resolve(api, name) if name else api.gpu_types()
    except UsageError:
        return []
    count = stock.gpu_count
    source = "RunPod REST v2 catalog" if api.kind == "rest" else "RunPod GraphQL gpuTypes"
    offers: list[Offer] = []
    for gpu in api.gpu_prices([g.id for g in wanted], stock):
        if gpu.max_gpu_count is not None and count > gpu.max_gpu_count:
            continue
        for cloud in clouds:
            on_demand, spot, available = lowest(gpu, cloud)
            if (on_demand is None and spot is None) or (query.spot and spot is None):
                continue
            offers.append(
                Offer(
                    provider=PROVIDER,
                    instance_type=f"{cloud.lower()}:{gpu.id}",
                    gpu=gpu.display_name or gpu.id,
                    gpu_count=count,
                    on_demand_hourly=times(on_demand, count),
                    spot_hourly=times(spot, count),
                    availability=available,
                    region=stock.data_center_ids[0] if stock.data_center_ids else None,
                    source=f"{source} (per GPU x count)",
                )
            )
    return offers

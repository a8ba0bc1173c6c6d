"""On-demand prices from the AWS Price List API (``pricing:GetProducts``), cached on the laptop.

The Price List Query API answers ``GetProducts`` with products as JSON strings whose ``terms.OnDemand`` hold the
hourly USD price (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html;
the endpoint lives in us-east-1 whatever region is priced). runctl asks for Linux, shared tenancy, no
pre-installed software, capacity status "Used" - the list price of an on-demand instance - one instance type per
call, for at most :data:`MAX_TYPES` types per lookup (a listing of every type uses the bundled table). Answers are
cached for :data:`CACHE_DAYS` days in ``RUNCTL_HOME``; any failure (no permission, no network) falls back to the
bundled table, and the offer's ``source`` says which was used and how old it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from runctl_aws.client import AwsClient
from runctl_core.errors import RunctlError

CACHE_DAYS = 7
MAX_TYPES = 8


def _cache_path(state_dir: Path) -> Path:
    return state_dir / "price-list-cache.json"


def _read(path: Path) -> dict[str, list[float]]:
    try:
        data: dict[str, list[float]] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def on_demand_prices(
    make_client: Callable[[], AwsClient], state_dir: Path, instance_types: list[str], region: str
) -> tuple[dict[str, float], str]:
    """Hourly on-demand USD prices from the Price List API (cached) and a description of where they came from;
    empty when the API cannot be asked (then the caller uses the bundled table). ``make_client`` is called only
    on a cache miss, so a warm cache imports no AWS SDK."""
    if not instance_types or len(instance_types) > MAX_TYPES:
        return {}, ""
    path = _cache_path(state_dir)
    cache = _read(path)
    now = time.time()
    found: dict[str, float] = {}
    fetched: list[float] = []
    client: AwsClient | None = None
    for kind in instance_types:
        entry = cache.get(f"{region}/{kind}")
        if entry and now - entry[1] < CACHE_DAYS * 86400:
            if entry[0] >= 0:  # -1: the API listed no such product (also remembered)
                found[kind] = entry[0]
                fetched.append(entry[1])
            continue
        try:
            client = client or make_client()
            price = client.list_price(kind, region)
        except RunctlError:
            return {}, ""  # not allowed or not reachable: the bundled table
        cache[f"{region}/{kind}"] = [price if price is not None else -1.0, now]
        if price is not None:
            found[kind] = price
            fetched.append(now)
    if cache != _read(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache))
        except OSError:
            pass
    if not found:
        return {}, ""
    oldest = datetime.fromtimestamp(min(fetched), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return found, f"AWS Price List API (fetched {oldest}, cached {CACHE_DAYS} days)"


def listed_as_absent(state_dir: Path, instance_type: str, region: str) -> bool:
    """The Price List API answered (within the cache's lifetime) that it lists no ``instance_type`` in ``region``:
    an empty ``PriceList`` for the filters above, which is how GetProducts answers for a type AWS does not sell
    there (API reference above: "PriceList - The list of products that match your filters")."""
    entry = _read(_cache_path(state_dir)).get(f"{region}/{instance_type}")
    return entry is not None and entry[0] < 0 and time.time() - entry[1] < CACHE_DAYS * 86400

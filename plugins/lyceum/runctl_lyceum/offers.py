"""What Lyceum offers: its hardware profiles and their prices (``GET /machine-types``), the capabilities runctl
declares for it, and the one function that turns a request (``--gpu``/``--instance-type``) into a profile."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from runctl_core.errors import UsageError
from runctl_core.models import Capabilities, Capability, Offer, PriceQuery
from runctl_lyceum.models import MachineType
from runctl_lyceum.settings import LyceumSettings

if TYPE_CHECKING:
    from runctl_core.models import InstanceSpec
    from runctl_lyceum.compute import Context

NAME = "lyceum"
_LEGACY = {"cpu", "gpu"}


def _norm(text: str) -> str:
    value = re.sub(r"[^a-z0-9]", "", text.lower())
    return value[len("nvidia") :] if value.startswith("nvidia") else value


def gpu_of(profile: str) -> str | None:
    """``gpu.a100`` -> ``A100``; ``None`` for CPU profiles."""
    parts = profile.split(".")
    return parts[1].upper() if len(parts) > 1 and parts[0] == "gpu" else None


def is_legacy(profile: str) -> bool:
    return profile in _LEGACY or profile.startswith("gpu.t4")


def matches_gpu(profile: str, gpu: str) -> bool:
    parts = profile.split(".")
    if len(parts) < 2 or parts[0] != "gpu":
        return False
    wanted = _norm(gpu)
    return _norm(parts[1]) == wanted or _norm("".join(parts[1:])) == wanted


def capabilities(settings: LyceumSettings) -> Capabilities:
    return Capabilities(
        spot=Capability(
            supported=False,
            reason="Lyceum bills executions per second at one price per hardware profile; it has no spot or "
            "preemptible tier",
        ),
        stop=Capability(
            supported=False,
            reason="a Lyceum instance is a reservation that costs nothing while idle; executions end with their script",
        ),
        log_follow=Capability(supported=True),
        checkpoints=Capability(supported=True),
        max_runtime=Capability(supported=True),  # every execution carries a server-side timeout
        gpu=Capability(supported=True),
        billing="job",  # a reservation is free; executions bill per second while they run
        paid=True,
        poll_interval=settings.poll_interval,
        ready_timeout=60.0,
    )


def machine_types(c: Context) -> list[MachineType]:
    c.require_key()
    return [m for m in c.client.machine_types() if not is_legacy(m.hardware_profile)]


def price(c: Context, query: PriceQuery) -> list[Offer]:
    if query.spot:
        return []
    types = machine_types(c)
    if query.instance_type:
        wanted = {query.instance_type, f"gpu.{query.instance_type}"}
        types = [m for m in types if m.hardware_profile in wanted]
    if query.gpu:
        types = [m for m in types if matches_gpu(m.hardware_profile, query.gpu)]
    if query.gpu_count and query.gpu_count > 1:
        return []
    allowed = set(c.client.available_hardware()) if types else set()
    # the profile create starts when the query names none (resolve_profile): the price shown before spending
    default = None if query.instance_type or query.gpu else c.settings.default_instance_type
    return [
        Offer(
            provider=NAME,
            instance_type=m.hardware_profile,
            gpu=gpu_of(m.hardware_profile),
            gpu_count=1 if gpu_of(m.hardware_profile) else 0,
            on_demand_hourly=m.price_per_hour,
            availability="none" if allowed and m.hardware_profile not in allowed else "unknown",
            source="Lyceum API /machine-types (billed per second)",
            chosen=m.hardware_profile == default,
        )
        for m in types
    ]


def resolve_profile(c: Context, spec: InstanceSpec) -> MachineType:
    """The hardware profile for ``spec``: the named one, the cheapest with the GPU, or the default."""
    types = machine_types(c)
    names = ", ".join(m.hardware_profile for m in types) or "none"
    if spec.gpu_count > 1:
        raise UsageError(
            f"Lyceum executions run on one hardware profile; {spec.gpu_count} GPUs is not offered",
            f"drop --gpu-count, or pick a profile: {names}",
        )
    if spec.instance_type:
        for m in types:
            if m.hardware_profile in (spec.instance_type, f"gpu.{spec.instance_type}"):
                return m
        raise UsageError(
            f"Lyceum has no hardware profile {spec.instance_type!r}",
            f"choose one of: {names} (prices: runctl price --provider lyceum)",
        )
    if spec.gpu:
        matching = [m for m in types if matches_gpu(m.hardware_profile, spec.gpu)]
        if not matching:
            raise UsageError(
                f"Lyceum has no hardware profile with a {spec.gpu} GPU",
                f"choose one of: {names} (prices: runctl price --provider lyceum)",
            )
        return min(matching, key=lambda m: m.price_per_hour if m.price_per_hour is not None else math.inf)
    for m in types:
        if m.hardware_profile == c.settings.default_instance_type:
            return m
    raise UsageError(
        f"Lyceum does not offer the default profile {c.settings.default_instance_type!r}",
        f"pass --instance-type, one of: {names}",
    )

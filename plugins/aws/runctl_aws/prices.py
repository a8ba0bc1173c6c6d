"""The bundled, dated on-demand price table and the GPU name -> instance type map."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).with_name("data") / "prices.json"
GPU_FAMILIES = (
    "g4dn",
    "g4ad",
    "g5",
    "g5g",
    "g6",
    "g6e",
    "gr6",
    "p2",
    "p3",
    "p3dn",
    "p4d",
    "p4de",
    "p5",
    "p5e",
    "p5en",
    "g3",
    "g3s",
    "inf1",
    "inf2",
    "trn1",
)
GPU_ALIASES = {
    "A100": "A100",
    "A100-40GB": "A100",
    "H100": "H100",
    "T4": "T4",
    "TESLA T4": "T4",
    "A10G": "A10G",
    "A10": "A10G",
    "L4": "L4",
    "V100": "V100",
    "TESLA V100": "V100",
}


@dataclass(frozen=True)
class TypeInfo:
    name: str
    vcpus: float
    memory_gb: float
    gpu: str | None
    gpu_count: int


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return data


def table_date() -> str:
    return str(table()["date"])


def table_age_days() -> int:
    from datetime import date

    return (date.today() - date.fromisoformat(table_date())).days


def type_info(name: str) -> TypeInfo | None:
    raw = table()["types"].get(name)
    if raw is None:
        return None
    return TypeInfo(
        name=name, vcpus=raw["vcpus"], memory_gb=raw["memory_gb"], gpu=raw["gpu"], gpu_count=raw["gpu_count"]
    )


def known_types() -> list[str]:
    return sorted(table()["types"])


def on_demand(name: str, region: str) -> float | None:
    value = table()["on_demand"].get(region, {}).get(name)
    return float(value) if value is not None else None


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def is_gpu_type(instance_type: str) -> bool:
    info = type_info(instance_type)
    return bool(info and info.gpu) or family(instance_type) in GPU_FAMILIES


def is_arm_type(instance_type: str) -> bool:
    """Graviton families (m7g, c6gn, t4g, ...) need an arm64 AMI."""
    return bool(re.match(r"^[a-z]+\d+g[a-z]*$", family(instance_type))) and family(instance_type) not in GPU_FAMILIES


def normalize_gpu(name: str) -> str | None:
    return GPU_ALIASES.get(name.strip().upper().replace("NVIDIA ", ""))


def types_for_gpu(gpu: str, count: int | None) -> list[TypeInfo]:
    """Instance types carrying ``gpu`` (exactly ``count`` of them when given), cheapest first (us-east-1)."""
    wanted = normalize_gpu(gpu)
    if wanted is None:
        return []
    found = [info for name in known_types() if (info := type_info(name)) and info.gpu == wanted]
    if count is not None:
        found = [info for info in found if info.gpu_count == count]
    return sorted(found, key=lambda info: (on_demand(info.name, "us-east-1") or 1e9, info.name))


def choose_type_for_gpu(gpu: str, count: int) -> TypeInfo | None:
    """The cheapest type with exactly ``count`` GPUs, else the cheapest with more."""
    exact = types_for_gpu(gpu, count)
    if exact:
        return exact[0]
    more = [info for info in types_for_gpu(gpu, None) if info.gpu_count >= count]
    more.sort(key=lambda info: (info.gpu_count, on_demand(info.name, "us-east-1") or 1e9))
    return more[0] if more else None


def known_gpus() -> list[str]:
    return sorted({str(raw["gpu"]) for raw in table()["types"].values() if raw["gpu"]})

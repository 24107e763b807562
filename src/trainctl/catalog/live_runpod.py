"""Live RunPod prices from ``GET /v2/catalog/gpus`` (per GPU, per cloud)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import gpus
from .offer import Offer

SOURCE = "RunPod GET /v2/catalog/gpus"


def offers_from_catalog(payload: dict[str, Any], now: datetime) -> list[Offer]:
    """One per-GPU offer for each GPU type and cloud (secure, community) it is
    rented in. A model missing from the naming table keeps a derived name."""
    stamp = now.isoformat(timespec="seconds")
    offers = []
    for gpu in payload.get("gpus", []):
        memory = gpu.get("memory")
        name = gpus.canonical(gpu["id"], memory) or gpus.canonical(gpu.get("name", ""), memory)
        prices, max_count = gpu.get("price") or {}, gpu.get("maxCount") or {}
        for cloud in ("secure", "community"):
            rate = prices.get(cloud)
            if not gpu.get(cloud) or not rate:
                continue
            offers.append(
                Offer(
                    provider="runpod",
                    offer_id=gpu["id"],
                    gpu=name or gpus.derived_name(gpu.get("name") or gpu["id"]),
                    gpu_count=1,
                    gpu_memory_gb=float(memory) if memory else None,
                    cloud=cloud,
                    per_gpu=True,
                    max_gpu_count=max_count.get(cloud) or None,
                    on_demand=float(rate),
                    on_demand_source=SOURCE,
                    on_demand_as_of=stamp,
                )
            )
    return sorted(offers, key=lambda o: (o.gpu, o.offer_id, o.cloud))

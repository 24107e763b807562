"""Live RunPod prices: on-demand from ``GET /v2/catalog/gpus`` (per GPU, per cloud),
spot from the GraphQL ``gpuTypes`` query (REST v2 has no spot prices), both through
the provider's client (``client.RunPodClient``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...catalog import gpus
from ...catalog.offer import Offer
from ...errors import TrainctlError

SOURCE = "RunPod GET /v2/catalog/gpus"
SPOT_SOURCE = "RunPod GraphQL gpuTypes spot price"

#: GPU type id -> cloud (secure, community) -> spot $/hour per GPU
SpotPrices = dict[str, dict[str, float]]


def offers_from_catalog(
    payload: dict[str, Any], now: datetime, spot: SpotPrices | None = None
) -> list[Offer]:
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
            spot_rate = (spot or {}).get(gpu["id"], {}).get(cloud)
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
                    spot=spot_rate,
                    spot_source=SPOT_SOURCE if spot_rate else "",
                    spot_as_of=stamp if spot_rate else "",
                )
            )
    return sorted(offers, key=lambda o: (o.gpu, o.offer_id, o.cloud))


def fetch(now: datetime) -> tuple[list[Offer], list[str]]:
    """Live offers, through the provider's client. The GPU list read here also
    replaces the provider's cached one, so a refresh clears a stale or bad cache."""
    from .provider import RunPodProvider

    provider = RunPodProvider()
    payload = {"gpus": provider.gpu_catalog(refresh=True)}
    spot: SpotPrices = {}
    notes = []
    try:
        for gpu in payload["gpus"]:
            prices = provider.client.spot_prices(gpu["id"], 1)
            if prices is not None:
                spot[gpu["id"]] = dict(prices.clouds)
    except TrainctlError as e:
        spot = {}
        notes.append(f"spot: RunPod's GraphQL spot prices could not be read ({e}); none kept")
    return offers_from_catalog(payload, now, spot), notes

"""Live Lyceum prices from ``GET /api/v2/external/vms/availability``.

Lyceum publishes no price list: its offers exist only once refreshed. Each variant
gives a per-GPU price for one instance type (on-demand or spot) and the GPU counts
available now; an offer is made per hardware profile and available count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...catalog import gpus
from ...catalog.offer import Offer

SOURCE = "Lyceum GET /api/v2/external/vms/availability"


def offers_from_availability(payload: dict[str, Any], now: datetime) -> list[Offer]:
    stamp = now.isoformat(timespec="seconds")
    # hardware profile -> instance type -> (per-GPU price, available counts)
    profiles: dict[str, dict[str, tuple[float, set[int]]]] = {}
    for variant in payload.get("available_instance_variants", []):
        profile, kind = variant.get("hardware_profile", ""), variant.get("instance_type", "")
        rate, counts = variant.get("price_per_hour"), variant.get("available_gpus_per_instance")
        if not profile or rate is None or kind not in ("on-demand", "spot"):
            continue
        profiles.setdefault(profile, {})[kind] = (float(rate), {int(n) for n in counts or ()})
    offers = []
    for profile, kinds in profiles.items():
        name = gpus.canonical(profile)
        if name is None and profile.lower().startswith("cpu"):
            continue  # CPU-only machines are not GPU offers
        gpu = name or gpus.derived_name(profile)
        memory = gpus.per_gpu_memory(gpu, None, 1)
        od, sp = kinds.get("on-demand"), kinds.get("spot")
        for count in sorted(set().union(*(counts for _, counts in kinds.values()))):
            if count < 1:
                continue
            od_rate = round(od[0] * count, 6) if od and count in od[1] else None
            sp_rate = round(sp[0] * count, 6) if sp and count in sp[1] else None
            offers.append(
                Offer(
                    provider="lyceum",
                    offer_id=profile,
                    gpu=gpu,
                    gpu_count=count,
                    gpu_memory_gb=memory,
                    on_demand=od_rate,
                    on_demand_source=SOURCE if od_rate is not None else "",
                    on_demand_as_of=stamp if od_rate is not None else "",
                    spot=sp_rate,
                    spot_source=SOURCE if sp_rate is not None else "",
                    spot_as_of=stamp if sp_rate is not None else "",
                )
            )
    return sorted(offers, key=lambda o: (o.gpu, o.gpu_count))


def fetch(now: datetime) -> tuple[list[Offer], list[str]]:
    """Lyceum's offers now, through the provider's API client and credentials."""
    from .provider import LyceumProvider

    return offers_from_availability(LyceumProvider().availability(), now), []

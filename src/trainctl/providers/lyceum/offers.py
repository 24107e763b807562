"""Live Lyceum prices from ``GET /api/v2/external/vms/availability``.

Lyceum publishes no price list: its offers exist only once refreshed. Each variant
gives a per-GPU price for one instance type (on-demand or spot) and the GPU counts
available now; an offer is made per hardware profile and available count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...catalog import gpus
from ...catalog.offer import Offer
from . import settings
from .answers import KINDS, Availability
from .client import LyceumClient

SOURCE = "Lyceum GET /api/v2/external/vms/availability"


def offers_from_availability(payload: Any, now: datetime) -> list[Offer]:
    """The offers of an availability answer as Lyceum sent it."""
    return offers_from(Availability.parse(payload), now)


def offers_from(availability: Availability, now: datetime) -> list[Offer]:
    stamp = now.isoformat(timespec="seconds")
    # hardware profile -> instance type -> (per-GPU price, available counts)
    profiles: dict[str, dict[str, tuple[float, set[int]]]] = {}
    for v in availability.variants:
        if v.instance_type in KINDS.values():
            profiles.setdefault(v.profile, {})[v.instance_type] = (
                v.price_per_hour,
                set(v.gpu_counts),
            )
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
    """Lyceum's offers now, through the API client and the provider's settings."""
    return offers_from(LyceumClient(settings.load()).availability(), now), []

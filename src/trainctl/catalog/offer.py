"""One rentable configuration and its prices, as a catalog row."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

#: the CSV columns, in order (bundled files and the live cache share them)
COLUMNS = (
    "provider",
    "offer_id",
    "gpu",
    "gpu_count",
    "gpu_memory_gb",
    "vcpus",
    "ram_gb",
    "region",
    "cloud",
    "per_gpu",
    "max_gpu_count",
    "on_demand",
    "on_demand_source",
    "on_demand_as_of",
    "spot",
    "spot_source",
    "spot_as_of",
)


@dataclass(frozen=True)
class Offer:
    """What one provider rents for one price.

    ``offer_id`` is what the provider's create call takes: the AWS instance type,
    the RunPod GPU type id, the Lyceum hardware profile. Prices are US dollars per
    hour for the whole offer (all ``gpu_count`` GPUs). ``per_gpu`` offers (RunPod)
    are priced per GPU and the count is chosen at launch, up to ``max_gpu_count``
    when the provider states it; ``with_count`` gives the offer for N GPUs. Each
    price names its source and the time it was read (ISO date or timestamp, empty
    when the source is undated)."""

    provider: str
    offer_id: str
    gpu: str
    gpu_count: int
    gpu_memory_gb: float | None = None  # per GPU
    vcpus: int | None = None
    ram_gb: float | None = None
    region: str = ""  # empty: the provider places the machine
    cloud: str = ""  # RunPod's secure or community cloud; empty elsewhere
    per_gpu: bool = False
    max_gpu_count: int | None = None
    on_demand: float | None = None
    on_demand_source: str = ""
    on_demand_as_of: str = ""
    spot: float | None = None
    spot_source: str = ""
    spot_as_of: str = ""

    # --- prices ----------------------------------------------------------------

    def hourly(self, spot: bool = False) -> float | None:
        return self.spot if spot else self.on_demand

    def total(self, hours: float, spot: bool = False) -> float | None:
        rate = self.hourly(spot)
        return None if rate is None else round(rate * hours, 4)

    def source(self, spot: bool = False) -> str:
        return self.spot_source if spot else self.on_demand_source

    def as_of(self, spot: bool = False) -> str:
        return self.spot_as_of if spot else self.on_demand_as_of

    def age_seconds(self, spot: bool = False, now: datetime | None = None) -> float | None:
        """How old the price is, or None when its source is undated."""
        when = parse_time(self.as_of(spot))
        if when is None:
            return None
        return max(0.0, ((now or datetime.now(timezone.utc)) - when).total_seconds())

    def with_count(self, count: int) -> Offer | None:
        """This offer for ``count`` GPUs: per-GPU offers scale (None beyond the
        provider's maximum); fixed instances match only their own count."""
        if not self.per_gpu:
            return self if count == self.gpu_count else None
        if self.max_gpu_count is not None and count > self.max_gpu_count:
            return None

        def scale(price: float | None) -> float | None:
            return None if price is None else round(price * count / self.gpu_count, 6)

        return replace(
            self, gpu_count=count, on_demand=scale(self.on_demand), spot=scale(self.spot)
        )

    # --- presentation ----------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.offer_id} ({self.cloud})" if self.cloud else self.offer_id

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # --- CSV -------------------------------------------------------------------

    def to_row(self) -> dict[str, str]:
        def text(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, bool):
                return "1" if value else ""
            if isinstance(value, float):
                return f"{value:g}" if value == int(value) else repr(value)
            return str(value)

        return {c: text(getattr(self, c)) for c in COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Offer:
        def num(key: str) -> float | None:
            v = row.get(key) or ""
            return float(v) if v else None

        def whole(key: str) -> int | None:
            v = row.get(key) or ""
            return int(v) if v else None

        return cls(
            provider=row["provider"],
            offer_id=row["offer_id"],
            gpu=row["gpu"],
            gpu_count=int(row["gpu_count"]),
            gpu_memory_gb=num("gpu_memory_gb"),
            vcpus=whole("vcpus"),
            ram_gb=num("ram_gb"),
            region=row.get("region") or "",
            cloud=row.get("cloud") or "",
            per_gpu=bool(row.get("per_gpu")),
            max_gpu_count=whole("max_gpu_count"),
            on_demand=num("on_demand"),
            on_demand_source=row.get("on_demand_source") or "",
            on_demand_as_of=row.get("on_demand_as_of") or "",
            spot=num("spot"),
            spot_source=row.get("spot_source") or "",
            spot_as_of=row.get("spot_as_of") or "",
        )


def parse_time(text: str) -> datetime | None:
    """An ISO date or timestamp as an aware datetime (dates are midnight UTC)."""
    if not text:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def format_age(seconds: float | None) -> str:
    """``45s``, ``12m``, ``5h``, ``308d``; ``undated`` for None."""
    if seconds is None:
        return "undated"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"

"""What running machines cost: $/hour and spend so far, from the stored record.

The rate is the price the machine was rented at, as its provider reported it at
create time (spot or not); when a provider reported none, the catalog's price for
the same instance type, GPU count and market stands in, marked as such. Spend so
far is that rate times the hours since the real launch time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..store import CREATING, ResourceRecord
from ..types import ResourceState
from . import query, store

RENTED = "rented"
CATALOG = "catalog"


@dataclass
class Spend:
    rate: float | None  # $/hour
    rate_source: str  # RENTED, CATALOG, or "" when unknown
    hours: float
    billing: bool
    spent: float | None  # None when not billing or the rate is unknown

    def to_dict(self) -> dict[str, object]:
        return {
            "price_per_hour": self.rate,
            "price_source": self.rate_source or None,
            "hours": round(self.hours, 4),
            "billing": self.billing,
            "spent": self.spent,
        }


def is_billing(state: str) -> bool:
    if state == CREATING:
        return True
    try:
        return ResourceState(state).is_billing
    except ValueError:
        return True  # a state we cannot read may still bill


def rate(record: ResourceRecord) -> tuple[float | None, str]:
    if record.price_per_hour is not None:
        return record.price_per_hour, RENTED
    if record.provider in store.PROVIDERS and record.instance_type:
        found = query.price(
            record.provider,
            record.instance_type,
            spot=record.spot,
            gpu_count=record.gpu_count or None,
        )
        if found is not None:
            return found, CATALOG
    return None, ""


def spend(record: ResourceRecord, state: str, now: datetime | None = None) -> Spend:
    hourly, source = rate(record)
    billing = is_billing(state)
    hours = record.hours_running(now)
    spent = round(hourly * hours, 4) if billing and hourly is not None else None
    return Spend(hourly, source, hours, billing, spent)


def totals(spends: list[Spend]) -> tuple[float, float, int]:
    """($/hour of everything billing, spent so far, machines billing at an unknown rate)."""
    billing = [s for s in spends if s.billing]
    per_hour = round(sum(s.rate for s in billing if s.rate is not None), 4)
    spent = round(sum(s.spent for s in billing if s.spent is not None), 4)
    return per_hour, spent, sum(1 for s in billing if s.rate is None)

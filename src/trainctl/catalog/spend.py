"""What running machines cost: $/hour and spend so far, from the stored record.

The rate is the price the machine was rented at, as its provider reported it at
create time (spot or not); when a provider reported none, the catalog's price for
the same instance type, GPU count and market stands in, marked as such. Spend so
far is that rate times the hours billed: from the real launch time, less the time the
machine was stopped (its history in the store), or since launch where no history is
kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..store import CREATING, MachineRecord, ResourceRecord
from ..types import ResourceState, ResourceStatus
from . import query, sources

RENTED = "rented"
CATALOG = "catalog"


@dataclass
class Spend:
    rate: float | None  # $/hour
    rate_source: str  # RENTED, CATALOG, or "" when unknown
    hours: float | None  # since launch
    billing: bool
    spent: float | None  # None when not billing or the rate is unknown

    def to_dict(self) -> dict[str, object]:
        return {
            "price_per_hour": self.rate,
            "price_source": self.rate_source or None,
            "hours": None if self.hours is None else round(self.hours, 4),
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


@dataclass
class Rented:
    """What spend is computed from, for a stored record or a provider's live status."""

    provider: str
    instance_type: str | None
    gpu_count: int
    spot: bool
    price_per_hour: float | None
    launched: datetime | None
    #: hours billed so far where the history knows them (stopped time left out)
    billed_hours: float | None = None

    @classmethod
    def of_record(cls, record: ResourceRecord, history: MachineRecord | None = None) -> Rented:
        return cls(
            record.provider,
            record.instance_type,
            record.gpu_count,
            record.spot,
            record.price_per_hour,
            datetime.fromisoformat(record.launched_at or record.created_at),
            history.hours() if history is not None else None,
        )

    @classmethod
    def of_status(cls, status: ResourceStatus) -> Rented:
        return cls(
            status.provider,
            status.instance_type,
            status.gpu_count,
            status.spot,
            status.cost_per_hour,
            status.launch_time,
        )


def rate(rented: Rented) -> tuple[float | None, str]:
    if rented.price_per_hour is not None:
        return rented.price_per_hour, RENTED
    if sources.has_offers(rented.provider) and rented.instance_type:
        found = query.price(
            rented.provider,
            rented.instance_type,
            spot=rented.spot,
            gpu_count=rented.gpu_count or None,
        )
        if found is not None:
            return found, CATALOG
    return None, ""


def spend(rented: Rented, state: str, now: datetime | None = None) -> Spend:
    """Spend so far; with no known launch time the hours (and spend) are unknown."""
    hourly, source = rate(rented)
    billing = is_billing(state)
    hours = rented.billed_hours
    if hours is None and rented.launched is not None:
        elapsed = (now or datetime.now(timezone.utc)) - rented.launched
        hours = max(elapsed.total_seconds(), 0.0) / 3600
    known = (
        hourly is not None and hours is not None and (billing or rented.billed_hours is not None)
    )
    return Spend(hourly, source, hours, billing, round(hourly * hours, 4) if known else None)


def totals(spends: list[Spend]) -> tuple[float, float, int]:
    """($/hour of everything billing, spent so far by all (a stopped machine spent
    before it stopped), machines billing at an unknown rate)."""
    billing = [s for s in spends if s.billing]
    per_hour = round(sum(s.rate for s in billing if s.rate is not None), 4)
    spent = round(sum(s.spent for s in spends if s.spent is not None), 4)
    return per_hour, spent, sum(1 for s in billing if s.rate is None)

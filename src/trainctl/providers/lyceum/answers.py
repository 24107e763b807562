"""Reading Lyceum's answers: checked against ``reference/lyceum/api.md`` before use.

An answer that is not what api.md describes (``null``, a string for a number, a
missing field) is an ``OperationFailed`` of one line, never taken as "nothing
there". ``Availability.parse`` is the one reader of ``GET /vms/availability``: the
provider chooses its hardware from it and the catalog makes its offers from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...errors import OperationFailed

AVAILABILITY = "/vms/availability"
#: the purchase kinds of ``instance_type``, as trainctl's spot flag
KINDS = {False: "on-demand", True: "spot"}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def malformed(what: str, key: str | None, value: Any) -> OperationFailed:
    """An answer that is not what api.md describes: one line, never a traceback."""
    part = f"{key} is {_shown(value)}" if key else f"got {_shown(value)}"
    return OperationFailed(
        f"Lyceum answered {what} with something trainctl cannot read ({part})",
        hint="try again; if it keeps happening, the Lyceum API may have changed",
    )


def an_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(what, None, value)
    return value


def objects(raw: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    """``raw[key]``, a list of JSON objects (missing: none, for optional lists)."""
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise malformed(what, key, value)
    return value


def text(raw: dict[str, Any], key: str, what: str, *, required: bool = False) -> str:
    """A string field ("" when absent or null, unless ``required``)."""
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise malformed(what, key, value)
    return value


def number(raw: dict[str, Any], key: str, what: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise malformed(what, key, value)
    return float(value)


def timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Variant:
    """One offer of ``/vms/availability``; ``price_per_hour`` is per GPU."""

    profile: str
    instance_type: str  # on-demand | spot
    price_per_hour: float
    gpu_counts: tuple[int, ...]

    @classmethod
    def parse(cls, raw: Any) -> Variant:
        """One entry of ``available_instance_variants``; malformed, it is an error."""
        what = f"an offer of {AVAILABILITY}"
        raw = an_object(raw, what)
        counts = raw.get("available_gpus_per_instance")
        if counts is None:
            counts = []
        if not isinstance(counts, list) or not all(is_int(n) for n in counts):
            raise malformed(what, "available_gpus_per_instance", counts)
        price = number(raw, "price_per_hour", what)
        if price is None:
            raise malformed(what, "price_per_hour", None)
        return cls(
            text(raw, "hardware_profile", what, required=True),
            text(raw, "instance_type", what, required=True),
            price,
            tuple(counts),
        )

    def hourly(self, gpus: int) -> float:
        return round(self.price_per_hour * max(gpus, 1), 4)

    def describe(self) -> str:
        if not any(self.gpu_counts):
            return f"{self.profile} {self.instance_type} (no GPU, ${self.price_per_hour}/h)"
        counts = "/".join(str(n) for n in self.gpu_counts)
        return f"{self.profile} {self.instance_type} ({counts} GPUs, ${self.price_per_hour}/GPU-h)"


@dataclass(frozen=True)
class Availability:
    """What ``GET /vms/availability`` offers now."""

    variants: tuple[Variant, ...]

    @classmethod
    def parse(cls, payload: Any) -> Availability:
        """The whole answer; one unreadable offer makes it an error."""
        key = "available_instance_variants"
        offers = an_object(payload, AVAILABILITY).get(key)
        if not isinstance(offers, list):
            raise malformed(AVAILABILITY, key, offers)
        return cls(tuple(Variant.parse(v) for v in offers))

    def price(self, profile: str, instance_type: str) -> float | None:
        """The per-GPU price of ``profile`` as ``instance_type``, if offered."""
        for v in self.variants:
            if v.profile == profile and v.instance_type == instance_type:
                return v.price_per_hour
        return None

    def describe(self) -> str:
        return "; ".join(v.describe() for v in self.variants) or "nothing right now"

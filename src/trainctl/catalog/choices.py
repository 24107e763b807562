"""Several resource candidates (a SkyPilot task's ``any_of`` / ``ordered``): the offers
to try, in SkyPilot's order, the next one on no capacity.

Each candidate is a provider (or none: any usable provider) and create options. One
with a GPU and no instance type is looked up in the catalogs like ``--provider
cheapest`` (its provider's offers, or every usable provider's), at most
``cheapest.MAX_TRIES`` offers each, cheapest first; any other (an instance type, no
GPU, a provider without a catalog) is one try with its provider as given, price
unknown. ``ordered`` candidates are tried in their order; ``any_of`` ones (SkyPilot's
optimizer picks the cheapest) all together cheapest first, the ones of unknown price
last. A candidate with nothing to try (no offer, a provider without credentials) is
named with why, never dropped without a word. A try moves on to the next on no
capacity, or on a refusal of that offer before anything was made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import registry
from ..errors import BadInput, NoCapacity
from ..types import CreateResourceOptions
from . import cheapest, query, sources
from .offer import Offer
from .usable import usable_providers

T = TypeVar("T")


@dataclass
class Try:
    """One create to try: candidate ``number``'s options on ``provider``."""

    number: int
    provider: str
    options: CreateResourceOptions
    offer: Offer | None = None

    def describe(self) -> str:
        if self.offer is None:
            what = f" {self.options.gpu}" if self.options.gpu else ""
            kind = f" {self.options.instance_type}" if self.options.instance_type else ""
            return f"{self.provider}{what}{kind} (price unknown)"
        return cheapest.describe(self.offer, self.options.spot, f"candidate {self.number}")

    def price(self) -> float | None:
        return self.offer.hourly(self.options.spot) if self.offer else None

    def to_dict(self) -> dict[str, Any]:
        offer = self.offer
        return {
            "candidate": self.number,
            "provider": self.provider,
            "gpu": str(self.options.gpu) if self.options.gpu else None,
            "instance_type": self.options.instance_type,
            "region": self.options.region,
            "spot": self.options.spot,
            "offer": offer.label if offer else None,
            "price_per_hour": self.price(),
        }


def plan(
    candidates: list[tuple[str | None, CreateResourceOptions]],
    *,
    ordered: bool,
    max_tries: int = cheapest.MAX_TRIES,
) -> tuple[list[Try], list[str]]:
    """The tries, in the order to make them, and why each candidate that has none
    has none."""
    usable, left_out = usable_providers(sources.providers())
    why_not = dict(left_out)
    catalogs: dict[str, list[Offer]] = {}
    tries: list[Try] = []
    unrentable: list[str] = []
    for number, (provider, options) in enumerate(candidates, 1):
        label = f"candidate {number} ({_label(provider, options)})"
        if provider is not None and provider in why_not:
            unrentable.append(f"{label}: {provider} has {why_not[provider]} here")
            continue
        if (
            options.gpu is None
            or options.instance_type
            or (provider is not None and provider not in sources.providers())
        ):
            tries.append(Try(number, provider or registry.select(None), options))
            continue
        names = usable if provider is None else [provider]
        try:
            offers = _offers(names, options, catalogs)[:max_tries]
        except BadInput as e:  # a GPU no catalog knows
            unrentable.append(f"{label}: {e.message}")
            continue
        if not offers:
            others = "" if provider else "; ".join(f"{n}: {why}" for n, why in left_out)
            where = (
                f"no offer on {provider or ', '.join(usable)}"
                if provider or usable
                else ("no usable provider with prices")
            )
            unrentable.append(f"{label}: {where}" + (f" ({others})" if others else ""))
        for offer in offers:
            chosen = cheapest.options_for(offer, options)
            tries.append(Try(number, offer.provider, chosen, offer))
    if not ordered:
        # stable: equal prices, and unknown ones (last), keep the candidates' order
        tries.sort(key=lambda t: (t.price() is None, t.price() or 0.0))
    return tries, unrentable


def _label(provider: str | None, options: CreateResourceOptions) -> str:
    parts = [str(options.gpu) if options.gpu else "no GPU"]
    if options.instance_type:
        parts.append(options.instance_type)
    parts.append(f"on {provider}" if provider else "on any provider")
    if options.region:
        parts.append(f"in {options.region}")
    return " ".join(parts)


def _offers(
    names: list[str], options: CreateResourceOptions, catalogs: dict[str, list[Offer]]
) -> list[Offer]:
    """The matching offers of these providers, cheapest first (``cheapest.candidates``),
    in the candidate's region where it names one."""
    for name in names:
        if name not in catalogs:
            (loaded,) = query.load(name)
            catalogs[name] = loaded.offers
    found = cheapest.candidates(options, [o for n in names for o in catalogs[n]])
    return [o for o in found if not (options.region and o.region and o.region != options.region)]


def first_with_capacity(
    tries: list[Try],
    unrentable: list[str],
    attempt: Callable[[Try], T],
    *,
    report: Callable[[str], None],
) -> T:
    """``attempt`` each try in turn until one has capacity; returns what it returned.

    A try refused as asked (``BadInput`` before anything was made, such as an offer's
    cloud that cannot hold a group, or a price above the cap) moves on too, named:
    another offer may take the same request. ``attempt`` raises anything else, or
    whatever comes once something was made, as not ``NoCapacity`` nor ``BadInput``."""
    for line in unrentable:
        report(f"cannot rent {line}")
    if not tries:
        raise BadInput("no candidate can be rented: " + "; ".join(unrentable))
    full, refused = [], []
    for i, one in enumerate(tries, 1):
        report(f"trying {one.describe()} ({i} of {len(tries)})")
        where = f"{one.provider} (candidate {one.number})"
        try:
            return attempt(one)
        except NoCapacity as e:
            report(f"no capacity on {where}: {e.message}")
            full.append(f"candidate {one.number} on {one.provider}")
        except BadInput as e:
            report(f"{where} refused it: {e.message}")
            refused.append(f"candidate {one.number} on {one.provider}: {e.message}")
    left = f"; cannot rent {'; '.join(unrentable)}" if unrentable else ""
    if not full:
        raise BadInput("no candidate could be rented (" + "; ".join(refused) + ")" + left)
    raise NoCapacity(
        f"no capacity for any candidate ({'; '.join(full)})"
        + (f"; refused: {'; '.join(refused)}" if refused else "")
        + left,
        hint="try again later, or change the candidates",
    )

"""``--provider cheapest``: rent the cheapest matching offer, the next one on no capacity.

The candidates are the catalog offers with exactly the GPUs asked for, among the
providers usable here (installed, credentials present), cheapest first for the
price kind asked for (spot or on-demand). Each try is reported; a ``NoCapacity``
answer (no capacity, or an offer the account may not use, as RunPod's 403 on create)
moves on to the next offer, any other error stops. At most ``MAX_TRIES``
offers are tried, so a market without capacity fails in bounded time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from .. import registry
from ..errors import BadInput, NoCapacity
from ..types import CreateResourceOptions, GpuSpec
from . import query, sources
from .offer import Offer
from .usable import usable_providers

CHEAPEST = "cheapest"
MAX_TRIES = 3

T = TypeVar("T")


def validate(options: CreateResourceOptions) -> None:
    if options.gpu is None:
        raise BadInput("--provider cheapest needs --gpu, e.g. --gpu A100 or --gpu H100:8")
    if options.instance_type:
        raise BadInput("--provider cheapest picks the instance type itself: drop --instance-type")


def candidates(options: CreateResourceOptions, catalog: list[Offer]) -> list[Offer]:
    """Offers for exactly ``options.gpu``, with a price of the kind asked for,
    cheapest first. A ``--cloud`` choice narrows RunPod's offers; ``--max-price``
    drops offers above it, spot or on-demand (the purchase rule of every provider)."""
    validate(options)
    cloud = options.extra.get("cloud")
    found = query.select(
        catalog,
        options.gpu,
        spot=options.spot,
        max_price=options.max_price,
    )
    return [
        o
        for o in found
        if o.hourly(options.spot) is not None and not (cloud and o.cloud and o.cloud != cloud)
    ]


def options_for(offer: Offer, options: CreateResourceOptions) -> CreateResourceOptions:
    """The create options that rent ``offer``, in the terms of its provider (a
    ``--cloud`` choice goes only to the offers that have clouds)."""
    extra = {k: v for k, v in options.extra.items() if k != "cloud"}
    return registry.get_class(offer.provider).options_for_offer(
        replace(options, extra=extra),
        offer_id=offer.offer_id,
        gpu=GpuSpec(offer.gpu, offer.gpu_count),
        cloud=offer.cloud,
    )


def describe(offer: Offer, spot: bool, why: str) -> str:
    kind = "spot" if spot else "on-demand"
    return (
        f"{offer.provider} {offer.label}, {why}: {offer.gpu} x{offer.gpu_count} at "
        f"${offer.hourly(spot):.4g}/h {kind} ({query.describe_source(offer, spot)})"
    )


def launch(
    options: CreateResourceOptions,
    offers: list[Offer],
    create: Callable[[str, CreateResourceOptions], T],
    *,
    report: Callable[[str], None],
    max_tries: int = MAX_TRIES,
) -> tuple[T, Offer]:
    """Try ``offers`` (already cheapest first) with ``create(provider, options)``
    until one has capacity; returns what ``create`` returned and the offer taken."""
    if not offers:
        kind = " spot" if options.spot else ""
        raise BadInput(
            f"no{kind} offer with {options.gpu} (GPU:count) among the usable providers",
            hint=f"see `trainctl providers compare --gpu {options.gpu}`"
            + ("; spot prices come from `trainctl catalog refresh`" if options.spot else ""),
        )
    tries = offers[:max_tries]
    providers = sorted({o.provider for o in offers})
    report(
        f"cheapest: {len(offers)} matching offers on {', '.join(providers)}; "
        f"trying up to {len(tries)}, cheapest first"
    )
    refused = []
    for i, offer in enumerate(tries, 1):
        why = "the cheapest" if i == 1 else f"next cheapest ({i} of {len(tries)})"
        report(f"picked {describe(offer, options.spot, why)}")
        try:
            return create(offer.provider, options_for(offer, options)), offer
        except NoCapacity as e:
            report(f"no capacity on {offer.provider} {offer.label}: {e.message}")
            refused.append(f"{offer.provider} {offer.label}")
    left = len(offers) - len(tries)
    raise NoCapacity(
        f"no capacity on the {len(tries)} cheapest offers ({'; '.join(refused)})"
        + (f"; {left} dearer offer{'s' if left > 1 else ''} not tried" if left else ""),
        hint="try again later, or pick another offer from "
        f"`trainctl providers compare --gpu {options.gpu}` and name its provider",
    )


def create_cheapest(
    create: Callable[[str, CreateResourceOptions], T],
    options: CreateResourceOptions,
    *,
    report: Callable[[str], None],
    max_tries: int = MAX_TRIES,
) -> tuple[T, Offer]:
    """``--provider cheapest`` end to end: usable providers, their offers, the tries."""
    validate(options)
    usable, left_out = usable_providers(sources.providers())
    skipped = [f"{name}: {why}" for name, why in left_out]
    if not usable:
        raise BadInput(
            "--provider cheapest found no usable provider with prices (" + "; ".join(skipped) + ")",
            hint="set credentials for one of them, or name a provider",
        )
    if skipped:
        report(f"cheapest: not considered: {'; '.join(skipped)}")
    catalog = [o for lo in query.load(usable) for o in lo.offers]
    return launch(options, candidates(options, catalog), create, report=report, max_tries=max_tries)

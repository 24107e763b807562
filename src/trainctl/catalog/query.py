"""Looking offers up: filters, cheapest first, one price, a cost estimate."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..errors import BadInput
from ..types import CostEstimate, CreateResourceOptions, GpuSpec
from . import gpus, sources
from .offer import Offer, format_age


@dataclass(frozen=True)
class GpuQuery:
    """``A100`` (any count; per-GPU offers at one GPU) or ``A100:4`` (exactly four)."""

    text: str
    names: frozenset[str]
    count: int | None


def known_gpus(catalog: Iterable[Offer] = ()) -> list[str]:
    """Every GPU name a query may use: the naming table plus names seen in offers."""
    return sorted(set(gpus.MEMORY_GB) | {o.gpu for o in catalog})


def parse_gpu(gpu: str | GpuSpec, catalog: Iterable[Offer] = ()) -> GpuQuery:
    """Parse a GPU query; an unknown name is a ``BadInput`` listing the known ones."""
    if isinstance(gpu, GpuSpec):
        spec, count = gpu, gpu.count
    else:
        spec = GpuSpec.parse(gpu)
        count = spec.count if ":" in gpu else None
    known = known_gpus(catalog)
    names = gpus.matching(spec.name, set(known))
    if not names:
        raise BadInput(f"unknown GPU {spec.name!r}; known GPUs: {', '.join(known)}")
    return GpuQuery(str(gpu), frozenset(names), count)


def _providers(provider: str | Iterable[str] | None) -> list[str]:
    if provider is None:
        return list(sources.providers())
    chosen = [provider] if isinstance(provider, str) else list(provider)
    unknown = [p for p in chosen if p not in sources.providers()]
    if unknown:
        raise BadInput(
            f"no price catalog for provider {', '.join(map(repr, unknown))} "
            f"(catalog providers: {', '.join(sources.providers())})"
        )
    return chosen


def load(provider: str | Iterable[str] | None = None, *, live: bool = True) -> list[sources.Loaded]:
    """Each chosen provider's offers with where they came from (live cache or bundled)."""
    return [sources.load(p, live=live) for p in _providers(provider)]


def sort_key(offer: Offer, spot: bool = False) -> tuple:
    rate = offer.hourly(spot)
    return (rate is None, rate or 0.0, offer.provider, offer.offer_id, offer.cloud)


def select(
    catalog: Iterable[Offer],
    gpu: str | GpuSpec | GpuQuery | None = None,
    *,
    spot: bool = False,
    min_gpu_memory: float | None = None,
    max_price: float | None = None,
) -> list[Offer]:
    """Filter ``catalog`` and sort it cheapest first (by the spot price with ``spot``).

    With ``spot`` only offers that have a spot price remain. Offers without the price
    being sorted on come last. ``max_price`` drops offers dearer than that per hour."""
    catalog = list(catalog)
    query = gpu if isinstance(gpu, GpuQuery) or gpu is None else parse_gpu(gpu, catalog)
    chosen = []
    for offer in catalog:
        if query is not None:
            if offer.gpu not in query.names:
                continue
            sized = offer.with_count(query.count) if query.count else offer
            if sized is None:
                continue
            offer = sized
        if min_gpu_memory is not None and (offer.gpu_memory_gb or 0) < min_gpu_memory:
            continue
        rate = offer.hourly(spot)
        if spot and rate is None:
            continue
        if max_price is not None and (rate is None or rate > max_price):
            continue
        chosen.append(offer)
    return sorted(chosen, key=lambda o: sort_key(o, spot))


def offers(
    provider: str | Iterable[str] | None = None,
    gpu: str | GpuSpec | GpuQuery | None = None,
    *,
    spot: bool = False,
    min_gpu_memory: float | None = None,
    max_price: float | None = None,
    live: bool = True,
) -> list[Offer]:
    """Matching offers of the chosen providers (all catalog providers by default),
    cheapest first. ``gpu`` is ``"A100"``, ``"A100:2"`` or a ``GpuSpec`` (whose count is
    always exact)."""
    catalog = [o for loaded in load(provider, live=live) for o in loaded.offers]
    return select(catalog, gpu, spot=spot, min_gpu_memory=min_gpu_memory, max_price=max_price)


def find(
    provider: str,
    offer_id: str,
    *,
    gpu_count: int | None = None,
    cloud: str | None = None,
    spot: bool = False,
) -> Offer | None:
    """The offer a provider id names (an instance type, a GPU type id, a hardware
    profile), for ``gpu_count`` GPUs when it is priced per GPU (a fixed instance keeps
    its own count); the cheapest one when several fit (RunPod's clouds, Lyceum's
    counts)."""
    want = offer_id.casefold()
    found = []
    for offer in sources.load(provider).offers:
        if offer.offer_id.casefold() != want or (cloud and offer.cloud != cloud):
            continue
        sized = offer.with_count(gpu_count) if gpu_count and offer.per_gpu else offer
        if sized is not None:
            found.append(sized)
    found.sort(key=lambda o: sort_key(o, spot))
    return found[0] if found else None


def price(
    provider: str,
    offer_id: str,
    *,
    spot: bool = False,
    gpu_count: int | None = None,
    cloud: str | None = None,
) -> float | None:
    """US dollars per hour for that offer, or None when the catalog has no price."""
    offer = find(provider, offer_id, gpu_count=gpu_count, cloud=cloud, spot=spot)
    return offer.hourly(spot) if offer else None


def resolve(provider: str, gpu: str | GpuSpec, *, spot: bool = False) -> Offer:
    """The cheapest offer of ``provider`` with exactly the GPUs asked for.

    ``resolve("aws", GpuSpec("A100", 8))`` is the ``p4d.24xlarge`` offer. Raises
    ``BadInput`` naming what the provider does have when nothing fits."""
    spec = gpu if isinstance(gpu, GpuSpec) else GpuSpec.parse(gpu)
    catalog = sources.load(provider).offers
    query = parse_gpu(spec, catalog)
    found = [o for o in select(catalog, query, spot=spot) if o.hourly(spot) is not None]
    if found:
        return found[0]
    family = [o for o in catalog if o.gpu in query.names]
    have = sorted({f"{o.gpu}:{o.gpu_count}" + ("+" if o.per_gpu else "") for o in family})
    kind = "spot " if spot else ""
    raise BadInput(
        f"no {kind}{provider} offer with {spec.count}x {spec.name}"
        + (f" (it has {', '.join(have)})" if have else "")
    )


def describe_source(offer: Offer, spot: bool = False, now: datetime | None = None) -> str:
    """Where a price came from and how old it is, in one phrase."""
    source = offer.source(spot) or "unknown source"
    age = offer.age_seconds(spot, now)
    return f"{source}, {'undated' if age is None else format_age(age) + ' old'}"


def match_options(provider: str, options: CreateResourceOptions) -> Offer | None:
    """The offer a create call with ``options`` would rent, as far as the catalog knows."""
    count = options.gpu.count if options.gpu else None
    if options.instance_type:
        cloud = options.extra.get("cloud")
        return find(
            provider,
            options.instance_type,
            gpu_count=count,
            cloud=cloud if isinstance(cloud, str) else None,
            spot=options.spot,
        )
    if options.gpu:
        try:
            return resolve(provider, options.gpu, spot=options.spot)
        except BadInput:
            return None
    return None


def estimate(provider: str, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
    """A provider's ``estimate_cost`` from the catalog; ``hourly`` is None (with the
    reason as the source) when the catalog has no price for those options."""
    offer = match_options(provider, options)
    rate = offer.hourly(options.spot) if offer else None
    if offer is None or rate is None:
        what = options.instance_type or (str(options.gpu) if options.gpu else "no GPU or type")
        kind = "spot" if options.spot else "on-demand"
        return CostEstimate(
            provider, None, hours, source=f"no {kind} catalog price for {what}", spot=options.spot
        )
    return CostEstimate(
        provider,
        rate,
        hours,
        source=f"catalog {offer.label}: {describe_source(offer, options.spot)}",
        spot=options.spot,
    )

"""GPU offers and prices across providers.

Each provider's bundled offline offers (a CSV it ships, named by its class's
``bundled_offers``; AWS's and RunPod's are built by ``scripts/build_catalog.py`` from
public price lists) and live prices cached under
the trainctl home by ``trainctl catalog refresh``. The API providers use::

    catalog.offers(provider=None, gpu="A100:2", spot=False) -> list[Offer]  # cheapest first
    catalog.resolve("aws", GpuSpec("A100", 8)) -> Offer        # p4d.24xlarge
    catalog.price("aws", "g5.xlarge", spot=False) -> float | None
    catalog.estimate("runpod", options, hours) -> CostEstimate  # for estimate_cost

Only the standard library is imported here, so looking prices up stays fast.
"""

from .gpus import canonical
from .offer import Offer, format_age
from .query import (
    GpuQuery,
    describe_source,
    estimate,
    find,
    known_gpus,
    load,
    match_options,
    offers,
    parse_gpu,
    price,
    resolve,
    select,
)

__all__ = [
    "GpuQuery",
    "Offer",
    "canonical",
    "describe_source",
    "estimate",
    "find",
    "format_age",
    "known_gpus",
    "load",
    "match_options",
    "offers",
    "parse_gpu",
    "price",
    "resolve",
    "select",
]

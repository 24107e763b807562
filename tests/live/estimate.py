"""What a live run costs, from trainctl's catalog: ``python tests/live/estimate.py
[PROVIDER ...]``.

For each machine the suite rents (``livekit.CHECKS``): the offer it tries first (the
cheapest one within the suite's ceiling), that offer's catalog price, the minutes it is
expected to bill, and that cost; then the hard ceiling: the sum of the machines'
``--max-spend`` caps, which no run can pass. A spot check is priced on demand (an upper
bound). Lyceum publishes no price list: its price shows once ``trainctl catalog
refresh`` has fetched its offers, and until then only its ceiling is known.
"""

from __future__ import annotations

import sys

import livekit
from trainctl import catalog


def price_of(provider: str, candidate: dict) -> tuple[str, float | None]:
    """The offer's name and catalog price per hour (None: not in the catalog)."""
    offer_id = candidate.get("instance_type")
    gpu = candidate.get("gpu")
    if gpu is not None:
        offer_id = gpu.name
    cloud = (candidate.get("extra") or {}).get("cloud") or None
    found = catalog.find(provider, offer_id, cloud=cloud) if offer_id else None
    what = f"{offer_id}" + (f" ({cloud})" if cloud else "")
    return what, found.hourly(False) if found else None


def lines(providers: list[str]) -> list[str]:
    out = []
    total = top = 0.0
    for provider in providers:
        checks = livekit.CHECKS[provider]
        what, price = price_of(provider, livekit.candidates(provider)[0])
        if price is None:
            ceiling = livekit.ceiling(len(checks))
            out.append(f"{provider:<7} {len(checks)} machines of {what}: no catalog price "
                       f"(run `trainctl catalog refresh`); at most ${ceiling:.2f}")  # fmt: skip
            top += ceiling
            continue
        minutes = sum(checks.values())
        cost = price * minutes / 60
        capped = len(checks) * livekit.caps(price).max_spend
        # an offer without capacity makes the run take the next one, up to the ceiling
        ceiling = livekit.ceiling(len(checks))
        out.append(f"{provider:<7} {len(checks)} machines of {what} at ${price:.4f}/h, "
                   f"~{minutes:g} min: ~${cost:.2f} (at most ${capped:.2f} on this offer, "
                   f"${ceiling:.2f} on any offer it may fall back to)")  # fmt: skip
        total += cost
        top += ceiling
    out.append(f"total   ~${total:.2f} (at most ${top:.2f}: every machine's --max-spend "
               "at the suite's price ceiling)")  # fmt: skip
    return out


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(livekit.PROVIDERS)
    unknown = [p for p in chosen if p not in livekit.PROVIDERS]
    if unknown:
        sys.exit(f"estimate: unknown provider(s) {', '.join(unknown)}")
    print("\n".join(lines(chosen)))

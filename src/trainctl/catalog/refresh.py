"""``trainctl catalog refresh``: fetch live prices, cache them under the home.

A provider is refreshed when asked for by name, or, when none is named, when its
credentials are present. When a fetch fails (offline, refused) the previous prices
stay: the live cache if there is one, else the bundled catalog, and the result says
how old they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import registry
from ..errors import BadInput, TrainctlError
from . import sources
from .offer import Offer
from .usable import usable_providers

Fetch = Callable[[datetime], tuple[list[Offer], list[str]]]

REFRESHED = "refreshed"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass
class RefreshResult:
    provider: str
    status: str  # REFRESHED, SKIPPED or FAILED
    detail: str
    offers: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "status": self.status,
            "detail": self.detail,
            "offers": self.offers,
            "notes": self.notes,
        }


def fetchers() -> dict[str, str]:
    """provider -> "module:function" of its live offers (``TrainingProvider.offers``)."""
    found = {}
    for name in registry.loadable():
        target = registry.get_class(name).offers
        if target:
            found[name] = target
    return found


def _fetcher(provider: str) -> Fetch:
    module, _, attr = fetchers()[provider].partition(":")
    return getattr(importlib.import_module(module), attr)


def refresh_one(provider: str, now: datetime) -> RefreshResult:
    """Fetch one provider's live prices and replace its cache; on failure keep the
    previous prices and say which, and how old."""
    try:
        offers, notes = _fetcher(provider)(now)
    except TrainctlError as e:
        fallback = sources.load(provider).describe(now)
        return RefreshResult(provider, FAILED, f"{e}; using {fallback}")
    path = sources.write_cache(provider, offers)
    detail = f"{len(offers)} offers cached in {path}"
    return RefreshResult(provider, REFRESHED, detail, len(offers), notes)


def refresh(
    providers: Iterable[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[RefreshResult]:
    """Refresh the named providers, or every catalog provider with credentials here."""
    now = now or datetime.now(timezone.utc)
    named = list(providers or ())
    live = fetchers()
    unknown = [p for p in named if p not in live]
    if unknown:
        raise BadInput(
            f"no live prices for {', '.join(map(repr, unknown))} (live prices: {', '.join(live)})"
        )
    if named:
        return [refresh_one(p, now) for p in named]
    usable, skipped = usable_providers(live)
    results = [refresh_one(p, now) for p in usable]
    for provider, why in skipped:
        fallback = sources.load(provider).describe(now)
        results.append(RefreshResult(provider, SKIPPED, f"{why}; using {fallback}"))
    return results

"""Where catalog rows live: each provider's bundled CSV, live prices under the home.

A provider's offers come from its live cache (written by ``trainctl catalog refresh``
with the provider's own fetcher, ``TrainingProvider.offers``) when there is one, else
from the file the provider ships (``TrainingProvider.bundled_offers``). Both hold the
same columns (``offer.COLUMNS``); every price carries its own source and date.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import registry
from ..errors import TrainctlError
from ..home import home
from .offer import COLUMNS, Offer, format_age, parse_time

BUNDLED = "bundled"
LIVE = "live cache"


@dataclass
class Loaded:
    provider: str
    offers: list[Offer]
    origin: str | None  # BUNDLED, LIVE, or None when there is nothing for it
    path: Path | None

    def describe(self, now: datetime) -> str:
        """Where these prices come from and how old they are, for notes and footers."""
        if self.origin is None:
            return f"no prices yet (run: trainctl catalog refresh --provider {self.provider})"
        stamps = [t for o in self.offers for t in (o.on_demand_as_of, o.spot_as_of)]
        dated = sorted(t for t in stamps if t)
        undated = sum(1 for o in self.offers if not (o.on_demand_as_of or o.spot_as_of))
        text = f"{self.origin} prices"
        if dated:
            when = parse_time(dated[0])
            assert when is not None
            age = format_age((now - when).total_seconds())
            text += f", oldest from {dated[0][:10]} ({age} old)"
        return text + (f", {undated} undated" if undated else "")


def to_csv(offers: list[Offer]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for offer in offers:
        writer.writerow(offer.to_row())
    return buf.getvalue()


def read_csv(path: Path) -> list[Offer]:
    with path.open(newline="") as f:
        return [Offer.from_row(row) for row in csv.DictReader(f)]


def providers() -> list[str]:
    """The providers with offers: a live fetcher, a bundled file, or both."""
    return [name for name in registry.loadable() if has_offers(name)]


def has_offers(provider: str) -> bool:
    try:
        cls = registry.get_class(provider)
    except TrainctlError:  # unknown here, or a plugin that does not load
        return False
    return bool(cls.offers or cls.bundled_offers)


def bundled_path(provider: str) -> Path | None:
    return registry.get_class(provider).bundled_offers


def cache_path(provider: str) -> Path:
    return home() / "catalog" / f"{provider}.csv"


def write_cache(provider: str, offers: list[Offer]) -> Path:
    """Replace the provider's live cache in one step (no half-written file is read)."""
    path = cache_path(provider)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_csv(offers))
    tmp.replace(path)
    return path


def load(provider: str, *, live: bool = True) -> Loaded:
    """The provider's offers: live cache first (unless ``live`` is false), then bundled."""
    candidates = [(LIVE, cache_path(provider))] if live else []
    bundled = bundled_path(provider)
    if bundled is not None:
        candidates.append((BUNDLED, bundled))
    for origin, path in candidates:
        if path.is_file():
            return Loaded(provider, read_csv(path), origin, path)
    return Loaded(provider, [], None, None)

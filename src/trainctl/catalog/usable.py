"""Which providers can be used here: installed, with credentials present."""

from __future__ import annotations

from collections.abc import Iterable

from .. import registry
from ..errors import TrainctlError


def usable_providers(names: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The providers among ``names`` usable here, and (name, reason) for the others.

    Asks each provider's ``credentials_present`` (cheap, no network)."""
    usable: list[str] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        try:
            cls = registry.get_class(name)
        except TrainctlError:
            skipped.append((name, "not installed"))
            continue
        if cls.credentials_present():
            usable.append(name)
        else:
            skipped.append((name, "no credentials"))
    return usable, skipped

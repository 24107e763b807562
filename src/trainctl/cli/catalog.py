"""`trainctl catalog refresh`: live prices into the cache under the home."""

from __future__ import annotations

import click

from ..catalog.refresh import FAILED
from ..catalog.refresh import refresh as run_refresh
from .common import json_option
from .main import LazyGroup
from .output import Output

CATALOG_COMMANDS: dict[str, tuple[str, str]] = {
    "refresh": ("trainctl.cli.catalog:refresh", "Fetch live prices where credentials are present."),
}


@click.group(cls=LazyGroup, lazy=CATALOG_COMMANDS)
def catalog() -> None:
    """Price catalog commands."""


@click.command()
@click.option(
    "--provider", "-p", "providers", multiple=True, help="Only this provider (repeatable)."
)
@json_option
def refresh(providers: tuple[str, ...], json_mode: bool) -> int:
    """Fetch live prices and cache them under the trainctl home.

    Without --provider, every provider whose credentials are present here is
    refreshed. When a fetch fails, the previous prices stay (the live cache, else
    the bundled catalog) and the message says how old they are. Exits 1 when a
    named provider could not be refreshed.
    """
    out = Output(json_mode)
    results = run_refresh(providers or None)
    if json_mode:
        out.emit({"results": [r.to_dict() for r in results]})
    else:
        for r in results:
            out.info(f"{r.provider}: {r.status}: {r.detail}")
            for note in r.notes:
                out.info(f"  note: {note}")
    return 1 if providers and any(r.status == FAILED for r in results) else 0

"""`trainctl providers compare`: every matching offer, cheapest first."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from .. import catalog
from ..catalog.offer import Offer, format_age
from .common import json_option
from .output import Output, money

#: columns left out, first to last, while a table is wider than the terminal
NARROW_DROPS = ("SOURCE", "RAM", "VCPUS", "GPU MEM", "WHERE", "AGE")


def _short_source(offer: Offer, spot: bool) -> str:
    """``instances.vantage.sh``, ``datareceipts``, ``AWS``, ``RunPod``: who published
    the price (the JSON output has the whole source)."""
    source = offer.source(spot)
    return source.split()[0].split("/")[0] if source else "-"


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


@click.command()
@click.option("--gpu", help="GPU model, optionally with a count: A100, A100-80GB:8, H100:2.")
@click.option("--min-gpu-memory", type=click.FloatRange(min=0), help="Least memory per GPU, GB.")
@click.option("--spot", is_flag=True, help="Only offers with a spot price, sorted by it.")
@click.option(
    "--hours", type=click.FloatRange(min=0, min_open=True), help="Show totals for H hours."
)
@click.option(
    "--provider", "-p", "providers", multiple=True, help="Only this provider (repeatable)."
)
@json_option
def compare(
    gpu: str | None,
    min_gpu_memory: float | None,
    spot: bool,
    hours: float | None,
    providers: tuple[str, ...],
    json_mode: bool,
) -> None:
    """Compare GPU offers across providers, cheapest first.

    `--gpu A100` matches every A100 (40 and 80 GB) at any count, per-GPU offers at
    one GPU; `--gpu A100:4` only offers with exactly four. Prices come from the live
    cache (`trainctl catalog refresh`) or else the bundled catalog; each row says
    where its price came from and how old it is.
    """
    now = datetime.now(timezone.utc)
    loaded = catalog.load(providers or None)
    every = [o for lo in loaded for o in lo.offers]
    query = catalog.parse_gpu(gpu, every) if gpu else None
    found = catalog.select(every, query, spot=spot, min_gpu_memory=min_gpu_memory)
    per = hours or 1.0
    notes = [
        {"provider": lo.provider, "origin": lo.origin, "detail": lo.describe(now)} for lo in loaded
    ]
    out = Output(json_mode)
    if json_mode:
        out.emit(
            {
                "query": {
                    "gpu": gpu,
                    "gpu_names": sorted(query.names) if query else None,
                    "min_gpu_memory": min_gpu_memory,
                    "spot": spot,
                    "hours": per,
                },
                "offers": [
                    {
                        **o.to_dict(),
                        "hours": per,
                        "total": o.total(per, spot),
                        "on_demand_age_seconds": o.age_seconds(False, now),
                        "spot_age_seconds": o.age_seconds(True, now),
                    }
                    for o in found
                ],
                "catalogs": notes,
            }
        )
        return
    if not found:
        what = f" for {gpu}" if gpu else ""
        hint = " (spot prices come from `trainctl catalog refresh`)" if spot else ""
        out.info(f"No {'spot ' if spot else ''}offers{what} in the catalog{hint}.")
    else:
        columns = ["PROVIDER", "OFFER", "GPUS", "GPU MEM", "VCPUS", "RAM", "$/H", "SPOT $/H"]
        if hours:
            columns.append(f"TOTAL {hours:g}H")
        columns += ["WHERE", "SOURCE", "AGE"]
        rows = []
        for o in found:
            row = [
                o.provider,
                o.offer_id,
                f"{o.gpu} x{o.gpu_count}",
                _number(o.gpu_memory_gb, " GB"),
                _number(o.vcpus),
                _number(o.ram_gb, " GB"),
                money(o.on_demand),
                money(o.spot),
            ]
            if hours:
                row.append(money(o.total(hours, spot)))
            where = o.region or o.cloud or "-"
            row += [where, _short_source(o, spot), format_age(o.age_seconds(spot, now))]
            rows.append(row)
        out.table(columns, rows, droppable=NARROW_DROPS)
    for note in notes:
        out.info(f"{note['provider']}: {note['detail']}")
    if any(o.per_gpu for o in found) and not (query and query.count):
        out.info("per-GPU offers are shown for one GPU; ask for N with --gpu NAME:N")

"""``trainctl create``: its options are the common ones plus every provider's flags."""

from __future__ import annotations

import click

from ..api import Trainctl
from ..interrupts import signals_interrupt
from .common import (
    build_create_options,
    choose_provider,
    create_options,
    json_option,
    progress_printer,
)
from .output import Output, money


@click.command()
@create_options
@json_option
def create(provider: str | None, json_mode: bool, **flags) -> None:
    """Create a machine and record it."""
    out = Output(json_mode)
    options = build_create_options(**flags)
    name = choose_provider(provider)
    # SIGTERM and SIGHUP (a closed terminal, `timeout`) release the machine as Ctrl-C does
    with signals_interrupt():
        record = Trainctl().create(name, options, progress=progress_printer(json_mode))
    if json_mode:
        out.emit(record.to_dict())
    else:
        price = f", {money(record.price_per_hour)}/h" if record.price_per_hour else ""
        out.info(f"created {record.name} ({record.id}) on {record.provider}{price}")

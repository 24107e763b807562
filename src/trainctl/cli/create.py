"""``trainctl create``: its options are the common ones plus every provider's flags."""

from __future__ import annotations

import click

from .. import groups
from ..api import Trainctl
from ..interrupts import signals_interrupt
from .common import (
    build_create_options,
    choose_provider,
    create_options,
    group_size,
    json_option,
    nodes_option,
    progress_printer,
)
from .output import Output, money


@click.command()
@create_options
@nodes_option
@json_option
def create(provider: str | None, nodes: int | None, json_mode: bool, **flags) -> None:
    """Create a machine and record it; with --nodes N, a group of N machines that
    reach each other, all or nothing (named NAME-0 ... NAME-<N-1>)."""
    out = Output(json_mode)
    options = build_create_options(**flags)
    name = choose_provider(provider)
    count = group_size(name, options, nodes)
    tc = Trainctl()
    progress = progress_printer(json_mode)
    # SIGTERM and SIGHUP (a closed terminal, `timeout`) release the machine as Ctrl-C does
    with signals_interrupt():
        if count > 1:
            records = groups.create_group(tc, name, options, count, progress=progress)
        else:
            records = [tc.create(name, options, progress=progress)]
    group = records[0].name.rsplit("-", 1)[0]
    if json_mode:
        docs = [r.to_dict() for r in records]
        out.emit(docs[0] if count == 1 else {"group": group, "nodes": docs})
        return
    for record in records:
        price = f", {money(record.price_per_hour)}/h" if record.price_per_hour else ""
        out.info(f"created {record.name} ({record.id}) on {record.provider}{price}")
    if count > 1:
        out.info(f"group {group}: {count} nodes; `trainctl terminate {group}` releases them all")

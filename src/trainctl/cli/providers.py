"""`trainctl providers ...` and `trainctl check`."""

from __future__ import annotations

import click

from .. import registry
from ..errors import TrainctlError
from .common import json_option
from .main import LazyGroup
from .output import Output

#: subcommands of `trainctl providers`
PROVIDER_COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("trainctl.cli.providers:list_providers", "Known providers and what they can do."),
    "compare": ("trainctl.cli.compare:compare", "GPU offers across providers, cheapest first."),
}


@click.group(cls=LazyGroup, lazy=PROVIDER_COMMANDS)
def providers() -> None:
    """Provider commands."""


@click.command("list")
@json_option
def list_providers(json_mode: bool) -> None:
    """Known providers, their capabilities, and whether credentials are present."""
    out = Output(json_mode)
    rows = []
    for name in registry.names():
        try:
            cls = registry.get_class(name)
        except TrainctlError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        needed = cls.needs_account
        rows.append(
            {
                "name": name,
                "capabilities": sorted(c.value for c in cls.capabilities),
                "credentials_needed": needed,
                "credentials_present": not needed or cls.credentials_present(),
            }
        )
    if json_mode:
        out.emit({"providers": rows})
        return
    out.table(
        ["PROVIDER", "CREDENTIALS", "CAPABILITIES"],
        [
            (
                r["name"],
                r.get("error") or _credentials(r),
                ", ".join(r.get("capabilities", [])),
            )
            for r in rows
        ],
    )


def _credentials(row: dict) -> str:
    if not row["credentials_needed"]:
        return "not needed"
    return "yes" if row["credentials_present"] else "no"


@click.command()
@click.option("--provider", "-p", "only", multiple=True, help="Check only these providers.")
@json_option
def check(only: tuple[str, ...], json_mode: bool) -> None:
    """Say which providers are usable here and, for the others, why not."""
    out = Output(json_mode)
    results = []
    for name in only or registry.names():
        try:
            result = registry.get(name).check()
            results.append(result.to_dict())
        except TrainctlError as e:
            results.append({"provider": name, "usable": False, "detail": str(e)})
    if json_mode:
        out.emit({"providers": results})
        return
    for r in results:
        mark = "ok " if r["usable"] else "no "
        out.info(f"{mark} {r['provider']:<8} {r['detail']}")

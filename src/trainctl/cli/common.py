"""Options and parsing shared by several commands."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from ..errors import BadInput
from ..types import CreateResourceOptions, GpuSpec

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class JobCommand(click.Command):
    """A command ending in the job's COMMAND: everything from the command's first word
    on belongs to the job, ``--`` or not (``train box echo hi -d`` runs ``echo hi -d``).

    click would otherwise take options found after the command's first word. Here a
    ``--`` is put before that word; ``leading`` is how many positional arguments come
    before the job's command (``train`` has RESOURCE)."""

    def __init__(self, *args: Any, leading: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leading = leading

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._mark_command(ctx, list(args)))

    def _mark_command(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.get_params(ctx)
            if isinstance(p, click.Option) and not p.is_flag and not p.count
            for name in p.opts
        }
        leading = self.leading
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                return args
            if arg.startswith("-") and len(arg) > 1:
                # "-e X=1" and "--env X=1" are two words; "-eX=1" and "--env=X=1" one
                i += 2 if arg in takes_value else 1
            elif leading:
                leading -= 1
                i += 1
            else:
                return [*args[:i], "--", *args[i:]]
        return args


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from .main import note_json

    note_json(value)
    return value


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json",
        "json_mode",
        is_flag=True,
        callback=_note_json,
        help="Print one JSON document on stdout.",
    )(f)


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs; the value may hold anything, including ``=``."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise BadInput(f"bad {what} {item!r}: expected NAME=VALUE with NAME like MY_VAR")
        pairs[key] = value
    return pairs


CREATE_OPTIONS = [
    click.option(
        "--provider",
        "-p",
        help="Provider (default: TRAINCTL_PROVIDER, config, auto); `cheapest` rents the "
        "cheapest offer with --gpu among the usable providers.",
    ),
    click.option("--name", "-n", help="Name for the machine (default: generated)."),
    click.option("--gpu", help="GPU model and count, e.g. A100:2 or H100."),
    click.option("--instance-type", help="Provider instance type, e.g. g5.xlarge."),
    click.option("--spot", is_flag=True, help="Rent spot / interruptible capacity."),
    click.option("--spot-fallback", is_flag=True, help="Fall back to on-demand if no spot."),
    click.option(
        "--max-price",
        type=click.FloatRange(min=0, min_open=True),
        help="Most $/hour to pay: the spot bid; an on-demand fallback above it is refused.",
    ),
    click.option("--image", help="Machine or container image."),
    click.option("--disk", "disk_gb", type=click.IntRange(min=1), help="Disk size in GB."),
    click.option("--region", help="Region or data centre."),
    click.option("--tag", "tags", multiple=True, help="Extra tag NAME=VALUE (repeatable)."),
    click.option("--host", help="ssh provider: user@host[:port] of an existing machine."),
    click.option("--key", type=click.Path(dir_okay=False), help="ssh provider: private key file."),
    click.option(
        "--price-per-hour",
        type=click.FloatRange(min=0),
        help="ssh provider: what the machine costs.",
    ),
    click.option(
        "--cloud",
        type=click.Choice(["secure", "community"], case_sensitive=False),
        help="runpod: secure or community cloud.",
    ),
    click.option("--volume-gb", type=click.IntRange(min=1), help="Persistent volume size in GB."),
]


def choose_provider(flag: str | None) -> str:
    """The provider for create/run: ``cheapest`` as is, else ``registry.select``."""
    from .. import registry
    from ..catalog.cheapest import CHEAPEST

    return CHEAPEST if flag == CHEAPEST else registry.select(flag)


def create_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(CREATE_OPTIONS):
        f = option(f)
    return f


def build_create_options(
    *,
    name: str | None,
    gpu: str | None,
    instance_type: str | None,
    spot: bool,
    spot_fallback: bool,
    max_price: float | None,
    image: str | None,
    disk_gb: int | None,
    region: str | None,
    tags: tuple[str, ...],
    host: str | None,
    key: str | None,
    price_per_hour: float | None,
    cloud: str | None,
    volume_gb: int | None,
) -> CreateResourceOptions:
    if name is not None and not _RESOURCE_NAME.match(name):
        raise BadInput(
            f"bad name {name!r}: use letters, digits, '-', '_' or '.', at most 63 characters"
        )
    # task files give these without click's range checks
    if max_price is not None and max_price <= 0:
        raise BadInput(f"--max-price must be more than 0 $/hour, not {max_price:g}")
    if price_per_hour is not None and price_per_hour < 0:
        raise BadInput(f"--price-per-hour cannot be negative ({price_per_hour:g})")
    if spot_fallback and not spot:
        raise BadInput("--spot-fallback only makes sense with --spot")
    extra = {
        k: v
        for k, v in {
            "host": host,
            "key": key,
            "price_per_hour": price_per_hour,
            "cloud": cloud.lower() if cloud else None,
            "volume_gb": volume_gb,
        }.items()
        if v is not None
    }
    return CreateResourceOptions(
        gpu=GpuSpec.parse(gpu) if gpu else None,
        instance_type=instance_type,
        spot=spot,
        spot_fallback=spot_fallback,
        max_price=max_price,
        image=image,
        disk_gb=disk_gb,
        region=region,
        name=name,
        tags=parse_pairs(tags, "--tag"),
        extra=extra,
    )


def progress_printer(json_mode: bool) -> Callable[[str], None]:
    from .output import Output

    return Output(json_mode).progress

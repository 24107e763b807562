"""Options and parsing shared by several commands."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from .. import objstore, registry
from ..catalog.cheapest import CHEAPEST
from ..errors import BadInput
from ..guards import GuardRequest
from ..provider import ProviderFlag, check_purchase
from ..types import CreateResourceOptions, GpuSpec
from .main import note_json
from .output import Output

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
        options = [p for p in self.get_params(ctx) if isinstance(p, click.Option)]
        takes_value = {
            name for p in options if not p.is_flag and not p.count for name in p.opts
        }
        # an option whose value may be left out (--recover [N]) takes a number only
        optional = {name for p in options if p._flag_needs_value for name in p.opts}
        leading = self.leading
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                return args
            if arg.startswith("-") and len(arg) > 1:
                # "-e X=1" and "--env X=1" are two words; "-eX=1" and "--env=X=1" one
                if arg in optional:
                    given = i + 1 < len(args) and args[i + 1].isdigit()
                    i += 2 if given else 1
                else:
                    i += 2 if arg in takes_value else 1
            elif leading:
                leading -= 1
                i += 1
            else:
                return [*args[:i], "--", *args[i:]]
        return args


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
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


#: create options every provider reads (a provider's own come from its ``flags``)
GENERIC = [
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
        help="Most $/hour to pay, spot or on-demand (an on-demand fallback included).",
    ),
    click.option(
        "--image",
        help="Container image the job runs in (docker run on the machine, GPUs passed "
        "through); on runpod the pod's image; on aws an AMI id or SSM parameter is the "
        "machine's image.",
    ),
    click.option("--disk", "disk_gb", type=click.IntRange(min=1), help="Disk size in GB."),
    click.option("--region", help="Region or data centre."),
    click.option("--tag", "tags", multiple=True, help="Extra tag NAME=VALUE (repeatable)."),
    click.option(
        "--store",
        metavar="URL",
        help="Object store the machine saves each job's checkpoints and log to, with no "
        "client attached: s3://BUCKET/PREFIX (any S3-compatible store; endpoint_url in "
        "[object_store] for R2, B2, MinIO), `default` (aws: the staging bucket) or `none` "
        "(default: [object_store] url).",
    ),
]

#: the guard's limits, on create, run and autostop (see ``trainctl.guards``)
GUARD_OPTIONS = [
    click.option(
        "--idle-stop",
        metavar="DURATION",
        help="Release the machine after this long with no job and no trainctl command "
        "(90s, 30m, 2h, or never; default 30m for create, 10m after the job for run).",
    ),
    click.option(
        "--max-duration",
        metavar="DURATION",
        help="Deadline after launch: jobs get SIGTERM (then SIGKILL after the grace), "
        "then the machine is released (or never).",
    ),
    click.option(
        "--max-spend",
        metavar="USD",
        help="Spend cap: the hourly price times the time up; as --max-duration (or never).",
    ),
    click.option(
        "--release",
        type=click.Choice(["stop", "terminate"], case_sensitive=False),
        help="What the guard does at a limit (default: stop where the provider keeps "
        "the disk, else terminate).",
    ),
]


def _click_type(flag: ProviderFlag) -> Any:
    if flag.choices:
        return click.Choice(list(flag.choices), case_sensitive=False)
    if flag.kind in (int, float):
        bounded = click.IntRange if flag.kind is int else click.FloatRange
        return bounded(min=flag.minimum, min_open=flag.above)
    return str


def provider_options() -> list[Callable[..., Any]]:
    """One click option per provider flag (see ``registry.flags``)."""
    options = []
    for flag, owners in registry.flags():
        if not flag.cli:
            continue
        lead = flag.help[:1] if flag.help[1:2].isupper() else flag.help[:1].lower()
        text = f"{', '.join(owners)}: {lead}{flag.help[1:]}"
        option = click.option(
            flag.option,
            flag.name,
            type=_click_type(flag),
            metavar=flag.metavar,
            help=text,
            multiple=flag.per_node,
        )
        options.append(option)
    return options


def provider_values(values: dict[str, Any]) -> dict[str, Any]:
    """The provider flags among a command's parameters, given ones only."""
    names = {flag.name for flag, _ in registry.flags()}
    given = {k: v for k, v in values.items() if k in names and v not in (None, ())}
    # a per-node flag (repeatable) given once is a plain value; more times, one per node
    return {k: v[0] if isinstance(v, tuple) and len(v) == 1 else v for k, v in given.items()}


def choose_provider(flag: str | None) -> str:
    """The provider for create/run: ``cheapest`` as is, else ``registry.select``."""
    return CHEAPEST if flag == CHEAPEST else registry.select(flag)


def create_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([*GENERIC, *GUARD_OPTIONS, *provider_options()]):
        f = option(f)
    return f


def guard_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(GUARD_OPTIONS):
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
    store: str | None = None,
    idle_stop: Any = None,
    max_duration: Any = None,
    max_spend: Any = None,
    release: str | None = None,
    **provider_flags: Any,
) -> CreateResourceOptions:
    """The options of a create from the command's values; the provider checks its
    own flags (and the rules of spot, price and capabilities) when it validates."""
    if name is not None and not _RESOURCE_NAME.match(name):
        raise BadInput(
            f"bad name {name!r}: use letters, digits, '-', '_' or '.', at most 63 characters"
        )
    options = CreateResourceOptions(
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
        extra=provider_values(provider_flags),
        guards=GuardRequest.parse(idle_stop, max_duration, max_spend, release),
        store=store,
    )
    objstore.requested(store)  # a malformed URL is refused before the provider is chosen
    check_purchase(options)
    return options


def progress_printer(json_mode: bool) -> Callable[[str], None]:
    return Output(json_mode).progress


def nodes_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--nodes",
        type=click.IntRange(min=1),
        help="Rent a group of N machines that reach each other, for one multi-node job "
        "(torchrun); all or nothing. The ssh provider takes --host once per node instead.",
    )(f)


def group_size(provider_name: str, options: CreateResourceOptions, nodes: int | None) -> int:
    """How many machines a create or run makes: --nodes, or how many times a per-node
    flag (ssh's --host) was given; they must agree."""
    if provider_name == CHEAPEST:
        if nodes and nodes > 1:
            raise BadInput("--nodes needs one provider: pick it with --provider")
        return 1
    from .. import groups

    given = groups.nodes_given(registry.get(provider_name), options.extra)
    if nodes and given and nodes != given:
        raise BadInput(f"--nodes {nodes} but {given} hosts: give one --host per node")
    return nodes or given or 1

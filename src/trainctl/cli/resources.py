"""Machine commands: list, status, terminate, adopt, stop, start (``create`` is in
``cli.create``: its options come from every provider, which these need not load)."""

from __future__ import annotations

import sys

import click

from ..api import Trainctl
from ..capabilities import Capability, require
from ..catalog.spend import CATALOG, Rented, spend, totals
from ..errors import BadInput, OperationFailed, TrainctlError
from ..guards import Guards
from ..provider import TAG_NAME
from ..registry import get_class
from ..types import CreateResourceOptions, ResourceState
from .autostop import describe as describe_guards
from .common import _RESOURCE_NAME, json_option
from .output import Output, ago, money


@click.command("list")
@click.option("--refresh", is_flag=True, help="Ask the providers for the current state.")
@click.option("--provider", "-p", help="Only this provider's machines.")
@json_option
def list_cmd(refresh: bool, provider: str | None, json_mode: bool) -> None:
    """List trainctl's machines with their $/hour and spend so far, and the totals
    (from the local record; --refresh asks the providers)."""
    out = Output(json_mode)
    unasked: list[str] = []
    tc = Trainctl()
    views = tc.list(refresh=refresh, provider=provider, on_error=unasked.append)
    for message in unasked:
        click.echo(f"warning: {message}", err=True)
    spends = [
        spend(
            Rented.of_record(v.record, tc.store.machine(v.record.id))
            if v.record
            else Rented.of_status(v.live),
            v.state,
        )
        for v in views
    ]
    per_hour, spent, unknown = totals(spends)
    if json_mode:
        out.emit(
            {
                "resources": [
                    {**v.to_dict(), "spend": s.to_dict()}
                    for v, s in zip(views, spends, strict=True)
                ],
                "total": {"per_hour": per_hour, "spent": spent, "unknown_price": unknown},
                "errors": unasked,
            }
        )
        return
    if not views:
        out.info("No machines. Create one with `trainctl create` or `trainctl run`.")
        return
    rows = []
    for v, sp in zip(views, spends, strict=True):
        r = v.record
        if r is None:
            s = v.live
            name, prov, rid, itype = s.name or "-", s.provider, s.id, s.instance_type
            state, gpu = f"{s.state.value} (untracked)", _gpu(s.gpu, s.gpu_count)
        else:
            name, prov, rid, itype = r.name, r.provider, r.id, r.instance_type
            state, gpu = v.state + (" (spot)" if r.spot else ""), _gpu(r.gpu, r.gpu_count)
        guards = Guards.from_dict(r.guards) if r is not None else None
        rows.append(
            (
                name,
                prov,
                rid,
                state,
                itype or "-",
                gpu,
                money(sp.rate) + ("*" if sp.rate_source == CATALOG else ""),
                "-" if sp.hours is None else ago(sp.hours),
                money(sp.spent),
                guards.short() if guards is not None and v.state != "terminated" else "-",
            )
        )
    out.table(
        ["NAME", "PROVIDER", "ID", "STATE", "TYPE", "GPU", "$/H", "AGE", "SPENT", "GUARDS"], rows
    )
    if any(sp.rate_source == CATALOG for sp in spends):
        out.info("* catalog price: the provider reported no price at create time")
    unpriced = f" ({unknown} billing at an unknown price)" if unknown else ""
    out.info(f"total: {money(per_hour)}/h, {money(spent)} spent so far{unpriced}")
    for v in views:
        label = v.record.name if v.record else (v.live.name or v.live.id)
        if v.error:
            click.echo(f"warning: could not refresh {label}: {v.error}", err=True)
        if v.note:
            click.echo(f"note: {label}: {v.note}", err=True)


def _gpu(name: str | None, count: int) -> str:
    return f"{name}x{count}" if name else "-"


def _print_status(out: Output, status, json_mode: bool) -> None:
    if json_mode:
        out.emit(status.to_dict())
        return
    fields = {
        "id": status.id,
        "name": status.name,
        "provider": status.provider,
        "state": status.state.value + (f" ({status.reason})" if status.reason else ""),
        # the provider's own word, where it says more (ssh: reachable or not)
        "raw state": status.raw_state
        if status.raw_state and status.raw_state.lower() != status.state.value
        else None,
        "type": status.instance_type,
        "gpu": f"{status.gpu} x{status.gpu_count}" if status.gpu else None,
        "price": f"{money(status.cost_per_hour)}/h" if status.cost_per_hour is not None else None,
        "launched": status.launch_time.isoformat(timespec="seconds")
        if status.launch_time
        else None,
        "ssh": f"{status.ssh_user}@{status.ssh_host}:{status.ssh_port}"
        if status.ssh_host
        else None,
    }
    fields.update({k: v for k, v in status.details.items() if isinstance(v, str | int | float)})
    for key, value in fields.items():
        if value not in (None, ""):
            out.info(f"{key:>9}: {value}")


@click.command()
@click.argument("resource")
@json_option
def status(resource: str, json_mode: bool) -> None:
    """Show what the provider says about RESOURCE (id or name) now, and how far its
    guards are (asked of the machine's guard while it runs)."""
    tc = Trainctl()
    group = tc.store.group(resource)
    if group is not None:
        from .. import groups

        nodes = [tc.status(r.id) for r in groups.members(tc, resource)]
        if json_mode:
            Output(json_mode).emit({"group": resource, "nodes": [n.to_dict() for n in nodes]})
            return
        for rank, st in enumerate(nodes):
            Output().info(f"node {rank}:")
            _print_status(Output(), st, False)
        return
    st = tc.status(resource)
    record = tc.store.resource(st.id)
    guards, report = Guards.from_dict(record.guards), None
    if guards is not None and st.state is ResourceState.RUNNING:
        try:
            report = tc.guard_report(record)
        except TrainctlError as e:
            click.echo(f"warning: could not ask the guard of {record.name}: {e}", err=True)
    if guards is not None:
        st.details["guards"] = describe_guards(guards, report)
    if json_mode:
        doc = st.to_dict()
        doc["guards"] = guards.to_dict() if guards else None
        doc["guard_report"] = report
        Output(json_mode).emit(doc)
        return
    _print_status(Output(json_mode), st, json_mode)


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{question} Refusing without confirmation: pass -y")
    if not click.confirm(question, default=False, err=True):
        raise OperationFailed("nothing was done: not confirmed")


@click.command()
@click.argument("resource")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def terminate(resource: str, yes: bool, json_mode: bool) -> None:
    """Terminate RESOURCE: its jobs end and it stops billing.

    RESOURCE is a name or id from `trainctl list`; a machine the store has no record
    of (shown as untracked by `list --refresh`) is found in the providers' listings
    of trainctl's own machines.
    """
    tc = Trainctl()
    group = tc.store.group(resource)
    if group is not None:
        _terminate_group(tc, group, yes, json_mode)
        return
    record, untracked = located = tc.locate(resource)
    together = record is not None and _released_with_its_group(tc, record.id, record.provider)
    if together:
        Output(json_mode).info(
            f"{record.name} is a node of group {together['name']}, whose machines "
            f"{record.provider} releases only together: terminating the group"
        )
        _terminate_group(tc, together, yes, json_mode)
        return
    if record is not None:
        name, rid, provider, what = record.name, record.id, record.provider, ""
    else:
        assert untracked is not None
        name = untracked.tags.get(TAG_NAME) or untracked.name or untracked.id
        rid, provider, what = untracked.id, untracked.provider, "untracked machine "
    confirm(f"Terminate {what}{name} ({rid}) on {provider}?", yes)
    st = tc.terminate(resource, located=located)
    out = Output(json_mode)
    if json_mode:
        # a provider's answer may not carry the name; the record does
        out.emit({**st.to_dict(), "name": st.name or name})
    else:
        out.info(f"terminated {what}{name} ({rid})" + (f": {st.reason}" if st.reason else ""))


def _released_with_its_group(tc: Trainctl, resource_id: str, provider: str) -> dict | None:
    """The group of a machine whose provider cannot release it on its own, or None."""
    if not getattr(tc.provider(provider), "nodes_released_together", False):
        return None
    return next((g for g in tc.store.groups() if resource_id in g["members"]), None)


def _terminate_group(tc: Trainctl, group: dict, yes: bool, json_mode: bool) -> None:
    from .. import groups

    nodes = groups.members(tc, group["name"])
    names = ", ".join(r.name for r in nodes) or "none left"
    confirm(f"Terminate group {group['name']} on {group['provider']} ({names})?", yes)
    out = Output(json_mode)
    failed = groups.terminate_group(tc, group["name"], progress=None if json_mode else out.info)
    if failed:
        raise OperationFailed(
            f"group {group['name']} is not all released: {'; '.join(failed)}",
            hint=f"retry with `trainctl terminate {group['name']}`",
        )
    if json_mode:
        out.emit({"group": group["name"], "terminated": [r.id for r in nodes]})
    else:
        out.info(f"terminated group {group['name']}")


@click.command()
@click.argument("machine", metavar="ID|NAME")
@click.option("--name", "-n", help="Record it under this name (default: its trainctl name).")
@json_option
def adopt(machine: str, name: str | None, json_mode: bool) -> None:
    """Record an untracked machine (see `trainctl list --refresh`) so that every
    command can use it again."""
    if name is not None and not _RESOURCE_NAME.match(name):
        raise BadInput(f"bad name {name!r}: use letters, digits, '-', '_' or '.'")
    record = Trainctl().adopt(machine, name=name)
    out = Output(json_mode)
    if json_mode:
        out.emit(record.to_dict())
    else:
        out.info(f"adopted {record.name} ({record.id}) on {record.provider}")


@click.command()
@click.argument("resource")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def stop(resource: str, yes: bool, json_mode: bool) -> None:
    """Stop RESOURCE (running jobs end; the disk is kept)."""
    tc = Trainctl()
    record = tc.store.resource(resource)
    # refuse before asking (a spot machine may be one that cannot stop)
    request = CreateResourceOptions(spot=record.spot)
    require(get_class(record.provider), Capability.STOP_START, request)
    confirm(f"Stop {record.name} ({record.id}) on {record.provider}?", yes)
    _print_status(Output(json_mode), tc.stop(resource), json_mode)


@click.command()
@click.argument("resource")
@json_option
def start(resource: str, json_mode: bool) -> None:
    """Start a stopped RESOURCE."""
    _print_status(Output(json_mode), Trainctl().start(resource), json_mode)

"""`trainctl runs`: every run, kept after its machine is gone, and what it cost."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import click

from .. import runs as run_files
from ..api import Trainctl
from ..errors import BadInput, NotFound
from ..guards import human_seconds, parse_duration
from ..store import JobRecord, MachineRecord
from .common import json_option
from .output import Output, money

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$")


def parse_since(value: str | None) -> datetime | None:
    """``7d``, ``12h``, ``30m`` (that long ago) or a date, ``2026-12-01`` (UTC)."""
    if value is None:
        return None
    if _DATE.match(value.strip()):
        when = datetime.fromisoformat(value.strip())
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    seconds = parse_duration(value, "--since")
    if not isinstance(seconds, float):
        raise BadInput(f"bad --since {value!r}: expected a duration (7d, 12h) or a date")
    return datetime.now(timezone.utc) - timedelta(seconds=seconds)


def offer(run: JobRecord | MachineRecord) -> str:
    what = run.instance_type or (f"{run.gpu}:{run.gpu_count}" if run.gpu else "-")
    return what + (" spot" if run.spot else "")


def _when(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def totals(
    found: list[JobRecord], machines: list[MachineRecord], since: datetime | None
) -> dict[str, dict[str, float | int | None]]:
    """Per provider: runs (a recovered run's attempts count once), their cost (every
    attempt's), and what its machines billed over the same time (the time around the
    runs included: syncing, waiting, the idle stop)."""
    sums: dict[str, dict[str, float | int | None]] = defaultdict(
        lambda: {"runs": 0, "runs_cost": 0.0, "machines": 0, "machines_cost": 0.0, "unpriced": 0}
    )
    counted: set[str] = set()
    for run in found:
        entry = sums[run.provider]
        if (run.run_id or run.id) not in counted:  # a run's attempts are one run
            counted.add(run.run_id or run.id)
            entry["runs"] = int(entry["runs"] or 0) + 1
        cost = run.cost()
        if cost is None:
            entry["unpriced"] = int(entry["unpriced"] or 0) + 1
        else:
            entry["runs_cost"] = round(float(entry["runs_cost"] or 0) + cost, 4)
    for machine in machines:
        entry = sums[machine.provider]
        entry["machines"] = int(entry["machines"] or 0) + 1
        cost = machine.cost(since=since)
        if cost is not None:
            entry["machines_cost"] = round(float(entry["machines_cost"] or 0) + cost, 4)
    return dict(sorted(sums.items()))


@click.group("runs", invoke_without_command=True)
@click.option("--machine", "-m", help="Only the runs of this machine (by name).")
@click.option(
    "--state",
    "-s",
    help="Only runs that are or ended so: running, completed, failed, cancelled, lost, "
    "deadline, spend cap, released.",
)
@click.option("--since", help="Only runs started since: a duration ago (7d, 12h) or a date.")
@json_option
@click.pass_context
def runs(
    ctx: click.Context, machine: str | None, state: str | None, since: str | None, json_mode: bool
) -> None:
    """List every run, newest first, with how it ended and what it cost; below,
    the cost per provider. `trainctl runs show JOB` shows one run."""
    if ctx.invoked_subcommand:
        return
    out = Output(json_mode)
    when = parse_since(since)
    store = Trainctl().store
    found = store.runs(machine=machine, status=state, since=when)
    machines = [] if machine or state else store.machines(since=when)
    sums = totals(found, machines, when)
    grouped = group(found)
    if json_mode:
        out.emit(
            {
                "runs": [
                    {**r.to_dict(), "attempts": [a.to_dict() for a in tries]}
                    if len(tries) > 1
                    else r.to_dict()
                    for r, tries in grouped
                ],
                "since": when.isoformat() if when else None,
                "totals": sums,
            }
        )
        return
    if not found:
        out.info("No runs" + (" match." if machine or state or since else " yet."))
        return
    rows = [
        (
            r.run_id or r.id,
            r.machine or r.resource_id,
            r.provider,
            offer(r),
            r.how + (f" ({len(tries)} attempts)" if len(tries) > 1 else ""),
            "" if r.exit_code is None else r.exit_code,
            _when(tries[0].started_at),
            _hours(tries),
            money(_cost(tries)),
            " ".join(r.command)[:50],
        )
        for r, tries in grouped
    ]
    out.table(
        [
            "JOB",
            "MACHINE",
            "PROVIDER",
            "OFFER",
            "STATUS",
            "EXIT",
            "STARTED",
            "TIME",
            "COST",
            "COMMAND",
        ],
        rows,
        droppable=["OFFER", "COMMAND", "PROVIDER"],
    )
    heading = f"since {when:%Y-%m-%d %H:%M} UTC" if when else "in all"
    for provider, entry in sums.items():
        line = f"{provider}: {_count(entry['runs'], 'run')}, {money(entry['runs_cost'])}"
        if entry["unpriced"]:
            line += f" ({entry['unpriced']} with no known price)"
        if machines:
            machines_part = _count(entry["machines"], "machine")
            line += f"; its {machines_part} billed {money(entry['machines_cost'])}"
        out.info(f"{heading}, {line}")


@runs.command("show")
@click.argument("job")
@json_option
def show(job: str, json_mode: bool) -> None:
    """Everything recorded of one run."""
    out = Output(json_mode)
    tc = Trainctl()
    run = tc.store.job(job)
    if run is None:
        raise NotFound(f"no run {job!r} (see `trainctl runs`)")
    tries = tc.store.attempts(run.run_id) if run.run_id else [run]
    run = tries[-1] if len(tries) > 1 else run
    log = run_files.log_path(run.id)
    saved = run_files.saved(run.id)
    log_note = {
        "path": str(log) if saved else None,
        "bytes_at_home": saved,
        "bytes_on_machine": run.log_size,
        "complete": run.log_complete,
    }
    if json_mode:
        doc = {**run.to_dict(), "log": log_note}
        if len(tries) > 1:
            doc["attempts"] = [a.to_dict() for a in tries]
        out.emit(doc)
        return
    code = run.git_commit[:12] if run.git_commit else "-"
    if run.git_commit and run.git_dirty:
        code += " (with uncommitted changes)"
    lines = [
        ("job", run.id),
        ("machine", f"{run.machine or run.resource_id} ({run.resource_id})"),
        ("provider", f"{run.provider}, {offer(run)}" + (f", {run.region}" if run.region else "")),
        ("command", " ".join(run.command)),
        ("env names", ", ".join(run.env_names) or "-"),
        ("workdir", run.workdir or "- (not synced)"),
        ("code", code),
        ("checkpoints", run.checkpoint_dir or "-"),
        ("started", _when(run.started_at) or "-"),
        ("ended", _when(run.ended_at) or "-"),
        (
            "status",
            run.how + (f" (exit code {run.exit_code})" if run.exit_code is not None else ""),
        ),
        ("reason", run.reason or "-"),
        ("price", f"{money(run.price_per_hour)}/hour" if run.price_per_hour is not None else "-"),
        ("cost", money(run.cost())),
        ("log", _log_line(log_note)),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.info(f"{key.ljust(width)}  {value}")
    if len(tries) > 1:
        out.info(f"\n{len(tries)} attempts, {money(_cost(tries))} in all:")
        out.table(
            ["#", "JOB", "MACHINE", "OFFER", "STARTED", "ENDED", "HOW", "COST", "WHY"],
            [
                (
                    a.attempt,
                    a.id,
                    a.machine or a.resource_id,
                    offer(a),
                    _when(a.started_at),
                    _when(a.ended_at),
                    a.how,
                    money(a.cost()),
                    (a.reason or "")[:60],
                )
                for a in tries
            ],
            droppable=["OFFER", "WHY"],
        )


def group(found: list[JobRecord]) -> list[tuple[JobRecord, list[JobRecord]]]:
    """Runs, newest first: each the newest attempt's record, with all its attempts
    (first first) among ``found``; a run of one job is its own single attempt."""
    by_run: dict[str, list[JobRecord]] = {}
    for r in found:
        by_run.setdefault(r.run_id or r.id, []).append(r)
    seen: set[str] = set()
    grouped = []
    for r in found:  # newest first: a run's first row seen is its newest attempt
        key = r.run_id or r.id
        if key not in seen:
            seen.add(key)
            tries = sorted(by_run[key], key=lambda a: a.attempt or 0)
            grouped.append((tries[-1], tries))
    return grouped


def _hours(tries: list[JobRecord]) -> str:
    hours = [a.hours() for a in tries]
    if all(h is None for h in hours):
        return "-"
    return human_seconds(sum(h or 0.0 for h in hours) * 3600)


def _cost(tries: list[JobRecord]) -> float | None:
    costs = [a.cost() for a in tries]
    return None if all(c is None for c in costs) else round(sum(c or 0.0 for c in costs), 4)


def _count(n: object, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _log_line(note: dict) -> str:
    if not note["bytes_at_home"]:
        return "none at home"
    state = (
        "complete"
        if note["complete"]
        else (
            f"incomplete: {note['bytes_at_home']:,} bytes at home"
            + (f" of {note['bytes_on_machine']:,}" if note["bytes_on_machine"] else "")
        )
    )
    return f"{note['path']} ({state})"

"""What `run` rents: its resource candidates tried in order, and `--dryrun`'s report.

A run asks for one machine (or group) by its flags; a SkyPilot task may list several
candidates (``skypilot.SkyTask.choices``), each one's fields over the flags' values.
They become offers to try (``catalog.choices``), the next on no capacity. `--dryrun`
prints those tries and what the job would be, and rents nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import click

from .. import registry
from ..capabilities import Capability
from ..catalog import choices
from ..catalog.cheapest import CHEAPEST
from ..errors import BadInput, NoCapacity, OperationFailed
from ..types import CreateResourceOptions, TrainingJob
from .common import build_create_options, choose_provider, group_size
from .output import Output
from .skypilot import SkyTask

Candidate = tuple[str | None, CreateResourceOptions]


def candidates(
    provider: str | None,
    flags: dict[str, Any],
    options: CreateResourceOptions,
    sky: SkyTask | None,
) -> list[Candidate]:
    """The run's candidates: a provider (None: any usable one, by its offers) and the
    create options; one for a run without a list of them."""
    if sky is None or not sky.choices:
        name = choose_provider(provider)
        return [(None if name == CHEAPEST else name, options)]
    found = []
    for choice in sky.choices:
        chosen = choice.get("provider", provider)
        values = {**flags, **{k: v for k, v in choice.items() if k != "provider"}}
        if chosen != provider and "region" not in choice:
            # a candidate's infra names its provider and region together, as in SkyPilot
            values["region"] = None
        found.append((None if chosen == CHEAPEST else chosen, build_create_options(**values)))
    return found


def tries(
    found: list[Candidate], sky: SkyTask | None, nodes: int | None
) -> tuple[list[choices.Try], list[str]]:
    """``choices.plan`` of the candidates, in SkyPilot's order; a try that needs
    several machines of a provider that cannot place them is named, not tried."""
    planned, unrentable = choices.plan(found, ordered=bool(sky is None or sky.ordered))
    kept = []
    for one in planned:
        why = None
        if group_size(one.provider, one.options, nodes) > 1:
            cls = registry.get_class(one.provider)
            why = cls.unsupported_reason(Capability.MULTI_NODE, one.options)
        if why is None:
            kept.append(one)
        elif not any(line.startswith(f"candidate {one.number} on") for line in unrentable):
            unrentable.append(f"candidate {one.number} on {one.provider}: {why}")
    return kept, unrentable


def launch(
    found: list[Candidate],
    sky: SkyTask | None,
    nodes: int | None,
    run: Callable[..., int],
    on_created: Callable[[Any], None],
    progress: Callable[[str], None],
) -> int:
    """``run(provider, options, on_created)`` with each try in turn until one has
    capacity. A machine made means no other try: a later no-capacity error is the
    run's own."""
    planned, unrentable = tries(found, sky, nodes)

    def attempt(one: choices.Try) -> int:
        made = []

        def created(record: Any) -> None:
            made.append(record)
            on_created(record)

        try:
            return run(one.provider, one.options, created)
        except (NoCapacity, BadInput) as e:
            if made:  # the run's own error, not the try's
                raise OperationFailed(e.message, hint=e.hint) from e
            raise
        except OperationFailed as e:
            # a group all of whose nodes were released: one had no capacity
            if not made and isinstance(e.__cause__, NoCapacity):
                raise NoCapacity(e.message, hint=e.hint) from e
            raise

    return choices.first_with_capacity(planned, unrentable, attempt, report=progress)


def dryrun(
    out: Output,
    found: list[Candidate],
    sky: SkyTask | None,
    job: TrainingJob,
    nodes: int | None,
) -> int:
    """Print the plan; rent nothing. Exit code 0, or 2 when nothing could be rented."""
    planned, unrentable = tries(found, sky, nodes)
    order = None  # one candidate: its offers cheapest first
    if len(found) > 1:
        order = "as listed" if sky is not None and sky.ordered else "cheapest first"
    doc = {
        "task_file": sky.path if sky else None,
        "order": order,
        "tries": [
            {**t.to_dict(), "nodes": group_size(t.provider, t.options, nodes)} for t in planned
        ],
        "cannot_rent": unrentable,
        "command": job.command,
        "workdir": job.workdir,
        "mounts": [{"source": src, "target": target} for src, target in job.mounts],
        "setup": None if job.setup is None else ("bash -e" if job.setup_errexit else "bash"),
        "env": sorted(job.env),  # names only: values may be secrets
        "skypilot_variables": sky is not None,
        "ignored": sky.ignored if sky else [],
        "rented": False,
    }
    if out.json_mode:
        out.emit(doc)
        return 0 if planned else 2
    say = click.echo
    if sky:
        say(f"task file {sky.path} (SkyPilot format)")
    if not planned:
        say("nothing to try")
    else:
        say(f"would try, {order}:" if order else "would try:")
    for i, (one, row) in enumerate(zip(planned, doc["tries"], strict=True), 1):
        count = f", {row['nodes']} nodes" if row["nodes"] > 1 else ""
        say(f"  {i}. {one.describe()}{count}")
    for line in unrentable:
        say(f"  cannot rent {line}")
    if job.command[:2] == ["bash", "-c"] and len(job.command) == 3:
        say("run (bash):")
        for line in job.command[2].splitlines():
            say(f"  {line}")
    else:
        say(f"command: {shlex.join(job.command)}")
    say(f"workdir: {job.workdir or '(not synced)'}")
    for src, target in job.mounts:
        say(f"file mount: {src} -> {target}")
    if doc["setup"]:
        say(f"setup: runs with {doc['setup']}")
    if job.env:
        say(f"env: {', '.join(doc['env'])} (values not shown)")
    if sky:
        say("SKYPILOT_* variables: set on every node")
    if doc["ignored"]:
        say(f"ignored (null or empty): {', '.join(doc['ignored'])}")
    click.echo("nothing was rented (--dryrun)", err=True)
    return 0 if planned else 2

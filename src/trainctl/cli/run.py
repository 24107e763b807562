"""`trainctl run`: create a machine, train, follow, download outputs, terminate."""

from __future__ import annotations

from pathlib import Path

import click

from .. import checkpoints, groups, skyvars, sync
from ..api import Trainctl
from ..api import run as run_job
from ..errors import BadInput
from ..following import reattach_hint
from ..interrupts import signals_interrupt
from ..recovery import DEFAULT_RECOVERIES, Recovery
from ..runtime.client import new_job_id
from ..types import CreateResourceOptions
from . import plan
from .access import job_ports, port_option
from .common import (
    JobCommand,
    build_create_options,
    choose_provider,
    create_options,
    group_size,
    json_option,
    nodes_option,
    progress_printer,
)
from .jobs import build_job, checkpoint_sync_option, describe, job_options, mark_output_dir
from .output import Output
from .skypilot import SkyTask, as_task_script
from .taskfile import merge


@click.command(cls=JobCommand)
@create_options
@nodes_option
@job_options
@click.option(
    "--output",
    "-o",
    "outputs",
    multiple=True,
    help="Path to download when the job ends, relative to the synced directory (repeatable).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Where outputs land (default: ./trainctl-runs/<job-id>); never synced to a machine.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the machine after the job ends (and on Ctrl-C, the job too).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="On Ctrl-C/SIGTERM/SIGHUP: seconds the job gets after SIGTERM before SIGKILL.",
)
@checkpoint_sync_option
@click.option(
    "--recover",
    type=click.IntRange(min=0),
    is_flag=False,
    flag_value=DEFAULT_RECOVERIES,
    default=0,
    metavar="[N]",
    help="When the machine is preempted or lost, rent another, restore the checkpoints "
    f"brought home and run the command again; at most N times (default {DEFAULT_RECOVERIES}).",
)
@click.option(
    "--retry-on-failure",
    is_flag=True,
    help="With --recover: a job that fails by itself runs again too (on the same machine).",
)
@click.option(
    "--file",
    "-f",
    "task_file",
    type=click.Path(dir_okay=False),
    help="YAML task file with the same settings as the flags (flags win).",
)
@click.option(
    "--dryrun",
    is_flag=True,
    help="Print what would be rented and run (the offers to try, in order; what a task "
    "file asks that is ignored) and exit without renting anything.",
)
@port_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, task_file: str | None, json_mode: bool, **params) -> int:
    """Run COMMAND on a new machine and release the machine afterwards.

    The machine is terminated however the run ends (job failure, error, Ctrl-C)
    unless --keep is given, an output could not be downloaded, or the machine could
    not be reached for long (then the job is left running and trainctl says how to
    re-attach). Ctrl-C, SIGTERM or SIGHUP cancels the job (SIGTERM first, so it can
    checkpoint), downloads the outputs, then releases the machine; a second one
    skips the download. With --recover, a machine preempted or lost under the job
    is released and replaced, the checkpoints brought home go to the new one, and
    the command runs again there. Exit code: the job's own (its last attempt's); 1
    when anything asked for did not happen; 130 when interrupted.

    A SkyPilot task file (-f) may list resource candidates (any_of, ordered): they
    are tried in SkyPilot's order, the next on no capacity; its jobs get SkyPilot's
    SKYPILOT_* variables. With --dryrun nothing is rented: the plan is printed.
    """
    if task_file:
        params = merge(ctx, params, task_file)
    return _run(json_mode=json_mode, **params)


def _run(
    provider,
    command,
    outputs,
    output_dir,
    keep,
    grace,
    checkpoint_sync,
    recover,
    retry_on_failure,
    json_mode,
    ports=(),
    nodes=None,
    skypilot: SkyTask | None = None,
    dryrun: bool = False,
    **flags,
) -> int:
    out = Output(json_mode)
    job_flags = {
        k: flags.pop(k)
        for k in (
            "workdir",
            "no_sync",
            "envs",
            "env_files",
            "allow_any_workdir",
            "delete",
            "checkpoint_dir",
            "setup",
            "no_setup",
        )
    }
    job = build_job(command, **job_flags)
    if skypilot is not None:
        job.setup_errexit = False  # SkyPilot runs setup with plain bash
        job.mounts = list(skypilot.mounts)
    options = build_create_options(**flags)
    candidates = plan.candidates(provider, flags, options, skypilot)
    forwards = job_ports(ports)
    every = checkpoints.interval(checkpoint_sync)
    if retry_on_failure and not recover:
        raise BadInput("--retry-on-failure needs --recover [N]: how many times to try again")
    if recover and every is None:
        click.echo(
            "warning: --recover with --checkpoint-sync off: no checkpoint comes home, so a "
            "recovered attempt starts from what --store saved, or from scratch",
            err=True,
        )
    if dryrun:
        return plan.dryrun(out, candidates, skypilot, job, nodes)
    if skypilot is not None:
        job = as_task_script(job)
    progress = progress_printer(json_mode)
    tc = Trainctl()
    job.job_id = new_job_id()
    dest = Path(output_dir) if output_dir else Path(sync.OUTPUT_DIR) / job.job_id
    if outputs or every is not None:
        mark_output_dir(dest, job)  # never sent by a later run's sync of the same directory
    task_id = job.job_id
    node_vars = (lambda statuses: skyvars.variables(statuses, task_id)) if skypilot else None

    def launch(name: str, options: CreateResourceOptions, on_created=_created) -> int:
        count = group_size(name, options, nodes)
        # what a run on one machine and one on a group take alike
        common = {
            "outputs": list(outputs),
            "output_dir": dest,
            "keep": keep,
            "grace": grace,
            "sink": out.log_bytes,
            "progress": progress,
            "on_created": on_created,
            "node_vars": node_vars,
        }
        if count > 1:
            if recover or forwards:
                raise BadInput("--recover and --port do not work with several nodes yet")
            with signals_interrupt():
                grouped = groups.run_group(
                    tc, name, options, count, job, checkpoint_sync=every, **common
                )
            return _report_group(grouped, out, keep)
        with signals_interrupt():
            result = run_job(
                tc,
                name,
                options,
                job,
                checkpoint_sync=checkpoints.OFF if every is None else every,
                recover=Recovery(recover, retry_on_failure),
                ports=forwards,
                **common,
            )
        return _report(result, out)

    if len(candidates) > 1:
        return plan.launch(candidates, skypilot, nodes, launch, _created, progress)
    return launch(choose_provider(provider), options)


def _report(result, out: Output) -> int:
    """What `run` says when one machine's run ended; its exit code."""
    if out.json_mode:
        out.emit(result.to_dict())
        return result.exit_code
    if len(result.attempts) > 1:
        first = result.attempts[0].id
        click.echo(f"{len(result.attempts)} attempts: `trainctl runs show {first}`", err=True)
    if result.job:
        click.echo(describe(result.job), err=True)
    if result.checkpoints:
        out.info(result.checkpoints.summary())
    for path in result.downloads:
        out.info(f"downloaded: {path}")
    rname = result.resource.name
    guards = f" It stays under its guards: {result.guards}." if result.guards else ""
    if result.lost:
        click.echo(f"error: {result.lost}", err=True)
    if result.terminated:
        note = f": {result.released_note}" if result.released_note else ""
        click.echo(f"terminated {rname}{note}", err=True)
    elif result.kept_reason:
        hint = (
            reattach_hint(result.job.job_id, rname)
            if result.job and not result.job.status.is_final
            else f"retry with `trainctl download`, then `trainctl terminate {rname}`"
        )
        click.echo(f"warning: kept {rname} because {result.kept_reason}; {hint}.{guards}", err=True)
    elif result.interrupted and result.job:
        click.echo(
            f"kept {rname} and job {result.job.job_id} running; "
            + reattach_hint(result.job.job_id, rname)
            + guards,
            err=True,
        )
    else:
        click.echo(f"kept {rname}; `trainctl terminate {rname}` ends it.{guards}", err=True)
    return result.exit_code


def _created(record) -> None:
    click.echo(f"created {record.name} ({record.id}) on {record.provider}", err=True)


def _report_group(result, out: Output, keep: bool) -> int:
    """What `run --nodes N` (or --host once per node) says when the group's job ended."""
    if out.json_mode:
        out.emit(result.to_dict())
        return result.exit_code
    if result.job is not None:
        for rank, status in enumerate(result.job.nodes):
            click.echo(f"node {rank}: {describe(status)}", err=True)
    for path in result.downloads:
        out.info(f"downloaded: {path}")
    for failure in result.failures:
        click.echo(f"error: {failure}", err=True)
    if result.terminated:
        click.echo(f"terminated group {result.group}", err=True)
    elif keep:
        hint = f"`trainctl terminate {result.group}` ends it."
        click.echo(f"kept group {result.group}; {hint}", err=True)
    return result.exit_code

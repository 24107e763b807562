"""Job commands: train, monitor (logs), jobs, cancel, download."""

from __future__ import annotations

from pathlib import Path

import click

from .. import interrupts
from ..api import Trainctl
from ..errors import BadInput, NotFound
from ..following import reattach_hint
from ..interrupts import Interrupted, signals_interrupt
from ..types import TrainingJob, TrainingStatus
from .common import json_option, parse_pairs, progress_printer
from .output import Output


def job_exit_code(status: TrainingStatus) -> int:
    """What `monitor --follow` and `run` exit with: the job's own code."""
    return status.exit_code if status.exit_code is not None else 1


def describe(status: TrainingStatus) -> str:
    text = f"job {status.job_id} {status.status.value}"
    if status.exit_code is not None:
        text += f" (exit code {status.exit_code})"
    if status.reason:
        text += f": {status.reason}"
    return text


def job_options(f):
    for option in reversed(
        [
            click.option(
                "--workdir",
                "-w",
                type=click.Path(file_okay=False),
                default=".",
                show_default=True,
                help="Directory to sync to the machine.",
            ),
            click.option("--no-sync", is_flag=True, help="Do not sync a directory."),
            click.option("--env", "-e", "envs", multiple=True, help="NAME=VALUE for the job."),
            click.option(
                "--delete", is_flag=True, help="Remove files gone locally from the machine."
            ),
            click.option(
                "--checkpoint-dir",
                default="checkpoints",
                show_default=True,
                help="TRAINCTL_CHECKPOINT_DIR, relative to the synced directory.",
            ),
        ]
    ):
        f = option(f)
    return f


def build_job(command, workdir, no_sync, envs, delete, checkpoint_dir) -> TrainingJob:
    if not command:
        raise BadInput("empty command: give the command after --, e.g. -- python train.py")
    if not no_sync and not Path(workdir).is_dir():
        raise BadInput(f"workdir {workdir} does not exist or is not a directory")
    if Path(checkpoint_dir).is_absolute() or ".." in Path(checkpoint_dir).parts:
        raise BadInput("--checkpoint-dir must be a relative path inside the synced directory")
    return TrainingJob(
        command=list(command),
        workdir=None if no_sync else str(Path(workdir).resolve()),
        env=parse_pairs(envs, "--env"),
        checkpoint_dir=checkpoint_dir,
        delete=delete,
    )


def follow(tc: Trainctl, out: Output, job_id: str, resource: str) -> TrainingStatus:
    """Follow the job's log to its end. An interrupt (Ctrl-C, SIGTERM, SIGHUP) stops
    following only: the job keeps running, and the error says how to come back."""
    try:
        with signals_interrupt():
            return tc.monitor(
                job_id, follow=True, sink=out.log_bytes, progress=progress_printer(out.json_mode)
            )
    except KeyboardInterrupt as e:
        raise Interrupted(
            f"{interrupts.name(e)}: stopped following; job {job_id} keeps running on {resource}",
            hint=reattach_hint(job_id, resource),
        ) from None


@click.command()
@click.argument("resource")
@job_options
@click.option("--detach", "-d", is_flag=True, help="Start the job and return at once.")
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def train(resource, command, detach, json_mode, **job_flags) -> int:
    """Sync the working directory to RESOURCE and run COMMAND there.

    Without --detach the log is followed and trainctl exits with the job's code;
    Ctrl-C (or SIGTERM, SIGHUP) stops following and leaves the job running
    (exit 130).
    """
    out = Output(json_mode)
    job = build_job(command, **job_flags)
    tc = Trainctl()
    started = tc.train(resource, job, progress=progress_printer(json_mode))
    if detach:
        if json_mode:
            out.emit(started.to_dict())
        else:
            out.info(f"started job {started.job_id} on {resource}")
            out.info(f"follow it with: trainctl monitor {started.job_id} --follow")
        return 0
    click.echo(f"job {started.job_id} started on {resource}; following its log", err=True)
    final = follow(tc, out, started.job_id, resource)
    if json_mode:
        out.emit(final.to_dict())
    else:
        click.echo(describe(final), err=True)
    return job_exit_code(final)


@click.command()
@click.argument("ref", metavar="RESOURCE|JOB")
@click.option(
    "--follow",
    "-f",
    "follow_log",
    is_flag=True,
    help="Stream until the job ends; exit with its code.",
)
@json_option
def monitor(ref: str, follow_log: bool, json_mode: bool) -> int:
    """Print a job's log (a resource means its newest job).

    With --follow, Ctrl-C (or SIGTERM, SIGHUP) stops following and leaves the job
    running (exit 130); a machine that cannot be reached is retried with backoff.
    """
    out = Output(json_mode)
    tc = Trainctl()
    if follow_log:
        record, _provider, job_id = tc.find_job(ref)
        if job_id is None:
            found = tc.jobs(record.id)
            if not found:
                raise NotFound(f"no jobs on {record.name}")
            job_id = found[-1].job_id
        status = follow(tc, out, job_id, record.name)
    else:
        status = tc.monitor(ref, sink=out.log_bytes)
    if json_mode:
        out.emit(status.to_dict())
    else:
        click.echo(describe(status), err=True)
    return job_exit_code(status) if follow_log else 0


@click.command()
@click.argument("resource", required=False)
@json_option
def jobs(resource: str | None, json_mode: bool) -> None:
    """List jobs on RESOURCE (or on every machine) with their states."""
    out = Output(json_mode)
    errors: list[str] = []
    found = Trainctl().jobs(resource, on_error=errors.append)
    for error in errors:
        click.echo(f"warning: could not list jobs on {error}", err=True)
    if json_mode:
        out.emit({"jobs": [j.to_dict() for j in found], "errors": errors})
        return
    if not found:
        out.info("No jobs.")
        return
    rows = [
        (
            j.job_id,
            j.resource_id,
            j.status.value,
            "" if j.exit_code is None else j.exit_code,
            j.started_at.strftime("%Y-%m-%d %H:%M") if j.started_at else "",
            " ".join(j.command)[:60],
        )
        for j in found
    ]
    out.table(["JOB", "RESOURCE", "STATUS", "EXIT", "STARTED", "COMMAND"], rows)


@click.command()
@click.argument("job")
@click.option(
    "--grace", type=float, default=10.0, show_default=True, help="Seconds before SIGKILL."
)
@json_option
def cancel(job: str, grace: float, json_mode: bool) -> None:
    """Cancel JOB: SIGTERM to its process group, SIGKILL after the grace period."""
    out = Output(json_mode)
    status = Trainctl().cancel(job, grace)
    if json_mode:
        out.emit(status.to_dict())
    else:
        out.info(describe(status))


@click.command()
@click.argument("resource")
@click.argument("remote_path")
@click.argument("local_path", type=click.Path())
@json_option
def download(resource: str, remote_path: str, local_path: str, json_mode: bool) -> None:
    """Copy REMOTE_PATH from RESOURCE to LOCAL_PATH.

    Relative remote paths are inside the synced directory. A directory's contents
    land in LOCAL_PATH; a file lands at LOCAL_PATH (or inside it, if a directory).
    """
    out = Output(json_mode)
    landed = Trainctl().download(
        resource, remote_path, local_path, progress=progress_printer(json_mode)
    )
    if json_mode:
        out.emit({"resource": resource, "remote_path": remote_path, "local_path": str(landed)})
    else:
        out.info(f"downloaded {remote_path} to {landed}")

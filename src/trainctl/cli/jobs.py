"""Job commands: train, monitor (logs), jobs, cancel, download."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from .. import checkpoints, groups, interrupts, runs, sync
from ..api import Trainctl
from ..errors import BadInput, NotFound
from ..following import reattach_hint
from ..interrupts import Interrupted, signals_interrupt
from ..runtime.client import new_job_id
from ..types import TrainingJob, TrainingStatus
from .access import job_ports, port_option
from .common import JobCommand, json_option, progress_printer
from .envfile import job_env
from .output import Output, Tail


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
            click.option(
                "--allow-any-workdir",
                is_flag=True,
                help="Allow / or the home directory itself as the workdir.",
            ),
            click.option(
                "--env",
                "-e",
                "envs",
                multiple=True,
                help="NAME=VALUE for the job, or NAME to pass this environment's value "
                "(repeatable). -e NAME and --env-file keep values out of `ps`.",
            ),
            click.option(
                "--env-file",
                "env_files",
                multiple=True,
                type=click.Path(dir_okay=False),
                help="File of NAME=VALUE lines (dotenv) for the job's environment "
                "(repeatable; -e wins).",
            ),
            click.option(
                "--delete", is_flag=True, help="Remove files gone locally from the machine."
            ),
            click.option(
                "--setup",
                metavar="SCRIPT",
                help="Shell script run before the command (bash -e, in the synced "
                "directory, with the job's environment), e.g. 'pip install -r "
                "requirements.txt'; skipped while it and the files it names are unchanged "
                "on the machine.",
            ),
            click.option("--no-setup", is_flag=True, help="Skip the setup step."),
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


def checkpoint_sync_option(f):
    return click.option(
        "--checkpoint-sync",
        metavar="DURATION|off",
        help="While the job runs, bring each new or changed file of its checkpoint "
        "directory home once complete, looking at least this often (5s, 2m; default "
        "5s, or [checkpoints] interval in the config file), or off.",
    )(f)


#: a sync above either is worth a warning before it starts
WARN_BYTES = 1024**3
WARN_FILES = 20_000


def build_job(
    command,
    workdir,
    no_sync,
    envs,
    delete,
    checkpoint_dir,
    env_files=(),
    allow_any_workdir=False,
    setup=None,
    no_setup=False,
    image=None,
) -> TrainingJob:
    if not command:
        raise BadInput("empty command: give the command after --, e.g. -- python train.py")
    if not no_sync and not Path(workdir).is_dir():
        raise BadInput(f"workdir {workdir} does not exist or is not a directory")
    if Path(checkpoint_dir).is_absolute() or ".." in Path(checkpoint_dir).parts:
        raise BadInput("--checkpoint-dir must be a relative path inside the synced directory")
    job = TrainingJob(
        command=list(command),
        workdir=None if no_sync else str(Path(workdir).resolve()),
        env=job_env(envs, env_files),
        checkpoint_dir=checkpoint_dir,
        delete=delete,
        allow_any_workdir=allow_any_workdir,
        setup=None if no_setup or not (setup or "").strip() else setup,
        image=image,
    )
    if job.workdir is not None:
        _warn_if_huge(Path(job.workdir))
    return job


def _warn_if_huge(resolved: Path) -> None:
    """One line before a sync far larger than a project usually is."""
    files, size = sync.measure_tree(str(resolved))
    if size > WARN_BYTES or files > WARN_FILES:
        click.echo(
            f"warning: {resolved} has {files:,} files, {size / 1024**3:.1f} GiB to sync; "
            "exclude what the job does not need in .trainctlignore",
            err=True,
        )


def follow(
    tc: Trainctl, out: Output, job_id: str, resource: str, tail: int | None = None
) -> TrainingStatus:
    """Follow the job's log to its end (from its last ``tail`` lines, if given). An
    interrupt (Ctrl-C, SIGTERM, SIGHUP) stops following only: the job keeps running,
    and the error says how to come back."""
    try:
        with signals_interrupt():
            offset = 0
            if tail is not None:
                _, offset = show_log(tc, job_id, tail=tail, sink=out.log_bytes)
            return tc.monitor(
                job_id,
                follow=True,
                sink=out.log_bytes,
                progress=progress_printer(out.json_mode),
                offset=offset,
            )
    except KeyboardInterrupt as e:
        raise Interrupted(
            f"{interrupts.name(e)}: stopped following; job {job_id} keeps running on {resource}",
            hint=reattach_hint(job_id, resource),
        ) from None


def show_log(tc: Trainctl, ref: str, *, tail: int | None, sink) -> tuple[TrainingStatus, int]:
    """The log so far to ``sink``: all of it, or its last ``tail`` lines. Returns the
    job's status and how many bytes of its log were read."""
    last = Tail(tail) if tail is not None else None
    seen = 0

    def write(chunk: bytes) -> None:
        nonlocal seen
        seen += len(chunk)
        (last or sink)(chunk)

    status = tc.monitor(ref, sink=write)
    if last is not None:
        sink(last.text())
    return status, seen


@click.command(cls=JobCommand, leading=1)
@click.argument("resource")
@job_options
@click.option("--detach", "-d", is_flag=True, help="Start the job and return at once.")
@click.option(
    "--image",
    help="Container image the job runs in (docker run on the machine, GPUs passed "
    "through; not on runpod, where the pod's image is set at create).",
)
@checkpoint_sync_option
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Where checkpoints land while following (default: ./trainctl-runs/<job-id>); "
    "never synced to a machine.",
)
@port_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def train(
    resource, command, detach, checkpoint_sync, output_dir, ports, json_mode, **job_flags
) -> int:
    """Sync the working directory to RESOURCE and run COMMAND there.

    Without --detach the log is followed, the checkpoint directory comes home file by
    file as the job writes it (to --output-dir), and trainctl exits with the job's
    code; Ctrl-C (or SIGTERM, SIGHUP) stops following and leaves the job running
    (exit 130).
    """
    out = Output(json_mode)
    job = build_job(command, **job_flags)
    forwards = job_ports(ports, detach=detach)
    every = None if detach else checkpoints.interval(checkpoint_sync)
    job.job_id = new_job_id()
    dest = Path(output_dir) if output_dir else Path(sync.OUTPUT_DIR) / job.job_id
    if every is not None and output_dir:
        mark_output_dir(dest, job)
    tc = Trainctl()
    progress = progress_printer(json_mode)
    if tc.store.group(resource) is not None:
        return _train_group(tc, out, resource, job, detach, progress)
    started = tc.train(resource, job, progress=progress)
    if detach:
        if json_mode:
            out.emit(started.to_dict())
        else:
            out.info(f"started job {started.job_id} on {resource}")
            out.info(f"follow it with: trainctl monitor {started.job_id} --follow")
        return 0
    click.echo(f"job {started.job_id} started on {resource}; following its log", err=True)
    puller = None
    if every is not None:
        puller = tc.pull_checkpoints(
            started.job_id,
            job.checkpoint_dir,
            checkpoints.home_dir(dest, job.checkpoint_dir),
            interval=every,
            progress=progress,
        )
    with tc.forwarding(resource, forwards, progress):
        if puller is None:
            final = follow(tc, out, started.job_id, resource)
            pulled = None
        else:
            puller.start()
            try:
                final = follow(tc, out, started.job_id, resource)
            except Interrupted:
                puller.close(0.0)  # the job runs on; its look ends on the machine by itself
                raise
    if puller is not None:
        with signals_interrupt():
            pulled = puller.finish()
    if json_mode:
        out.emit({**final.to_dict(), "checkpoints": pulled.to_dict() if pulled else None})
    else:
        click.echo(describe(final), err=True)
        if pulled:
            out.info(pulled.summary())
    return job_exit_code(final)


def mark_output_dir(dest: Path, job: TrainingJob) -> None:
    """Make ``dest``, when it lies in the synced directory, one no later sync sends."""
    if job.workdir and dest.resolve().is_relative_to(job.workdir):
        try:
            sync.mark_output_dir(str(dest))
        except OSError as e:
            raise BadInput(f"cannot write outputs to {dest}: {e.strerror or e}") from None


@click.command()
@click.argument("ref", metavar="RESOURCE|JOB")
@click.option(
    "--follow",
    "-f",
    "follow_log",
    is_flag=True,
    help="Stream until the job ends; exit with its code.",
)
@click.option(
    "--tail",
    "-n",
    type=click.IntRange(min=0),
    help="Only the last N lines so far (with --follow, then what comes).",
)
@click.option(
    "--node",
    type=click.IntRange(min=0),
    help="A job of several nodes: node K's log alone (default: every node's, as [node k]).",
)
@json_option
def monitor(
    ref: str, follow_log: bool, tail: int | None, node: int | None, json_mode: bool
) -> int:
    """Print a job's log (a resource means its newest job; a group, its newest job
    on every node).

    With --follow, Ctrl-C (or SIGTERM, SIGHUP) stops following and leaves the job
    running (exit 130); a machine that cannot be reached is retried with backoff.
    """
    out = Output(json_mode)
    tc = Trainctl()
    node_jobs = groups.node_jobs(tc, ref)
    if node_jobs:
        return _monitor_group(tc, out, node_jobs, follow_log, node)
    if node is not None:
        raise BadInput(f"{ref} is not a job of several nodes: --node needs one")
    past = tc.past_run(ref)
    if not follow_log or past is not None:
        status, _ = show_log(tc, ref, tail=tail, sink=out.log_bytes)
    else:
        record, _provider, job_id = tc.find_job(ref)
        if job_id is None:
            found = tc.jobs(record.id)
            if not found:
                raise NotFound(f"no jobs on {record.name}")
            job_id = found[-1].job_id
        status = follow(tc, out, job_id, record.name, tail=tail)
    saved = saved_log(tc, past) if past is not None else None
    if json_mode:
        out.emit({**status.to_dict(), "saved_log": saved} if saved else status.to_dict())
    else:
        click.echo(describe(status), err=True)
        if past is not None and saved is not None:
            click.echo(
                f"{past.machine or past.resource_id} is gone: this is the log saved at home, "
                + (
                    "complete"
                    if saved["complete"]
                    else f"incomplete ({saved['bytes_at_home']:,} bytes"
                    + (f" of {saved['bytes_on_machine']:,}" if saved["bytes_on_machine"] else "")
                    + ")"
                ),
                err=True,
            )
    return job_exit_code(status) if follow_log else 0


def _train_group(tc: Trainctl, out: Output, group: str, job, detach: bool, progress) -> int:
    """`train GROUP`: the job on every node at once (see groups.start)."""
    nodes = groups.members(tc, group)
    started = groups.start(tc, nodes, job, job.job_id, progress=progress)
    ids = [s.job_id for s in started]
    if detach:
        if out.json_mode:
            out.emit({"job_id": job.job_id, "nodes": [s.to_dict() for s in started]})
        else:
            out.info(f"started job {job.job_id} on {len(ids)} nodes of {group}")
            out.info(f"follow it with: trainctl monitor {job.job_id} --follow")
        return 0
    click.echo(f"job {job.job_id} started on {len(ids)} nodes of {group}", err=True)
    try:
        with signals_interrupt():
            result = groups.follow(ids, out.log_bytes, progress=progress)
    except KeyboardInterrupt as e:
        raise Interrupted(
            f"{interrupts.name(e)}: stopped following; job {job.job_id} keeps running on "
            f"every node of {group}",
            hint=f"`trainctl monitor {job.job_id} --follow` comes back; `trainctl cancel` "
            f"ends each node's job ({', '.join(ids)})",
        ) from None
    if out.json_mode:
        out.emit({"job_id": job.job_id, "nodes": [s.to_dict() for s in result.nodes]})
    else:
        for rank, status in enumerate(result.nodes):
            click.echo(f"node {rank}: {describe(status)}", err=True)
    return result.exit_code


def _monitor_group(
    tc: Trainctl, out: Output, node_jobs: list[str], follow_log: bool, node: int | None
) -> int:
    """`monitor` of a job of several nodes: their logs as one (see groups.follow)."""
    if node is not None and node >= len(node_jobs):
        raise BadInput(f"the job has {len(node_jobs)} nodes: --node is 0 to {len(node_jobs) - 1}")
    if follow_log:
        with signals_interrupt():
            result = groups.follow(node_jobs, out.log_bytes, only=node)
        statuses, code = result.nodes, result.exit_code
    else:
        statuses = []
        lock = threading.Lock()
        for rank, job_id in enumerate(node_jobs):
            if node is not None and rank != node:
                continue
            sink = out.log_bytes if node is not None else groups.Prefixed(out.log_bytes, rank, lock)
            statuses.append(tc.monitor(job_id, sink=sink))
            if isinstance(sink, groups.Prefixed):
                sink.flush()
        code = 0
    if out.json_mode:
        out.emit({"nodes": [s.to_dict() for s in statuses]})
    else:
        for status in statuses:
            click.echo(describe(status), err=True)
    return code


def saved_log(tc: Trainctl, run) -> dict[str, object]:
    """What of a run's log is at home."""
    return {
        "path": str(runs.log_path(run.id)),
        "bytes_at_home": runs.saved(run.id),
        "bytes_on_machine": run.log_size,
        "complete": run.log_complete,
    }


@click.command()
@click.argument("resource", required=False)
@json_option
def jobs(resource: str | None, json_mode: bool) -> None:
    """List jobs on RESOURCE (or on every machine) with their states."""
    out = Output(json_mode)
    errors: list[str] = []
    tc = Trainctl()
    if resource is not None and tc.store.group(resource) is not None:
        found = [
            j for r in groups.members(tc, resource) for j in tc.jobs(r.id, on_error=errors.append)
        ]
    else:
        found = tc.jobs(resource, on_error=errors.append)
    names = {r.id: r.name for r in tc.store.resources()}
    gone = {}
    if resource is None:
        past = tc.past_runs()
        gone = {r.id: r for r in past[:PAST_JOBS]}
        found += [r.to_status() for r in reversed(past[:PAST_JOBS])]
        more = len(past) - PAST_JOBS
    else:
        gone = {j.job_id: tc.store.job(j.job_id) for j in found if tc.past_run(j.job_id)}
        more = 0
    for error in errors:
        click.echo(f"warning: could not list jobs on {error}", err=True)

    def machine(j: TrainingStatus) -> str:
        run = gone.get(j.job_id)
        if run is not None:
            return f"{run.machine or run.resource_id} (gone)"
        return names.get(j.resource_id, j.resource_id)

    if json_mode:
        out.emit(
            {
                "jobs": [
                    {
                        **j.to_dict(),
                        "resource_name": machine(j).removesuffix(" (gone)"),
                        "machine_gone": j.job_id in gone,
                    }
                    for j in found
                ],
                "errors": errors,
            }
        )
        return
    if not found:
        out.info("No jobs.")
        return
    rows = [
        (
            j.job_id,
            machine(j),
            j.status.value + (f" ({_ended(j, gone)})" if _ended(j, gone) else ""),
            "" if j.exit_code is None else j.exit_code,
            j.started_at.strftime("%Y-%m-%d %H:%M") if j.started_at else "",
            " ".join(j.command)[:60],
        )
        for j in found
    ]
    out.table(["JOB", "MACHINE", "STATUS", "EXIT", "STARTED", "COMMAND"], rows)
    if more > 0:
        out.info(f"{more} older runs of machines that are gone: `trainctl runs` lists them all")


#: how many runs of machines that are gone `jobs` shows after the live ones
PAST_JOBS = 10


def _ended(j: TrainingStatus, gone: dict) -> str | None:
    run = gone.get(j.job_id)
    return j.ended_by or (run.ended_by if run is not None else None)


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
    tc = Trainctl()
    group = tc.store.group(resource)
    if group is not None:  # a group's files are taken from node 0
        nodes = groups.members(tc, resource)
        if not nodes:
            raise NotFound(f"group {resource} has no machine left")
        resource = nodes[0].id
    landed = tc.download(resource, remote_path, local_path, progress=progress_printer(json_mode))
    if json_mode:
        out.emit({"resource": resource, "remote_path": remote_path, "local_path": str(landed)})
    else:
        out.info(f"downloaded {remote_path} to {landed}")

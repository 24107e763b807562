"""Groups of machines for one multi-node job (``--nodes N``): all or nothing.

Orchestration above the provider interface: each machine of a group is rented through
the usual create path (its intent logged, its guards armed) as ``<group>-<rank>``, with
``options.group`` saying its place; what the machines share (a placement, network
rules: ``GroupNetwork.make_group_network``) is made first and removed last, and the
group is in the store before either. If any machine cannot be made, every one already
made is released, and what they share removed, before the error (which names the node
and why) is raised: no partial group is left billing.

The job runs on every node at once with the variables torchrun (and DeepSpeed,
Accelerate) read: MASTER_ADDR (node 0's private address where the provider gives one,
else the address it is reached at), MASTER_PORT, NODE_RANK, NNODES, NPROC_PER_NODE (the
node's GPU count, or 1) and TRAINCTL_NODE_IPS, and the same as torchrun's PET_NNODES,
PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR and PET_MASTER_PORT, which it takes as
its flags' defaults: a bare ``torchrun train.py`` joins the group. Its exit code is the
first failing node's, or 0; once a node fails, the others are cancelled with the usual
grace.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import Trainctl, download_outputs
from .capabilities import Capability, require
from .checkpoints import JOIN_SECONDS, home_dir
from .errors import BadInput, OperationFailed, TrainctlError
from .guards import CREATE_IDLE_SECONDS, RUN_IDLE_SECONDS
from .interrupts import Interrupt, deferred
from .provider import GroupNetwork
from .runtime.client import new_job_id
from .types import (
    CreateResourceOptions,
    ExecutionStatus,
    GroupPlacement,
    ResourceStatus,
    TrainingJob,
    node_name,
)
from .waiting import cancelled_by

if TYPE_CHECKING:
    from .remote.base import Progress
    from .runtime.client import OutputSink
    from .store import ResourceRecord
    from .types import TrainingStatus

#: torchrun's default rendezvous port
MASTER_PORT = 29500
MAX_NODES = 64


def node_job_id(job_id: str, rank: int) -> str:
    return f"{job_id}-n{rank}"


def per_node(provider: Any, extra: dict[str, Any], nodes: int) -> list[dict[str, Any]]:
    """Each node's provider flags: a flag given once per node (``ProviderFlag.per_node``,
    e.g. the ssh provider's ``--host``) is split, node 0 first; the others are shared."""
    split = {f.name for f in provider.flags if f.per_node}
    found = []
    for rank in range(nodes):
        own = {}
        for key, value in extra.items():
            if key in split and value is not None:
                if not isinstance(value, list | tuple) or len(value) != nodes:
                    given = len(value) if isinstance(value, list | tuple) else 1
                    raise BadInput(
                        f"--{key.replace('_', '-')} was given {given} time(s) for "
                        f"{nodes} nodes: give it once per node, node 0 first"
                    )
                own[key] = value[rank]
            else:
                own[key] = value
        found.append(own)
    return found


def nodes_given(provider: Any, extra: dict[str, Any]) -> int | None:
    """How many nodes the per-node flags name (None when none is repeated)."""
    counts = {
        len(v)
        for f in provider.flags
        if f.per_node and isinstance(v := extra.get(f.name), list | tuple)
    }
    if len(counts) > 1:
        raise BadInput("the per-node flags name different numbers of nodes")
    return counts.pop() if counts else None


class NodeFailed(OperationFailed):
    """A node of a group could not be made."""

    def __init__(self, rank: int, nodes: int, name: str | None, error: TrainctlError) -> None:
        super().__init__(
            f"node {rank} of {nodes} ({name}) could not be made: {error.message}",
            hint=error.hint,
        )
        self.rank = rank


def create_group(
    tc: Trainctl,
    provider_name: str,
    options: CreateResourceOptions,
    nodes: int,
    *,
    progress: Progress | None = None,
    default_idle: float | None = None,
    new_api: Callable[[], Trainctl] = Trainctl,
) -> list[ResourceRecord]:
    """Rent ``nodes`` machines as one group named ``options.name`` (or a new name);
    returns their records, node 0 first. All or nothing (see the module docstring).
    The nodes are made at once, each in its own thread with its own ``new_api()``;
    once one fails (or Ctrl-C reaches this thread), the waits of the others end as an
    interrupt ends them, releasing their machines, and what was made is released."""
    if not 2 <= nodes <= MAX_NODES:
        raise BadInput(f"--nodes must be from 2 to {MAX_NODES}, not {nodes}")
    provider = tc.provider(provider_name)
    require(provider, Capability.MULTI_NODE, options)
    extras = per_node(provider, options.extra, nodes)
    name = options.name or tc.store.new_name()
    say = progress or (lambda _line: None)
    tc.store.add_group(name, provider_name, nodes)
    made: list[ResourceRecord] = []
    network: dict[str, Any] | None = None
    kwargs = {} if default_idle is None else {"default_idle": default_idle}
    try:
        # what it makes may bill (a RunPod cluster is its pods): a Ctrl-C waits for
        # it to be recorded, so that the undo below releases it
        with deferred():
            network = provider.make_group_network(name, options, nodes)
            tc.store.update_group(name, network=network)
        placed = [
            replace(
                options,
                name=node_name(name, rank),
                extra=extras[rank],
                tags=dict(options.tags),
                group=GroupPlacement(name, nodes, rank, network),
            )
            for rank in range(nodes)
        ]
        _create_nodes(provider_name, name, placed, made, say, progress, kwargs, new_api)
    except BaseException as e:
        left = _undo(tc, provider, name, made, network, say)
        if isinstance(e, TrainctlError) and left:
            e.message += (
                f"; could not release {'; '.join(left)}: `trainctl terminate {name}` retries"
            )
        elif isinstance(e, NodeFailed):
            others = ", ".join(node_name(name, r) for r in range(nodes) if r != e.rank)
            e.message += f"; released the other nodes ({others})"
        elif left:
            say(f"could not release {'; '.join(left)}: `trainctl terminate {name}` retries")
        raise
    return made


def _create_nodes(
    provider_name: str,
    name: str,
    placed: list[CreateResourceOptions],
    made: list[ResourceRecord],
    say: Progress,
    progress: Progress | None,
    kwargs: dict[str, Any],
    new_api: Callable[[], Trainctl],
) -> None:
    """Make every node at once; ``made`` gets the records of those made (node 0
    first), failing or not. Raises the first node's own failure (the first in time:
    the others' may follow from it, or from their cancelling), or the interrupt that
    reached this thread, once every node's create has ended."""
    stop = threading.Event()
    lock = threading.Lock()
    ids: list[str | None] = [None] * len(placed)
    failures: list[tuple[int, BaseException]] = []  # in the order they happened

    def one(rank: int) -> ResourceRecord:
        opts = placed[rank]
        api = new_api()
        try:
            say(f"node {rank} of {name}: creating {opts.name}")
            node_progress = (lambda line: progress(f"[node {rank}] {line}")) if progress else None
            with cancelled_by(stop):
                record = api.create(provider_name, opts, progress=node_progress, **kwargs)
            with lock:  # recorded as the group's at once, for a `terminate` after a crash
                ids[rank] = record.id
                api.store.update_group(name, members=[i for i in ids if i])
            return record
        except BaseException as e:
            with lock:
                failures.append((rank, e))
            stop.set()
            raise
        finally:
            api.store.close()

    with ThreadPoolExecutor(max_workers=min(len(placed), 16)) as pool:
        futures = [pool.submit(one, rank) for rank in range(len(placed))]
        try:
            wait(futures)
        except BaseException:
            stop.set()
            with deferred():  # each node releases what it made as it ends
                wait(futures)
            made.extend(f.result() for f in futures if f.exception() is None)
            raise
    made.extend(f.result() for f in futures if f.exception() is None)
    if not failures:
        return
    own = [(r, e) for r, e in failures if not isinstance(e, KeyboardInterrupt)]
    rank, error = (own or failures)[0]
    if isinstance(error, TrainctlError):
        raise NodeFailed(rank, len(placed), placed[rank].name, error) from error
    raise error  # type: ignore[misc]


def _undo(
    tc: Trainctl,
    provider: Any,
    name: str,
    made: list[ResourceRecord],
    network: dict[str, Any] | None,
    say: Progress,
) -> list[str]:
    """Release what a failed group create made; returns what could not be released, for
    which the group stays recorded (so that ``terminate_group`` can try again). What the
    nodes share is released even when its make never answered (``network`` None: it
    may have acted, and a provider finds it by the group's name), but only once every
    node is gone."""
    left = []
    for record in made:
        say(f"releasing {record.name}")
        try:
            tc.terminate(record.id)
        except TrainctlError as e:
            left.append(f"{record.name} ({e.message})")
    if not left:
        try:
            provider.release_group_network(name, network or {})
        except TrainctlError as e:
            left.append(f"what the nodes of {name} share ({e.message})")
    if left:
        tc.store.update_group(name, members=[r.id for r in made])
    else:
        tc.store.forget_group(name)
    return left


def members(tc: Trainctl, name: str) -> list[ResourceRecord]:
    """The group's machines still recorded, node 0 first (NotFound-free)."""
    group = tc.store.group(name)
    if group is None:
        return []
    found = []
    for resource_id in group["members"]:
        with contextlib.suppress(TrainctlError):
            found.append(tc.store.resource(resource_id))
    return found


def terminate_group(tc: Trainctl, name: str, *, progress: Progress | None = None) -> list[str]:
    """Release every machine of the group, then what they share; returns what could not
    be released (the group stays recorded then, so that a second try finds it)."""
    group = tc.store.group(name)
    if group is None:
        raise BadInput(f"no group {name}")
    say = progress or (lambda _line: None)
    failed = []
    for record in members(tc, name):
        try:
            tc.terminate(record.id)
            say(f"terminated {record.name}")
        except TrainctlError as e:
            failed.append(f"{record.name}: {e}")
    if failed:
        return failed
    try:
        tc.provider(group["provider"]).release_group_network(name, group["network"] or {})
    except TrainctlError as e:
        return [f"what the nodes of {name} share: {e}"]
    tc.store.forget_group(name)
    return []


def node_addresses(statuses: list[ResourceStatus]) -> list[str]:
    """The address each node reaches the others at, node 0 first."""
    addresses = [s.private_ip or s.ssh_host or s.public_ip for s in statuses]
    if any(a is None for a in addresses):
        missing = [s.name or s.id for s, a in zip(statuses, addresses, strict=True) if a is None]
        raise OperationFailed(f"no address known for {', '.join(missing)}")
    return [str(a) for a in addresses]


#: more variables for each node's job from the nodes' statuses, node 0 first (a
#: SkyPilot task's, ``skyvars.variables``); the group's own and the user's win over them
NodeVars = Callable[[list[ResourceStatus]], list[dict[str, str]]]


def node_env(
    statuses: list[ResourceStatus], master_port: int = MASTER_PORT
) -> list[dict[str, str]]:
    """The variables of each node's job, node 0 first."""
    addresses = node_addresses(statuses)
    common = {
        "MASTER_ADDR": str(addresses[0]),
        "MASTER_PORT": str(master_port),
        "NNODES": str(len(statuses)),
        "TRAINCTL_NODE_IPS": ",".join(addresses),
    }
    found = []
    for rank, status in enumerate(statuses):
        env = {**common, "NODE_RANK": str(rank), "NPROC_PER_NODE": str(max(status.gpu_count, 1))}
        # torchrun reads its flags' defaults from PET_<FLAG> (torch.distributed.argparse_util),
        # never from the plain names: with these, a bare `torchrun train.py` joins the group
        for name in ("NNODES", "NODE_RANK", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT"):
            env["PET_" + name] = env[name]
        found.append(env)
    return found


@dataclass
class GroupJob:
    """One job across a group: each node's final status, node 0 first."""

    job_id: str
    #: None for a node that could not be followed to its end
    nodes: list[TrainingStatus | None] = field(default_factory=list)
    #: the first node that failed (its rank), if any
    failed: int | None = None

    @property
    def exit_code(self) -> int:
        if self.failed is None:
            return 0
        node = self.nodes[self.failed]
        return node.exit_code if node is not None and node.exit_code else 1


def start(
    tc: Trainctl,
    records: list[ResourceRecord],
    job: TrainingJob,
    job_id: str,
    *,
    master_port: int = MASTER_PORT,
    progress: Progress | None = None,
    new_api: Callable[[], Trainctl] = Trainctl,
    node_vars: NodeVars | None = None,
) -> list[TrainingStatus]:
    """Start ``job`` on every node at once (job ``<job_id>-n<rank>``, each with its
    node's variables), the code synced to all of them in parallel. If any node's job
    cannot start, the ones that did are cancelled before the error is raised."""
    statuses = [tc.status(r.id) for r in records]
    envs = node_env(statuses, master_port)
    provider = tc.provider(records[0].provider)
    if isinstance(provider, GroupNetwork):
        for env, status in zip(envs, statuses, strict=True):
            env.update(provider.group_job_env(status))
    if node_vars is not None:
        envs = [{**more, **env} for more, env in zip(node_vars(statuses), envs, strict=True)]

    def one(rank: int) -> TrainingStatus:
        api = new_api()
        try:
            node_job = replace(
                # a variable the user gives (-e MASTER_PORT=...) wins over the group's
                job,
                job_id=node_job_id(job_id, rank),
                env={**envs[rank], **job.env},
            )
            return api.train(records[rank].id, node_job, progress=progress)
        finally:
            api.store.close()

    with ThreadPoolExecutor(max_workers=min(len(records), 16)) as pool:
        futures = [pool.submit(one, rank) for rank in range(len(records))]
        outcomes = [f.exception() or f.result() for f in futures]
    failed = [(r, e) for r, e in enumerate(outcomes) if isinstance(e, BaseException)]
    if failed:
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                with contextlib.suppress(TrainctlError):
                    tc.cancel(outcome.job_id, 0)
        rank, error = failed[0]
        if isinstance(error, TrainctlError):
            raise OperationFailed(
                f"the job could not start on node {rank} ({records[rank].name}): {error.message}"
                "; the other nodes' jobs were cancelled",
                hint=error.hint,
            ) from error
        raise error
    return outcomes  # type: ignore[return-value]


class Prefixed:
    """A sink that writes each whole line of node ``rank``'s log as ``[node k] ...``,
    one line at a time under ``lock`` (several nodes share the sink)."""

    def __init__(self, sink: OutputSink, rank: int, lock: threading.Lock) -> None:
        self.sink = sink
        self.prefix = f"[node {rank}] ".encode()
        self.lock = lock
        self.pending = b""

    def __call__(self, chunk: bytes) -> None:
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        if lines:
            with self.lock:
                self.sink(b"".join(self.prefix + line + b"\n" for line in lines))

    def flush(self) -> None:
        """The last line, when the log does not end with a newline."""
        if self.pending:
            with self.lock:
                self.sink(self.prefix + self.pending + b"\n")
            self.pending = b""


def node_jobs(tc: Trainctl, ref: str) -> list[str]:
    """The node jobs of the group job ``ref`` (a job id without its ``-n<rank>``, or a
    group's name: its newest job), node 0 first; [] when ``ref`` is neither."""
    group = tc.store.group(ref)
    base = ref
    if group is not None:
        newest = tc.store.runs(resource_id=(group["members"] or [""])[0])
        if not newest:
            return []
        base = newest[0].id.rsplit("-n", 1)[0]
    elif tc.store.job(ref) is not None or tc.store.job(node_job_id(ref, 0)) is None:
        return []
    found = []
    while tc.store.job(node_job_id(base, len(found))) is not None:
        found.append(node_job_id(base, len(found)))
    return found


def follow(
    job_ids: list[str],
    sink: OutputSink | None,
    *,
    only: int | None = None,
    grace: float = 10.0,
    progress: Progress | None = None,
    new_api: Callable[[], Trainctl] = Trainctl,
) -> GroupJob:
    """Follow every node's job at once, each line of node k's log as ``[node k] ...``
    (``only``: node ``only``'s log alone, unprefixed); once a node fails, the others
    are cancelled (SIGTERM, SIGKILL after ``grace``). Each follower has a Trainctl of
    its own (``new_api``): a state store connection serves one thread."""
    say = progress or (lambda _line: None)
    lock = threading.Lock()
    ended: queue.Queue[tuple[int, TrainingStatus | BaseException]] = queue.Queue()

    def node_sink(rank: int) -> OutputSink | None:
        if sink is None or (only is not None and rank != only):
            return None
        return sink if only is not None else Prefixed(sink, rank, lock)

    sinks = [node_sink(rank) for rank in range(len(job_ids))]

    def watch(rank: int) -> None:
        api = new_api()
        try:
            ended.put((rank, api.monitor(job_ids[rank], follow=True, sink=sinks[rank])))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            ended.put((rank, e))
        finally:
            api.store.close()

    threads = [threading.Thread(target=watch, args=(r,), daemon=True) for r in range(len(job_ids))]
    for t in threads:
        t.start()
    result = GroupJob(job_ids[0].rsplit("-n", 1)[0], [None] * len(job_ids))
    errors: list[BaseException] = []
    canceller: Trainctl | None = None
    done: set[int] = set()
    for _ in job_ids:
        rank, outcome = ended.get()
        done.add(rank)
        if isinstance(outcome, BaseException):
            errors.append(outcome)  # the node cannot be followed (lost): the job cannot go on
            why = f"could not be followed ({outcome})"
        else:
            result.nodes[rank] = outcome
            if isinstance(sinks[rank], Prefixed):
                sinks[rank].flush()
            if outcome.status is ExecutionStatus.COMPLETED:
                continue
            why = f"ended {outcome.status.value}"
        if result.failed is None:
            result.failed = rank
            say(f"node {rank} {why}; cancelling the other nodes")
            canceller = canceller or new_api()
            for other, job_id in enumerate(job_ids):
                if other not in done:
                    with contextlib.suppress(TrainctlError):
                        canceller.cancel(job_id, grace)
    for t in threads:
        t.join(1)
    if canceller is not None:
        canceller.store.close()
    if errors:
        raise errors[0]
    return result


@dataclass
class GroupRun:
    """What `run --nodes N` did: the group's machines, the job across them, what came
    home from node 0, and whether the group was released."""

    group: str
    records: list[ResourceRecord]
    job: GroupJob | None = None
    downloads: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    terminated: bool = False
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.job is None or self.failures:
            return 1
        return self.job.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "nodes": [r.id for r in self.records],
            "job_id": self.job.job_id if self.job else None,
            "node_jobs": [s.to_dict() for s in self.job.nodes] if self.job else [],
            "exit_code": self.exit_code,
            "downloads": self.downloads,
            "failures": self.failures,
            "terminated": self.terminated,
            "interrupted": self.interrupted,
        }


def run_group(
    tc: Trainctl,
    provider_name: str,
    options: CreateResourceOptions,
    nodes: int,
    job: TrainingJob,
    *,
    outputs: list[str],
    output_dir: Path,
    keep: bool = False,
    grace: float = 10.0,
    sink: OutputSink | None = None,
    progress: Progress | None = None,
    master_port: int = MASTER_PORT,
    on_created: Callable[[ResourceRecord], None] | None = None,
    checkpoint_sync: float | None = None,
    node_vars: NodeVars | None = None,
) -> GroupRun:
    """Rent the group, run ``job`` on every node at once, follow all their logs, bring
    ``outputs`` and the checkpoint directory home from node 0, then release every node
    (unless ``keep``). With ``checkpoint_sync`` (seconds between looks at most), node
    0's checkpoint directory comes home file by file while the job runs, as on one
    machine (``checkpoints.CheckpointPuller``). An interrupt cancels the job on every
    node (SIGTERM, SIGKILL after ``grace``) before the release."""
    say = progress or (lambda _line: None)
    idle = CREATE_IDLE_SECONDS if keep else RUN_IDLE_SECONDS
    records = create_group(tc, provider_name, options, nodes, progress=progress, default_idle=idle)
    name = records[0].name.rsplit("-", 1)[0]
    result = GroupRun(name, records)
    if on_created is not None:
        for record in records:
            on_created(record)
    job_id = job.job_id or new_job_id()
    node_jobs = [node_job_id(job_id, rank) for rank in range(nodes)]
    home = home_dir(output_dir, job.checkpoint_dir)
    puller = None
    try:
        try:
            start(
                tc,
                records,
                job,
                job_id,
                master_port=master_port,
                progress=progress,
                node_vars=node_vars,
            )
            say(f"job {job_id} running on {nodes} nodes ({', '.join(node_jobs)})")
            if checkpoint_sync is not None:  # a group's files are node 0's
                puller = tc.pull_checkpoints(
                    node_jobs[0], job.checkpoint_dir, home, interval=checkpoint_sync,
                    progress=progress,
                )  # fmt: skip
            if puller is not None:
                puller.start()
            result.job = follow(node_jobs, sink, grace=grace, progress=progress)
        except Interrupt:
            if puller is not None:
                puller.stop()
            result.interrupted = True
            say(f"interrupted: cancelling job {job_id} on every node (SIGKILL after {grace:g}s)")
            for node_job in node_jobs:
                with contextlib.suppress(TrainctlError):
                    tc.cancel(node_job, grace)
        if puller is not None:
            with contextlib.suppress(TrainctlError):
                puller.finish()  # the last pass, now that the job has ended
        landed, failed = download_outputs(
            tc,
            records[0].id,
            [*outputs] if puller is not None else [*outputs, job.checkpoint_dir],
            output_dir,
            completed=result.job is not None and result.job.failed is None,
            progress=progress,
            optional=(job.checkpoint_dir,),
        )
        result.downloads += landed
        result.failures += failed
    finally:
        if not keep:
            with deferred():
                left = terminate_group(tc, name, progress=progress)
            result.terminated = not left
            result.failures += left
        if puller is not None:
            puller.close(JOIN_SECONDS if result.terminated else 0.0)
    return result

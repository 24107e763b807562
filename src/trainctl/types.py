"""The common types every provider speaks."""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import BadInput
from .guards import GuardRequest


class ResourceState(enum.StrEnum):
    """A machine's state, the same words for every provider (see ``states.py``)."""

    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def is_billing(self) -> bool:
        """Whether a machine in this state may still cost money by the hour."""
        return self in (ResourceState.RUNNING, ResourceState.STARTING, ResourceState.UNKNOWN)

    @property
    def is_final(self) -> bool:
        return self is ResourceState.TERMINATED


class ExecutionStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_final(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


_GPU_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9 _.\-]*?)\s*(?::\s*(\d+))?\s*$")


@dataclass(frozen=True)
class GpuSpec:
    """``A100:2`` means two A100s; the count defaults to one."""

    name: str
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> GpuSpec:
        m = _GPU_SPEC.match(text or "")
        if not m:
            raise BadInput(f"bad GPU spec {text!r}: expected NAME or NAME:COUNT, e.g. A100:2")
        count = int(m.group(2)) if m.group(2) else 1
        if count < 1:
            raise BadInput(f"bad GPU spec {text!r}: the count must be at least 1")
        return cls(m.group(1).strip(), count)

    def __str__(self) -> str:
        return f"{self.name}:{self.count}"


def node_name(group: str, rank: int) -> str:
    """The name of node ``rank`` of the group ``group`` (its machine's name)."""
    return f"{group}-{rank}"


@dataclass
class GroupPlacement:
    """This machine's place in a group of machines made for one multi-node job."""

    name: str  # the group's name
    size: int  # how many machines (nodes) it has
    rank: int  # this machine's node rank, 0 first
    #: what the provider made for the whole group before its machines
    #: (``GroupNetwork.make_group_network``), e.g. a placement group and its rules
    network: dict[str, Any] = field(default_factory=dict)


@dataclass
class CreateResourceOptions:
    gpu: GpuSpec | None = None
    instance_type: str | None = None
    spot: bool = False
    spot_fallback: bool = False
    max_price: float | None = None
    image: str | None = None
    disk_gb: int | None = None
    region: str | None = None
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the limits the machine's guard enforces (idle stop, deadline, spend cap)
    guards: GuardRequest = field(default_factory=GuardRequest)
    #: where the guard saves the jobs' work (``--store``: an s3:// URL, ``default`` or
    #: ``none``; None: the config file's, if any); see ``trainctl.objstore``
    store: str | None = None
    #: set when this machine is one node of a group (``--nodes``)
    group: GroupPlacement | None = None


@dataclass
class ResourceStatus:
    id: str
    provider: str
    state: ResourceState
    name: str | None = None
    reason: str | None = None  # why, when the state is error (or a note for others)
    instance_type: str | None = None
    gpu: str | None = None
    gpu_count: int = 0
    launch_time: datetime | None = None
    cost_per_hour: float | None = None
    spot: bool = False
    region: str | None = None
    public_ip: str | None = None
    #: the address the machines of one group reach each other at, where there is one
    private_ip: str | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    raw_state: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: what the user should know about this machine or the call that returned it
    #: (a spot fallback, a setting ignored): printed by the CLI, never stored
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["launch_time"] = self.launch_time.isoformat() if self.launch_time else None
        return d


@dataclass
class TrainingJob:
    """What to run: ``command`` is an argv list, run without a shell."""

    command: list[str]
    workdir: str | None = None  # local directory to sync; None means do not sync
    env: dict[str, str] = field(default_factory=dict)
    checkpoint_dir: str = "checkpoints"  # relative to the synced copy on the machine
    delete: bool = False  # remove files on the machine that are gone locally
    job_id: str | None = None
    #: sync ``/`` or the home directory all the same (refused otherwise: either sends
    #: far more than a project, secrets included)
    allow_any_workdir: bool = False
    #: a shell script run before the command, skipped while unchanged on the machine
    setup: str | None = None
    #: the container image the command runs in (``docker run`` on the machine)
    image: str | None = None
    #: False: the setup runs with plain ``bash`` (a failing line does not stop it), as
    #: SkyPilot runs its ``setup``; True: with ``bash -e``
    setup_errexit: bool = True
    #: (local directory, path on the machine) pairs synced after the workdir, the path
    #: absolute or relative to the machine's home directory (SkyPilot's ``file_mounts``)
    mounts: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.command:
            raise BadInput(
                "empty command: give the command to run after --, e.g. -- python train.py"
            )
        if self.workdir is not None and not self.allow_any_workdir:
            resolved = Path(self.workdir).resolve()
            if resolved in (Path("/"), Path.home().resolve()):
                what = "/" if resolved == Path("/") else "your home directory"
                raise BadInput(
                    f"refusing to sync {what} ({resolved}) to the machine",
                    hint="pick the project's directory with -w DIR, or pass --allow-any-workdir"
                    " (allow_any_workdir=True)",
                )


@dataclass
class TrainingStatus:
    job_id: str
    resource_id: str
    status: ExecutionStatus
    exit_code: int | None = None
    reason: str | None = None
    command: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_age: float | None = None
    log_size: int = 0
    #: what ended the job when the machine's guard did: "deadline" or "spend cap"
    ended_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        for k in ("started_at", "ended_at"):
            v = getattr(self, k)
            d[k] = v.isoformat() if v else None
        return d


@dataclass
class CostEstimate:
    provider: str
    hourly: float | None
    hours: float
    source: str  # where the price came from
    spot: bool = False

    @property
    def total(self) -> float | None:
        return None if self.hourly is None else round(self.hourly * self.hours, 4)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}

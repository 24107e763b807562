"""The provider interface: a control plane plus ``connect()``.

A provider rents and releases machines (``create_resource``, ``terminate``, ...)
and says how to reach one (``connect`` returns a Remote). ``train``, ``monitor``,
``download``, ``jobs`` and ``cancel`` are written once here, on top of ``connect``
and the job runtime, so they behave the same on every provider.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from .capabilities import Capability, require
from .errors import BadInput, CapabilityError, NotFound
from .remote.base import Progress, Remote
from .runtime.client import DropHandler, JobRuntime, OutputSink
from .types import (
    CostEstimate,
    CreateResourceOptions,
    GpuSpec,
    ResourceStatus,
    TrainingJob,
    TrainingStatus,
)

#: Ownership tags (or, where a provider has no tags, a name prefix).
TAG_MANAGED = "trainctl-managed"
TAG_NAME = "trainctl-name"
TAG_OWNER = "trainctl-owner"
NAME_PREFIX = "trainctl-"


@dataclass
class CheckResult:
    """Whether a provider can be used here, and why (never holds a secret)."""

    provider: str
    usable: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"provider": self.provider, "usable": self.usable, "detail": self.detail}


class TrainingProvider(ABC):
    """Providers that declare ``Capability.STOP_START`` also define ``stop(id)`` and
    ``start(id)``, each returning a ``ResourceStatus``."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: keys of ``CreateResourceOptions.extra`` this provider reads (flags like --host)
    extra_options: ClassVar[frozenset[str]] = frozenset()
    #: True when an interrupted create cannot still act afterwards (no cloud call in
    #: flight): what it made, if anything, shows in ``list_resources`` at once, so
    #: its intent is settled there and then instead of lingering as ``creating``
    create_settles_at_once: ClassVar[bool] = False

    # --- control plane, supplied by each provider -------------------------------

    @classmethod
    def credentials_present(cls) -> bool:
        """Cheap check (no network, no SDK import) used for auto-detection."""
        return False

    @abstractmethod
    def check(self) -> CheckResult:
        """Whether this provider is usable now, and which identity it would use."""

    @abstractmethod
    def create_resource(
        self, options: CreateResourceOptions, *, progress: Progress | None = None
    ) -> ResourceStatus: ...

    @abstractmethod
    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        """Raises ``NotFound`` for an id the provider does not know."""

    @abstractmethod
    def list_resources(self) -> list[ResourceStatus]:
        """Only the resources trainctl owns (ownership tags or name prefix)."""

    @abstractmethod
    def terminate(self, resource_id: str) -> ResourceStatus:
        """Release the machine. Idempotent: an already-gone resource is not an error."""

    @abstractmethod
    def connect(self, resource_id: str) -> Remote: ...

    def connect_to(self, status: ResourceStatus) -> Remote:
        """The machine ``status`` describes (one this provider just reported, e.g.
        from ``create_resource``). A provider whose status holds what its Remote needs
        builds it from that, without asking again; by default it asks (``connect``)."""
        return self.connect(status.id)

    @abstractmethod
    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate: ...

    @classmethod
    def options_for_offer(
        cls, options: CreateResourceOptions, *, offer_id: str, gpu: GpuSpec, cloud: str = ""
    ) -> CreateResourceOptions:
        """The create options that rent one catalog offer (``--provider cheapest``):
        by default the offer id is the instance type."""
        return replace(options, instance_type=offer_id, gpu=None)

    def validate_options(self, options: CreateResourceOptions) -> None:
        """Refuse options this provider cannot honour, before any side effect."""
        unknown = sorted(k for k, v in options.extra.items() if v is not None)
        unknown = [k for k in unknown if k not in self.extra_options]
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise CapabilityError(f"provider '{self.name}' does not take {flags}")
        if options.instance_type:
            require(self, Capability.INSTANCE_TYPE)
        if options.spot:
            require(self, Capability.SPOT)
        if options.region:
            require(self, Capability.REGIONS)
        if options.image:
            require(self, Capability.CUSTOM_IMAGE)
        if options.gpu:
            require(self, Capability.GPU_SELECTION)
        if options.disk_gb is not None:
            require(self, Capability.DISK_SIZE)

    # --- data plane, the same for everyone --------------------------------------

    def runtime(self, resource_id: str) -> JobRuntime:
        return JobRuntime(self.connect(resource_id), resource_id)

    def train(
        self,
        resource_id: str,
        job: TrainingJob,
        *,
        progress: Progress | None = None,
        runtime: JobRuntime | None = None,
    ) -> TrainingStatus:
        """Sync ``job.workdir`` to the machine (if given) and start the job detached.

        Refused, before anything is sent, while another job runs there with the same
        checkpoint directory (they would overwrite each other's files), or when a sync
        would change the code under a running job."""
        rt = runtime or self.runtime(resource_id)
        self._refuse_conflicts(rt, job)
        if job.workdir is not None:
            src = Path(job.workdir)
            if not src.is_dir():
                raise BadInput(f"workdir {job.workdir} is not a directory")
            rt.remote.put_tree(
                src, rt.workdir, delete=job.delete, protect=[job.checkpoint_dir], progress=progress
            )
        else:
            rt.info  # noqa: B018 - creates the work directory on the machine
        return rt.start(
            job.command, env=job.env, job_id=job.job_id, checkpoint_dir=job.checkpoint_dir
        )

    def monitor(
        self,
        resource_id: str,
        job_id: str | None = None,
        *,
        follow: bool = False,
        sink: OutputSink | None = None,
        offset: int = 0,
        on_drop: DropHandler | None = None,
        runtime: JobRuntime | None = None,
    ) -> TrainingStatus:
        """Pass the job's log to ``sink`` (all of it, or until the end with ``follow``).

        Without ``job_id`` the resource's newest job is used. ``on_drop`` decides
        whether following goes on when the machine cannot be reached (see
        ``JobRuntime.follow``)."""
        rt = runtime or self.runtime(resource_id)
        job_id = job_id or self._newest_job(rt)
        write: OutputSink = sink or (lambda _b: None)
        if follow:
            return rt.follow(job_id, write, offset, on_drop=on_drop)
        while chunk := rt.read(job_id, offset):
            write(chunk)
            offset += len(chunk)
        return rt.status(job_id)

    def job_status(
        self, resource_id: str, job_id: str, *, runtime: JobRuntime | None = None
    ) -> TrainingStatus:
        return (runtime or self.runtime(resource_id)).status(job_id)

    def jobs(self, resource_id: str, *, runtime: JobRuntime | None = None) -> list[TrainingStatus]:
        return (runtime or self.runtime(resource_id)).list()

    def cancel(
        self,
        resource_id: str,
        job_id: str,
        grace: float = 10.0,
        *,
        runtime: JobRuntime | None = None,
    ) -> TrainingStatus:
        return (runtime or self.runtime(resource_id)).cancel(job_id, grace)

    def download(
        self,
        resource_id: str,
        remote_path: str,
        local_path: str | Path,
        *,
        progress: Progress | None = None,
        runtime: JobRuntime | None = None,
    ) -> Path:
        """Copy ``remote_path`` (relative paths resolve in the job's work directory)."""
        require(self, Capability.DOWNLOAD)
        rt = runtime or self.runtime(resource_id)
        dest = Path(local_path)
        if str(local_path).endswith("/"):
            dest.mkdir(parents=True, exist_ok=True)
        return rt.remote.get(rt.resolve(remote_path), dest, progress=progress)

    @staticmethod
    def _refuse_conflicts(rt: JobRuntime, job: TrainingJob) -> None:
        running = rt.running()
        if not running:
            return
        checkpoints = posixpath.normpath(posixpath.join(rt.workdir, job.checkpoint_dir))
        for other in running:
            if other.get("checkpoint_dir") == checkpoints:
                raise BadInput(
                    f"job {other['job_id']} is running on {rt.resource_id} with the same "
                    f"checkpoint directory ({job.checkpoint_dir}): a second job would "
                    "overwrite its files",
                    hint="give this job another one (--checkpoint-dir DIR"
                    # a sync is refused too while the job runs: say so up front
                    + (", with --no-sync" if job.workdir is not None else "")
                    + f"), wait for {other['job_id']} to end, or cancel it: "
                    f"trainctl cancel {other['job_id']}",
                )
        if job.workdir is not None:
            other_id = running[0]["job_id"]
            raise BadInput(
                f"job {other_id} is running on {rt.resource_id} from the synced code: a "
                "sync now would change its files under it",
                hint="run this job on the code already there (--no-sync), wait for "
                f"{other_id} to end, or cancel it: trainctl cancel {other_id}",
            )

    @staticmethod
    def _newest_job(rt: JobRuntime) -> str:
        jobs = rt.list()
        if not jobs:
            raise NotFound(f"no jobs on {rt.resource_id}")
        return jobs[-1].job_id

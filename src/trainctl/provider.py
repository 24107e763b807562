"""The provider interface: a control plane plus ``connect()``.

A provider rents and releases machines and says how to reach one (``connect``
returns a Remote). Everything a provider is lives on its class: its capabilities,
its state table (``states``), its create flags (``flags``), its offers (``offers``,
``bundled_offers``). The CLI, the catalog and the state normalisation ask the
registry for these, so a provider added through the ``trainctl.providers`` entry
point is complete without any edit to trainctl.

Creating follows one path for everyone (``create_resource``): validate, ``plan``
(which offer, every check that needs no side effect), then ``launch`` under one
purchase rule: ``--max-price`` is the most paid per hour, spot or not; spot is tried
first when asked for, and ``--spot-fallback`` takes on-demand when there is no spot
capacity, within the same cap.

``train``, ``monitor``, ``download``, ``jobs`` and ``cancel`` are written once here,
on top of ``connect`` and the job runtime, so they behave the same on every provider.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from .capabilities import Capability, require
from .errors import BadInput, CapabilityError, NoCapacity, NotFound
from .remote.base import Progress, Remote
from .runtime.client import DropHandler, JobRuntime, OutputSink
from .types import (
    CostEstimate,
    CreateResourceOptions,
    GpuSpec,
    ResourceState,
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


@dataclass(frozen=True)
class ProviderFlag:
    """A create option of one provider (``--host``, ``--cloud``...): a CLI flag, a
    task-file key, and a key of ``CreateResourceOptions.extra``.

    ``kind`` is ``str``, ``int``, ``float`` or ``dict`` (a ``dict`` flag is given through
    the Python API only); ``choices`` limits a ``str``; ``minimum`` bounds a number
    (exclusive when ``above``)."""

    name: str  # the key in ``extra``, e.g. "volume_gb" for --volume-gb
    help: str
    kind: type = str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    above: bool = False
    metavar: str | None = None
    #: given once per node of a group, node 0 first (``--host A --host B``): the CLI
    #: repeats it, and ``groups.per_node`` gives each node its own
    per_node: bool = False

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def cli(self) -> bool:
        return self.kind is not dict

    def check(self, value: Any) -> Any:
        """``value`` converted to ``kind``, or ``BadInput`` (task files and API callers
        skip click's checks)."""
        if self.kind is dict:
            if not isinstance(value, dict):
                raise BadInput(f"{self.option} must be a mapping")
            return value
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise BadInput(f"{self.option} must be a number, not {value!r}")
            try:
                number = self.kind(value)
            except ValueError:
                raise BadInput(f"{self.option} must be a number, not {value!r}") from None
            low = self.minimum
            if low is not None and (number <= low if self.above else number < low):
                bound = f"more than {low:g}" if self.above else f"at least {low:g}"
                raise BadInput(f"{self.option} must be {bound}, not {number:g}")
            return number
        text = str(value)
        if self.choices:
            text = text.lower()
            if text not in self.choices:
                raise BadInput(
                    f"{self.option} must be one of {', '.join(self.choices)}, not {value!r}"
                )
        return text


#: --volume-gb, shared by the providers that attach a persistent volume
VOLUME_FLAG = ProviderFlag(
    "volume_gb", "Persistent volume size in GB.", kind=int, minimum=1, metavar="GB"
)


@dataclass(frozen=True)
class Quote:
    """What a planned machine costs per hour (``hourly`` None when unknown), and a
    few words saying what it is, for messages (``1x RTX4090 on the secure cloud``)."""

    hourly: float | None
    what: str


class TrainingProvider(ABC):
    """The control plane of one provider. Subclasses supply ``plan``, ``quote`` and
    ``launch`` (or, for a provider that rents nothing, ``launch`` alone), the status
    calls and ``connect``; the create path and the data plane are shared."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: the provider's own machine states, lower-case, mapped onto ``ResourceState``
    states: ClassVar[dict[str, ResourceState]] = {}
    #: create options only this provider reads (its CLI flags and task-file keys)
    flags: ClassVar[tuple[ProviderFlag, ...]] = ()
    #: "module:function" fetching live offers: ``fetch(now) -> (offers, notes)``
    offers: ClassVar[str | None] = None
    #: a CSV of offers shipped with the provider (``catalog.offer.COLUMNS``)
    bundled_offers: ClassVar[Path | None] = None
    #: False for a provider that uses no account (ssh reaches hosts with their own keys)
    needs_account: ClassVar[bool] = True
    #: True when a spot launch bids ``--max-price`` itself (so the cap needs no quote)
    spot_bids_max_price: ClassVar[bool] = False
    #: True when an interrupted create cannot still act afterwards (no cloud call in
    #: flight): what it made, if anything, shows in ``list_resources`` at once, so
    #: its intent is settled there and then instead of lingering as ``creating``
    create_settles_at_once: ClassVar[bool] = False
    #: True when the guard on a spot machine can read the reclaim notice there (AWS:
    #: IMDS ``spot/instance-action``): it ends the jobs at the notice, as ``preempted``
    spot_notice: ClassVar[bool] = False
    #: True when ``--image`` names a container image the job runtime runs each job in
    #: (``docker run`` on the machine); False when it is the machine's own image
    job_images: ClassVar[bool] = True
    #: what ``--image`` is on this provider, when it is not a container for the job
    machine_image_note: ClassVar[str] = "--image names the machine's own image"

    # --- facts ------------------------------------------------------------------

    def job_image(self, image: str | None) -> str | None:
        """The container image the jobs run in, from ``--image`` (None where ``image``
        is the machine's own image, see ``job_images``)."""
        return image if self.job_images else None

    @classmethod
    def state_of(cls, raw: str | None) -> ResourceState:
        """``raw`` as this provider reports it, as a ``ResourceState``; a state the
        table lacks is ``unknown``. Never raises."""
        if not isinstance(raw, str):
            return ResourceState.UNKNOWN
        return cls.states.get(raw.strip().lower(), ResourceState.UNKNOWN)

    @classmethod
    def unsupported_reason(
        cls, capability: Capability, request: CreateResourceOptions | None = None
    ) -> str | None:
        """Why ``capability`` is not available for ``request`` (None when it is).
        A provider whose capability depends on the request overrides this."""
        if capability in cls.capabilities:
            return None
        return (
            f"provider '{cls.name}' cannot {capability.describe()} "
            f"(missing capability: {capability.value})"
        )

    @classmethod
    def supports(cls, capability: Capability, request: CreateResourceOptions | None = None) -> bool:
        return cls.unsupported_reason(capability, request) is None

    @classmethod
    def releases(cls, request: CreateResourceOptions | None = None) -> tuple[str, ...]:
        """What the guard can do to a machine made for ``request``, the default first:
        ``stop`` where the provider stops and keeps the disk, then ``terminate``; none
        where there is nothing to release."""
        if not cls.supports(Capability.SELF_RELEASE, request):
            return ()
        if cls.supports(Capability.STOP_START, request):
            return ("stop", "terminate")
        return ("terminate",)

    @classmethod
    def credentials_present(cls) -> bool:
        """Cheap check (no network, no SDK import) used for auto-detection."""
        return False

    @classmethod
    def options_for_offer(
        cls, options: CreateResourceOptions, *, offer_id: str, gpu: GpuSpec, cloud: str = ""
    ) -> CreateResourceOptions:
        """The create options that rent one catalog offer (``--provider cheapest``):
        by default the offer id is the instance type."""
        return replace(options, instance_type=offer_id, gpu=None)

    # --- control plane, supplied by each provider -------------------------------

    @abstractmethod
    def check(self) -> CheckResult:
        """Whether this provider is usable now, and which identity it would use."""

    @abstractmethod
    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        """Raises ``NotFound`` for an id the provider does not know, or one of a
        machine trainctl did not make."""

    @abstractmethod
    def list_resources(self) -> list[ResourceStatus]:
        """Only the resources trainctl owns (ownership tags or name prefix)."""

    @abstractmethod
    def terminate(self, resource_id: str) -> ResourceStatus:
        """Release the machine. Idempotent: an already-gone resource is not an error;
        one trainctl did not make is ``NotFound``."""

    @abstractmethod
    def connect(self, resource_id: str) -> Remote: ...

    def connect_to(self, status: ResourceStatus) -> Remote:
        """The machine ``status`` describes (one this provider just reported, e.g.
        from ``launch``). A provider whose status holds what its Remote needs builds
        it from that, without asking again; by default it asks (``connect``)."""
        return self.connect(status.id)

    def plan(self, options: CreateResourceOptions) -> Any:
        """Everything a create needs, from validated options, with every check that
        needs no side effect (the default plan is the options themselves)."""
        return options

    def quote(self, plan: Any, *, spot: bool) -> Quote:
        """The hourly price of ``plan`` (spot or on-demand); unknown by default."""
        return Quote(None, "this machine")

    @abstractmethod
    def launch(self, plan: Any, *, spot: bool, progress: Progress | None = None) -> ResourceStatus:
        """Rent (or register) the planned machine and wait until it can be used. On a
        failure after the machine exists, release it before raising. Spot with no
        capacity raises ``NoCapacity``, so that the shared path can fall back."""

    # --- the create path, the same for everyone ---------------------------------

    def validate_options(self, options: CreateResourceOptions) -> None:
        """Refuse options this provider cannot honour, before any side effect."""
        own = {f.name: f for f in self.flags}
        unknown = sorted(k for k, v in options.extra.items() if v is not None and k not in own)
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise CapabilityError(f"provider '{self.name}' does not take {flags}")
        for key, value in list(options.extra.items()):
            if isinstance(value, list | tuple) and own[key].per_node:
                raise BadInput(
                    f"{own[key].option} was given {len(value)} times: one per node makes a "
                    f"group of {len(value)} machines (--nodes {len(value)})"
                )
            if value is not None:
                options.extra[key] = own[key].check(value)
        wanted = [
            (options.instance_type, Capability.INSTANCE_TYPE),
            (options.spot, Capability.SPOT),
            (options.region, Capability.REGIONS),
            (options.image, Capability.CUSTOM_IMAGE),
            (options.gpu, Capability.GPU_SELECTION),
            (options.disk_gb is not None, Capability.DISK_SIZE),
            (options.tags, Capability.TAGS),
        ]
        for asked, capability in wanted:
            if asked:
                require(self, capability, options)
        if options.image and self.job_image(options.image):
            raise BadInput(
                f"--image {options.image} is not a machine image on {self.name} "
                f"({self.machine_image_note}); a container image for the jobs goes to "
                "`trainctl train --image` or `trainctl run --image`"
            )
        check_purchase(options)

    def create_resource(
        self, options: CreateResourceOptions, *, progress: Progress | None = None
    ) -> ResourceStatus:
        """Validate, plan, then launch: spot first when asked for (on-demand after it
        with ``--spot-fallback`` when there is no spot capacity), never above
        ``--max-price``. Warnings the user should see are in the status's
        ``warnings``."""
        self.validate_options(options)
        plan = self.plan(options)
        if not options.spot:
            self._within_cap(plan, options.max_price, spot=False)
            return self.launch(plan, spot=False, progress=progress)
        try:
            if not self.spot_bids_max_price:
                self._within_cap(plan, options.max_price, spot=True)
            return self.launch(plan, spot=True, progress=progress)
        except NoCapacity as e:
            if not options.spot_fallback:
                raise
            why = f"spot: {e.message}; "
            self._within_cap(plan, options.max_price, spot=False, why=why)
            if progress:
                progress(why + "falling back to on-demand")
            status = self.launch(plan, spot=False, progress=progress)
            status.warnings.append(f"{why}rented on-demand instead (--spot-fallback)")
            return status

    def _within_cap(self, plan: Any, cap: float | None, *, spot: bool, why: str = "") -> None:
        """Refuse ``plan`` when its price is above ``cap`` ($/hour), or unknown with a
        cap given: a cap that cannot be checked is not a cap."""
        if cap is None:
            return
        quote = self.quote(plan, spot=spot)
        kind = "spot" if spot else "on-demand"
        if quote.hourly is None:
            raise BadInput(
                f"{why}the {kind} price of {quote.what} on {self.name} is not known, so "
                f"--max-price ${cap:.2f}/h cannot be checked",
                hint="leave out --max-price, or pick an offer with a price in `trainctl catalog`",
            )
        if quote.hourly > cap:
            fallback = "the on-demand fallback: " if why else ""
            raise NoCapacity(
                f"{why}{fallback}{quote.what} costs ${quote.hourly:.2f}/h {kind}, "
                f"above --max-price ${cap:.2f}/h",
                hint=f"--max-price {quote.hourly:.2f} or more allows it",
            )

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        """What ``options`` would cost for ``hours``, from ``quote``."""
        self.validate_options(options)
        quote = self.quote(self.plan(options), spot=options.spot)
        hourly = None if quote.hourly is None else round(quote.hourly, 4)
        return CostEstimate(self.name, hourly, hours, quote.what, spot=options.spot)

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
        if job.image and self.job_image(job.image) is None:
            raise CapabilityError(
                f"provider '{self.name}' cannot run a job in container image {job.image}: "
                + self.machine_image_note
            )
        rt = runtime or self.runtime(resource_id)
        self._refuse_conflicts(rt, job)
        if job.workdir is not None:
            src = Path(job.workdir)
            if not src.is_dir():
                raise BadInput(f"workdir {job.workdir} is not a directory")
            with rt.attached():
                rt.remote.put_tree(
                    src,
                    rt.workdir,
                    delete=job.delete,
                    protect=[job.checkpoint_dir],
                    progress=progress,
                )
        else:
            rt.info  # noqa: B018 - creates the work directory on the machine
        mounts = [(src, rt.home_path(target)) for src, target in job.mounts]
        for src, target in mounts:
            with rt.attached():
                rt.remote.put_tree(Path(src), target, progress=progress)
        return rt.start(
            job.command,
            env=job.env,
            job_id=job.job_id,
            checkpoint_dir=job.checkpoint_dir,
            setup=job.setup,
            image=job.image,
            setup_errexit=job.setup_errexit,
            mounts=[target for _, target in mounts],
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
        with rt.attached():
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


def check_purchase(options: CreateResourceOptions) -> None:
    """The purchase options every provider reads the same way (task files and API
    callers skip click's range checks)."""
    if options.max_price is not None and options.max_price <= 0:
        raise BadInput(f"--max-price must be more than 0 $/hour, not {options.max_price:g}")
    if options.spot_fallback and not options.spot:
        raise BadInput("--spot-fallback only makes sense with --spot")


@dataclass(frozen=True)
class Release:
    """How the guard on a machine releases it through the provider's own API.

    ``request`` is what the job runtime calls (see ``runtime/release.py``); ``secret``
    is a credential for it that the machine does not already hold: it travels on
    stdin and is kept on the machine mode 0600, never in a command line or a log."""

    action: str  # "stop" or "terminate"
    request: dict[str, Any]
    secret: str | None = field(default=None, repr=False)


class SelfRelease(ABC):
    """The mixin of providers whose machines can release themselves: the guard on
    the machine stops or terminates it (idle, deadline, spend cap) with the least
    credential that can; it adds ``Capability.SELF_RELEASE``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        caps = getattr(cls, "capabilities", frozenset())
        cls.capabilities = frozenset(caps) | {Capability.SELF_RELEASE}  # type: ignore[attr-defined]

    @abstractmethod
    def guard_release(self, status: ResourceStatus, action: str, *, until: float | None) -> Release:
        """The release ``action`` of the machine ``status`` describes, for its guard;
        ``until`` is the latest time it may be needed (None: the machine's life)."""

    def forget_release(self, resource_id: str) -> None:
        """Revoke what ``guard_release`` handed out, once trainctl released the
        machine itself (nothing by default: most credentials end with the machine)."""
        return None


class OwnObjectStore(ABC):
    """The mixin of providers that have an object store of their own for
    ``--store default`` (see ``trainctl.objstore``), which their machines write with
    their own credentials."""

    @abstractmethod
    def default_object_store(self, status: ResourceStatus) -> dict[str, Any]:
        """Where the machine ``status`` describes saves its jobs' work: ``bucket``,
        ``prefix``, ``region``; the machine may write there and nowhere else."""

    @abstractmethod
    def object_store_credentials(self) -> dict[str, str]:
        """This client's credentials for reading the store back (``AccessKeyId``,
        ``SecretAccessKey``, ``Token``)."""


class GroupNetwork(ABC):
    """The mixin of providers that can rent a group of machines which reach each other
    privately, for one multi-node job; it adds ``Capability.MULTI_NODE``. The group's
    machines are rented one by one through the usual create path, each with
    ``options.group`` set; what they share is made first and removed last. Where the
    provider's API makes a group's machines in one call (RunPod's Instant Clusters),
    that call is what they share, and each machine's create takes its own from it."""

    #: the provider can release a group's machines only together (terminating one
    #: of them ends them all): ``terminate NODE`` then terminates its group
    nodes_released_together = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        caps = getattr(cls, "capabilities", frozenset())
        cls.capabilities = frozenset(caps) | {Capability.MULTI_NODE}  # type: ignore[attr-defined]

    @abstractmethod
    def make_group_network(
        self, group: str, options: CreateResourceOptions, size: int
    ) -> dict[str, Any]:
        """Make what the ``size`` machines of ``group`` share (a placement, network
        rules) before any of them is rented; the answer (JSON-able) is stored with the group
        and given back in each machine's ``options.group.network`` and to
        ``release_group_network``."""

    def group_job_env(self, status: ResourceStatus) -> dict[str, str]:
        """Variables a group's job needs on this node beyond torchrun's (e.g. which
        network interface NCCL and gloo must use); the user's ``-e`` wins over them."""
        return {}

    @abstractmethod
    def release_group_network(self, group: str, network: dict[str, Any]) -> None:
        """Remove what ``make_group_network`` made, once the group's machines are
        released (waiting for them to be gone where the provider needs that);
        idempotent: what is already gone is no error. ``network`` is ``{}`` when the
        make never answered (its answer lost, or it failed midway): what it may have
        made is then found by the group's name, where the provider names it so."""


class StopStart(ABC):
    """The mixin of providers that can stop a machine (keeping its disk) and start
    it again; it adds ``Capability.STOP_START``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        caps = getattr(cls, "capabilities", frozenset())
        cls.capabilities = frozenset(caps) | {Capability.STOP_START}  # type: ignore[attr-defined]

    @abstractmethod
    def stop(self, resource_id: str) -> ResourceStatus: ...

    @abstractmethod
    def start(self, resource_id: str, *, progress: Progress | None = None) -> ResourceStatus: ...

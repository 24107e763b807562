"""The Python API: what the CLI does, with the state store kept in step.

    from trainctl.api import Trainctl
    tc = Trainctl()
    res = tc.create("local", CreateResourceOptions(name="exp1"))
    job = tc.train("exp1", TrainingJob(["python", "train.py"], workdir="."))
    final = tc.monitor(job.job_id, follow=True, sink=sys.stdout.buffer.write)
    tc.download("exp1", "checkpoints", "./out")
    tc.terminate("exp1")

Resources are referred to by id or name; the provider comes from the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import checkpoints, interrupts, objstore, recovery, registry, runs
from .capabilities import Capability, require
from .checkpoints import CheckpointPuller, Pulled
from .errors import (
    BadInput,
    CapabilityError,
    CredentialsError,
    NotFound,
    OperationFailed,
    RemoteError,
    ResourceLeft,
    TrainctlError,
)
from .following import FollowGaveUp, MachineLost, Reconnect, seconds_setting
from .guards import (
    CREATE_IDLE_SECONDS,
    DEFAULT_GRACE,
    DEFAULT_INTERVAL,
    NEVER,
    RUN_IDLE_SECONDS,
    GuardRequest,
    Guards,
    resolve,
)
from .home import load_config
from .provider import TAG_NAME, OwnObjectStore, SelfRelease, StopStart, TrainingProvider
from .remote.base import Progress, Remote
from .remote.ports import Forwarding, PortForward
from .runtime.client import JobRuntime, OutputSink, new_job_id
from .store import PREEMPTED, REQUEST_GRACE_SECONDS, JobRecord, ResourceRecord, Store
from .types import (
    CreateResourceOptions,
    ExecutionStatus,
    ResourceState,
    ResourceStatus,
    TrainingJob,
    TrainingStatus,
)

#: where warnings go: one line each
Warn = Callable[[str], None]


@dataclass
class ResourceView:
    """A resource as trainctl knows it: its record, and what the provider said when
    refreshed. ``record`` is None for an untracked resource: one the provider lists
    as trainctl's but that this store has no record of."""

    record: ResourceRecord | None
    live: ResourceStatus | None = None
    error: str | None = None
    note: str | None = None

    @property
    def state(self) -> str:
        if self.live is not None:
            return self.live.state.value
        assert self.record is not None
        return self.record.state

    def to_dict(self) -> dict[str, object]:
        if self.record is None:
            assert self.live is not None
            d = self.live.to_dict()
            d["tracked"] = False
        else:
            d = self.record.to_dict()
            d["state"] = self.state
            d["hours"] = round(self.record.hours_running(), 4)
            d["tracked"] = True
        for key in ("error", "note"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


#: a log missing more than this many of its Remote's reads at home is copied whole
BULK_READS = 16
#: an intent older than this with nothing found at its provider is dropped
STALE_INTENT_HOURS = 0.25
#: a record updated at most this long ago is trusted for how to reach its machine
#: (``ResourceRecord.connection``); an older one, or one that fails, asks the provider
CONNECTION_FRESH_SECONDS = 600.0

log = logging.getLogger(__name__)


class Trainctl:
    """Each machine is connected to once and that connection (its ``JobRuntime``)
    serves the steps that follow, until the machine is released, stopped or started,
    following loses contact with it, or a call on it fails."""

    def __init__(self, store: Store | None = None, *, warn: Warn | None = None) -> None:
        """``warn`` receives what a provider says the user should know (a spot
        fallback, a setting it ignored); by default it goes to trainctl's logger."""
        self.store = store or Store()
        self.warn: Warn = warn or log.warning
        self._providers: dict[str, TrainingProvider] = {}
        #: resource id -> the runtime its data-plane steps share
        self._runtimes: dict[str, JobRuntime] = {}
        #: resource id -> the status its create returned, for its first connection
        self._created: dict[str, ResourceStatus] = {}

    def _warn(self, status: ResourceStatus) -> None:
        for message in status.warnings:
            self.warn(message)

    def provider(self, name: str) -> TrainingProvider:
        if name not in self._providers:
            self._providers[name] = registry.get(name)
        return self._providers[name]

    def _resolve(self, ref: str) -> tuple[ResourceRecord, TrainingProvider]:
        record = self.store.resource(ref)
        if not record.confirmed:
            raise OperationFailed(
                f"resource {record.name!r} was never confirmed by {record.provider}",
                hint="run `trainctl list --refresh` to reconcile it",
            )
        return record, self.provider(record.provider)

    # --- connections -------------------------------------------------------------

    def remote(self, ref: str) -> tuple[ResourceRecord, Remote]:
        """The machine ``ref`` (an id or a name) and how to reach it, for `ssh` and
        `forward`: the connection the other steps on it share."""
        record, provider = self._resolve(ref)
        with self._connected(record, provider) as rt:
            return record, rt.remote

    def forward(self, ref: str, ports: list[PortForward]) -> Forwarding:
        """Forward the machine's ``ports`` here until the result is closed."""
        _, remote = self.remote(ref)
        return remote.forward(ports)

    @contextlib.contextmanager
    def forwarding(
        self, ref: str, ports: list[PortForward], progress: Progress | None = None
    ) -> Iterator[None]:
        """``ports`` forwarded while the block runs (a job being followed), each said
        to ``progress``. A forward that cannot be set up is a warning: the job it
        serves runs on."""
        if not ports:
            yield
            return
        try:
            record, remote = self.remote(ref)
            forwarded = remote.forward(ports)
        except TrainctlError as e:
            self.warn(f"ports not forwarded: {e}")
            yield
            return
        for p in ports:
            if progress:
                progress(f"forwarding localhost:{p.local} -> {record.name}:{p.remote}")
        with forwarded:
            yield

    def cut_connection(self, resource_id: str) -> None:
        """End the machine's shared connection under whatever uses it now (a log
        being followed fails at once, and its reconnect asks the provider)."""
        rt = self._runtimes.get(resource_id)
        if rt is not None:
            rt.remote.close()

    def forget_connection(self, resource_id: str) -> None:
        """Make the next step on the machine connect again."""
        self._runtimes.pop(resource_id, None)
        self._created.pop(resource_id, None)

    @contextlib.contextmanager
    def _connected(
        self, record: ResourceRecord, provider: TrainingProvider
    ) -> Iterator[JobRuntime]:
        """The machine's shared runtime, dropped when the step fails (other than by
        the machine's own answer that something is missing or refused), so that a
        broken connection is not used again."""
        rt = self._runtimes.get(record.id)
        if rt is None:
            rt = self._runtimes[record.id] = self._connect(record, provider)
        try:
            yield rt
        except (NotFound, BadInput):
            raise
        except Exception:
            self.forget_connection(record.id)
            raise

    def _connect(self, record: ResourceRecord, provider: TrainingProvider) -> JobRuntime:
        """The status its create returned reaches a machine made by this process; a
        fresh record one made earlier, once a first command there works; otherwise
        (or when that command fails) the provider is asked (``connect``)."""
        created = self._created.pop(record.id, None)
        if created is not None:
            return JobRuntime(provider.connect_to(created), record.id)
        seen = record.last_seen()
        age = datetime.now(timezone.utc) - datetime.fromisoformat(record.updated_at)
        # a provider without its own connect_to would only ask, after a wasted try
        from_status = type(provider).connect_to is not TrainingProvider.connect_to
        if (
            from_status
            and seen is not None
            and seen.state is ResourceState.RUNNING
            and age.total_seconds() <= CONNECTION_FRESH_SECONDS
        ):
            rt = JobRuntime(provider.connect_to(seen), record.id)
            try:
                rt.info  # noqa: B018 - the first command: whether the connection works
                return rt
            except TrainctlError as e:  # moved, stopped, another machine there now: ask
                log.info("%s: the recorded connection failed (%s)", record.name, e)
        return provider.runtime(record.id)

    # --- control plane -----------------------------------------------------------

    def create(
        self,
        provider_name: str,
        options: CreateResourceOptions,
        *,
        progress: Progress | None = None,
        default_idle: float = CREATE_IDLE_SECONDS,
    ) -> ResourceRecord:
        """Rent (or register) a machine and record it; a machine that can release
        itself is armed with its guards before this returns (``options.guards``, an
        idle stop of ``default_idle`` unless ``never``), or released if they cannot
        be set up."""
        if provider_name == "cheapest":  # catalog.cheapest.CHEAPEST, imported lazily
            return self._create_cheapest(options, progress=progress, default_idle=default_idle)
        provider = self.provider(provider_name)
        require(provider, Capability.CREATE)
        provider.validate_options(options)
        options.guards = options.guards.with_defaults(_guard_table())
        _check_guards(provider, options)
        store = _store_request(provider, options)
        options.name = options.name or self.store.new_name()
        intent = self.store.begin_create(provider_name, options.name, spot=options.spot)
        try:
            status = provider.create_resource(options, progress=progress)
        except ResourceLeft as e:
            # A machine may exist: keep its record (with its id when known).
            if e.resource_id:
                left = ResourceStatus(e.resource_id, provider_name, ResourceState.UNKNOWN)
                left.reason = e.message
                self.store.finish_create(intent, left)
            e.hint = e.hint or (
                f"check with `trainctl list --refresh`; `trainctl terminate {options.name}` "
                "releases it"
            )
            raise
        except (TrainctlError, interrupts.Released):
            # The provider reports its own failures (and interrupts) after cleaning up
            # what it made.
            self.store.abandon_create(intent)
            raise
        except KeyboardInterrupt:
            if provider.create_settles_at_once:
                with interrupts.deferred():
                    self._settle_interrupted(intent, options.name, provider)
            raise
        self._warn(status)
        record = self.store.finish_create(intent, status)
        self._created[record.id] = status
        self._arm(record, provider, status, options, default_idle, progress, store)
        return self.store.resource(record.id)

    # --- guards ------------------------------------------------------------------

    def _arm(
        self,
        record: ResourceRecord,
        provider: TrainingProvider,
        status: ResourceStatus,
        options: CreateResourceOptions,
        default_idle: float,
        progress: Progress | None,
        store: StoreRequest = None,
    ) -> None:
        """Set the new machine's guards up (and its object store, which its guard
        writes). A machine that could bill unwatched (one that can release itself, or
        should) is released when that fails."""
        releases = type(provider).releases(options)
        launched = (status.launch_time or datetime.now(timezone.utc)).timestamp()
        current = Guards(launched, hourly=status.cost_per_hour or record.price_per_hour)
        try:
            guards = resolve(
                options.guards,
                current=current,
                releases=releases,
                default_idle=default_idle,
                what=f"{record.provider} machine {record.name}",
            )
            if not releases and options.guards.idle_stop not in (None, NEVER):
                self.warn(
                    f"{record.provider} machines have nothing to release: their guard ends "
                    "jobs only, so --idle-stop does nothing there"
                )
            if not guards.any and store is None:
                return
            target = _store_target(provider, status, store)
            if progress:
                if guards.any:
                    progress(f"guard on {record.name}: {guards.summary()}")
                if target:
                    progress(f"{record.name} saves its jobs' checkpoints and logs to {target.url}")
            self._install_guard(record, provider, status, guards, store=target, store_request=store)
            if target:
                saved = {**target.spec(), "provider": record.provider, "jobs": []}
                self.store.save_object_store(record.id, record.name, saved)
        except (TrainctlError, KeyboardInterrupt) as e:
            if not releases:
                raise
            with interrupts.deferred():
                self.terminate(record.id)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise OperationFailed(
                f"could not set up the guard on {record.name} ({e}); it was released so "
                "that it cannot bill unwatched",
                hint="retry; --idle-stop never --max-duration never --max-spend never "
                "creates it with no guard",
            ) from None

    def _install_guard(
        self,
        record: ResourceRecord,
        provider: TrainingProvider,
        status: ResourceStatus,
        guards: Guards,
        *,
        with_release: bool = True,
        store: objstore.Target | None = None,
        store_request: StoreRequest = None,
    ) -> dict[str, object]:
        """Send ``guards`` to the machine (with how to release it, unless the one
        there already is right, and the object store it saves its jobs' work in, with
        its access key) and record them."""
        table = _guard_table()
        policy: dict[str, object] = guards.policy(
            interval=seconds_setting(
                None, table.get("interval"), DEFAULT_INTERVAL, "[guard] interval"
            )
            or DEFAULT_INTERVAL,
            grace=seconds_setting(None, table.get("grace"), DEFAULT_GRACE, "[guard] grace"),
        )
        secret = None
        if with_release:
            policy["release"] = None
            if guards.release and isinstance(provider, SelfRelease):
                release = provider.guard_release(status, guards.release, until=guards.deadline)
                policy["release"] = {"action": release.action, "request": release.request}
                secret = release.secret
        if status.spot and provider.spot_notice:
            policy["spot_notice"] = True
        store_secret = None
        if store is not None:
            policy["store"] = store.spec()
            store_secret = store_request[1] if store_request else None
        with self._connected(record, provider) as rt:
            report = rt.guard_set(policy, secret=secret, store_secret=store_secret)
        self.store.set_guards(record.id, guards.to_dict())
        return report

    def _rearm(
        self,
        record: ResourceRecord,
        provider: TrainingProvider,
        status: ResourceStatus,
        guards: Guards,
    ) -> None:
        """Set the guard up again on a machine started again: nothing on it starts the
        guard at boot, and a pod's container disk may have lost its policy (and its
        object store's, which is sent again)."""
        self._created[record.id] = status  # how to reach it now, as a create's status
        saved = self.store.object_store(record.id)
        store: StoreRequest = None
        target = None
        if saved is not None and saved["resource_id"] == record.id:
            keyed = saved.get("credentials") == "secret"
            kind = objstore.KEYS if keyed else objstore.INSTANCE_ROLE
            target = objstore.Target(
                str(saved["bucket"]), str(saved["prefix"]), saved["endpoint"], saved["region"], kind
            )
            # the key, when it is still configured here (else the machine's, if it kept it)
            store = (target, objstore.access_key(required=False) if keyed else None)
        try:
            self._install_guard(record, provider, status, guards, store=target, store_request=store)
        except TrainctlError as e:
            self.forget_connection(record.id)
            self.warn(
                f"{record.name} runs without its guard: it could not be set up again ({e}); "
                f"`trainctl autostop {record.name} --idle-stop ...` retries"
            )

    def autostop(
        self, ref: str, request: GuardRequest
    ) -> tuple[ResourceRecord, Guards | None, dict[str, object] | None]:
        """Change a live machine's guards (``request``: None keeps a limit, ``never``
        switches it off); with an empty request, only ask the guard how far each
        limit is. Returns the record, its guards and the guard's report."""
        record, provider = self._resolve(ref)
        options = CreateResourceOptions(spot=record.spot)
        releases = type(provider).releases(options)
        current = Guards.from_dict(record.guards)
        if request.empty:
            return record, current, self.guard_report(record, provider)
        self.store.require_writable(f"changing the guards of {record.name}")
        launched = datetime.fromisoformat(record.launched_at or record.created_at).timestamp()
        base = current or Guards(launched, hourly=record.price_per_hour)
        guards = resolve(
            request,
            current=base,
            releases=releases,
            default_idle=None,
            what=f"{record.provider} machine {record.name}",
        )
        if not releases and request.idle_stop not in (None, NEVER):
            self.warn(
                f"{record.provider} machines have nothing to release: their guard ends jobs "
                "only, so --idle-stop does nothing there"
            )
        status = record.last_seen() or ResourceStatus(
            record.id, record.provider, ResourceState.RUNNING
        )
        # a release may depend on the deadline (a credential that expires after it)
        fresh = current is None or (current.release, current.deadline) != (
            guards.release,
            guards.deadline,
        )
        report = self._install_guard(record, provider, status, guards, with_release=fresh)
        return self.store.resource(record.id), guards, report

    def guard_report(
        self, record: ResourceRecord, provider: TrainingProvider | None = None
    ) -> dict[str, object] | None:
        """What the machine's guard says now (None when it has no guards)."""
        if record.guards is None:
            return None
        provider = provider or self.provider(record.provider)
        with self._connected(record, provider) as rt:
            return rt.guard_status()

    def _settle_interrupted(self, intent: str, name: str, provider: TrainingProvider) -> None:
        """Record what an interrupted create made (found by name), or drop its intent
        when it made nothing; left as it is when the provider cannot be asked."""
        try:
            listed = provider.list_resources()
        except TrainctlError:
            return
        found = [s for s in listed if (s.tags.get(TAG_NAME) or s.name) == name]
        if found:
            self.store.finish_create(intent, found[0])
        else:
            self.store.abandon_create(intent)

    def _create_cheapest(
        self,
        options: CreateResourceOptions,
        *,
        progress: Progress | None = None,
        default_idle: float = CREATE_IDLE_SECONDS,
    ) -> ResourceRecord:
        """``provider_name="cheapest"``: the cheapest matching catalog offer among the
        usable providers, the next one on no capacity (see ``catalog.cheapest``)."""
        from .catalog.cheapest import create_cheapest

        record, _ = create_cheapest(
            lambda name, opts: self.create(
                name, opts, progress=progress, default_idle=default_idle
            ),
            options,
            report=progress or (lambda _message: None),
        )
        return record

    def status(self, ref: str) -> ResourceStatus:
        record, provider = self._resolve(ref)
        try:
            status = provider.get_resource_status(record.id)
        except NotFound:
            status = ResourceStatus(record.id, record.provider, ResourceState.TERMINATED)
            status.reason = "the provider no longer knows this resource"
        self.store.update_status(status)
        if status.state is ResourceState.RUNNING:
            self._logs_home(record, provider)
        return status

    def list(
        self,
        *,
        refresh: bool = False,
        provider: str | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> list[ResourceView]:
        """Stored resources; with ``refresh``, also what each provider says now.

        Refreshing reconciles the store with the providers' own listings: an intent
        whose create was interrupted is matched by name and adopted (or dropped when
        stale and nothing was made), a record whose machine is gone is marked
        terminated, and trainctl-owned machines with no record are listed as
        untracked. A provider that cannot be asked marks its records with the error;
        one with no records here is reported to ``on_error``, so that its machines are
        not silently missing from the listing."""
        views = [ResourceView(r) for r in self.store.resources(provider)]
        if refresh:
            names = {v.record.provider for v in views if v.record}
            if provider is None:
                names |= set(registry.detect())
            else:
                names.add(provider)
            for name in sorted(names):
                group = [v for v in views if v.record and v.record.provider == name]
                views += self._refresh(name, group, on_error=on_error)
        return views

    def _refresh(
        self,
        provider_name: str,
        views: list[ResourceView],
        stale_after: float = STALE_INTENT_HOURS,
        on_error: Callable[[str], None] | None = None,
    ) -> list[ResourceView]:
        provider = self.provider(provider_name)
        try:
            listed = provider.list_resources()
        except TrainctlError as e:
            for v in views:
                v.error = str(e)
            if not views and on_error is not None:
                on_error(f"could not ask {provider_name}: {e}")
            return []
        live = {s.id: s for s in listed}
        by_name = {s.tags.get(TAG_NAME) or s.name: s for s in listed}
        for v in views:
            record = v.record
            assert record is not None
            if not record.confirmed:
                found = by_name.get(record.name)
                in_flight = self._in_flight(record)
                if found is not None:
                    v.record = self.store.finish_create(record.id, found)
                    v.live = found
                    v.note = "adopted: " + (in_flight or "its create had been interrupted")
                elif in_flight:
                    v.note = f"not made yet: {in_flight}"
                elif record.hours_running() >= stale_after:
                    self.store.abandon_create(record.id)
                    v.live = ResourceStatus(record.id, provider_name, ResourceState.TERMINATED)
                    v.note = "dropped: its create was interrupted and nothing was made"
                continue
            status = live.pop(record.id, None)
            if status is None:
                try:
                    status = self._unlisted(provider, record)
                except TrainctlError as e:
                    v.error = f"not listed, and asking for it failed: {e}"
                    continue
            v.live = status
            self.store.update_status(status)
        known = {v.record.id for v in views if v.record}
        return [
            ResourceView(None, s, note="untracked: no local record")
            for s in live.values()
            if s.id not in known and s.state is not ResourceState.TERMINATED
        ]

    @staticmethod
    def _unlisted(provider: TrainingProvider, record: ResourceRecord) -> ResourceStatus:
        """A recorded machine its provider's listing leaves out: asked for by id before
        it is called terminated, so that a listing that lags or leaves entries out
        never ends a live machine's record."""
        if record.state == ResourceState.TERMINATED.value:
            status = ResourceStatus(record.id, record.provider, ResourceState.TERMINATED)
        else:
            try:
                return provider.get_resource_status(record.id)
            except NotFound:
                status = ResourceStatus(record.id, record.provider, ResourceState.TERMINATED)
        status.reason = "the provider no longer lists it"
        return status

    def locate(self, ref: str) -> tuple[ResourceRecord | None, ResourceStatus | None]:
        """The machine ``ref`` (id or name) means: its record, or, when the store has
        none, the one machine a usable provider lists as trainctl's under that id or
        trainctl name (an untracked machine: its record was lost)."""
        try:
            return self.store.resource(ref), None
        except NotFound as e:
            return None, self._untracked(ref, e)

    def _untracked(self, ref: str, not_found: NotFound) -> ResourceStatus:
        matches: list[ResourceStatus] = []
        unasked: list[str] = []
        for name in sorted({*registry.detect(), registry.FALLBACK}):
            try:
                listed = self.provider(name).list_resources()
            except TrainctlError as e:
                unasked.append(f"{name} ({e})")
                continue
            matches += [
                s
                for s in listed
                if s.state is not ResourceState.TERMINATED
                and ref in (s.id, s.tags.get(TAG_NAME) or s.name)
            ]
        if len(matches) > 1:
            ids = ", ".join(f"{s.id} on {s.provider}" for s in matches)
            raise BadInput(f"{ref!r} names several untracked machines ({ids}); give an id")
        if not matches:
            if unasked:
                not_found.hint = "could not ask " + "; ".join(unasked)
            raise not_found
        return matches[0]

    def adopt(self, ref: str, *, name: str | None = None) -> ResourceRecord:
        """Record an untracked machine (one a usable provider lists as trainctl's but
        the store has no record of), under its trainctl name or ``name``."""
        record, machine = self.locate(ref)
        if record is not None:
            raise BadInput(f"{record.name} ({record.id}) is already recorded")
        assert machine is not None
        label = name or machine.tags.get(TAG_NAME) or machine.name or machine.id
        intent = self.store.begin_create(machine.provider, label, spot=machine.spot)
        return self.store.finish_create(intent, machine)

    def terminate(
        self,
        ref: str,
        *,
        located: tuple[ResourceRecord | None, ResourceStatus | None] | None = None,
    ) -> ResourceStatus:
        """Release a machine: a recorded one, or an untracked one that its provider
        lists as trainctl's (``locate``). ``located`` is what ``locate(ref)`` said."""
        record, untracked = located or self.locate(ref)
        if record is None:
            assert untracked is not None
            return self._terminate_untracked(untracked)
        self.store.require_writable(f"terminating {record.name}")
        if not record.confirmed:
            record = self._settle_intent(record)
        provider = self.provider(record.provider)
        if record.state == ResourceState.RUNNING.value:
            for job_id in self._logs_home(record, provider):
                self.warn(
                    f"the log of {job_id} is not all at home: the rest goes with {record.name}"
                )
        if record.guards is not None and not isinstance(provider, SelfRelease):
            # nothing is released: the guard would live on with the machine. One that
            # saves to an object store does so once more when disarmed: the jobs are
            # ended first, so that what they save on SIGTERM is in it.
            saved = self.store.object_store(record.id)
            with contextlib.suppress(TrainctlError), self._connected(record, provider) as rt:
                if saved is not None and saved["resource_id"] == record.id:
                    rt.cancel_all(grace=TERMINATE_GRACE_SECONDS)
                rt.guard_stop()
        self.forget_connection(record.id)
        status = provider.terminate(record.id)
        self._warn(status)
        if status.state in (ResourceState.TERMINATED, ResourceState.TERMINATING):
            if isinstance(provider, SelfRelease):
                try:
                    provider.forget_release(record.id)
                except TrainctlError as e:
                    self.warn(f"{record.name}: could not revoke its guard's credential: {e}")
            self.store.forget(record.id)
        else:
            self.store.update_status(status)
            raise OperationFailed(
                f"{record.provider} did not confirm termination of {record.name} "
                f"(state: {status.state.value}); its record is kept",
                hint=f"retry `trainctl terminate {record.name}`",
            )
        return status

    def _terminate_untracked(self, machine: ResourceStatus) -> ResourceStatus:
        self.forget_connection(machine.id)
        status = self.provider(machine.provider).terminate(machine.id)
        self._warn(status)
        if status.state not in (ResourceState.TERMINATED, ResourceState.TERMINATING):
            raise OperationFailed(
                f"{machine.provider} did not confirm termination of {machine.id} "
                f"(state: {status.state.value})",
                hint=f"retry `trainctl terminate {machine.id}`",
            )
        return status

    def _in_flight(self, record: ResourceRecord) -> str | None:
        """Why the create behind an intent may still act (``Store.create_in_flight``)."""
        table = load_config().get("create", {})
        grace = table.get("request_grace") if isinstance(table, dict) else None
        seconds = seconds_setting(None, grace, REQUEST_GRACE_SECONDS, "[create] request_grace")
        return self.store.create_in_flight(record, request_grace=seconds)

    def _settle_intent(self, record: ResourceRecord) -> ResourceRecord:
        """An interrupted create: adopt what the provider made under its name, or,
        when it made nothing, drop the record and say so. A create that may still
        act is left alone: dropping its intent would let the machine it is about to
        make run without a record."""
        in_flight = self._in_flight(record)
        if in_flight:
            raise OperationFailed(
                f"{record.name!r} is not made yet: {in_flight}; nothing was done",
                hint=f"wait for that create to end, then `trainctl terminate {record.name}` "
                "(Ctrl-C on the create also releases what it made)",
            )
        view = ResourceView(record)
        self._refresh(record.provider, [view], stale_after=0.0)
        assert view.record is not None
        if view.error:
            raise OperationFailed(
                f"cannot tell whether {record.provider} made {record.name!r}: {view.error}"
            )
        if not view.record.confirmed:
            raise NotFound(
                f"{record.name!r} was never made by {record.provider} "
                "(its create was interrupted); its record is dropped"
            )
        return view.record

    def stop(self, ref: str) -> ResourceStatus:
        return self._stop_start(ref, "stop")

    def start(self, ref: str) -> ResourceStatus:
        return self._stop_start(ref, "start")

    def _stop_start(self, ref: str, action: str) -> ResourceStatus:
        record, provider = self._resolve(ref)
        require(provider, Capability.STOP_START, CreateResourceOptions(spot=record.spot))
        if not isinstance(provider, StopStart):  # declared without the mixin's methods
            raise CapabilityError(f"provider '{provider.name}' has no stop and start")
        self.store.require_writable(f"{action} {record.name}")
        self.forget_connection(record.id)
        status = provider.stop(record.id) if action == "stop" else provider.start(record.id)
        self.store.update_status(status)
        self._warn(status)
        guards = Guards.from_dict(record.guards)
        if action == "start" and guards is not None and guards.any:
            self._rearm(record, provider, status, guards)
            passed = guards.deadline is not None and guards.deadline <= time.time()
            if passed or (
                guards.max_spend is not None and (guards.spent() or 0) >= guards.max_spend
            ):
                self.warn(
                    f"{record.name} is past its {'deadline' if passed else 'spend cap'}: its "
                    f"guard will {guards.release or 'end its jobs'} again at once; "
                    f"`trainctl autostop {record.name} --max-duration ...` (or --max-spend) "
                    "moves the limit"
                )
        return status

    # --- jobs --------------------------------------------------------------------

    def train(
        self,
        ref: str,
        job: TrainingJob,
        *,
        progress: Progress | None = None,
        restore: Path | None = None,
        attempt: tuple[str, int] | None = None,
    ) -> TrainingStatus:
        """Start ``job`` on the machine ``ref``; ``restore``: a local directory whose
        files go into the job's checkpoint directory first (a recovered run's
        checkpoints); ``attempt``: the run it is an attempt of, and its number."""
        record, provider = self._resolve(ref)
        self.store.require_writable(f"a job on {record.name}")
        guards = Guards.from_dict(record.guards)
        if guards is not None and guards.deadline is not None and guards.deadline <= time.time():
            raise BadInput(
                f"the deadline of {record.name} has passed: its guard would end the job at once",
                hint=f"`trainctl autostop {record.name} --max-duration DURATION` moves it",
            )
        git = runs.git_state(job.workdir)
        with self._connected(record, provider) as rt:
            if restore is not None:
                rt.info  # noqa: B018 - creates the work directory on the machine
                with rt.attached():
                    rt.remote.put_tree(
                        restore, rt.resolve(job.checkpoint_dir), progress=progress
                    )
            status = provider.train(record.id, job, progress=progress, runtime=rt)
        self.store.add_job(record, status, job=job, git=git, attempt=attempt)
        saved = self.store.object_store(record.id)
        if saved is not None and saved["resource_id"] == record.id:
            jobs = [*saved["jobs"], {"id": status.job_id, "checkpoint_dir": job.checkpoint_dir}]
            kept = {k: v for k, v in saved.items() if k not in ("resource_id", "name")}
            self.store.save_object_store(record.id, record.name, {**kept, "jobs": jobs})
        return status

    def find_job(self, ref: str) -> tuple[ResourceRecord, TrainingProvider, str | None]:
        """A job id, or a resource (meaning its newest job)."""
        job = self.store.job(ref)
        if job is not None:
            record, provider = self._resolve(job.resource_id)
            return record, provider, job.id
        try:
            record, provider = self._resolve(ref)
        except NotFound:
            raise NotFound(f"no job or resource {ref!r} (see `trainctl jobs`)") from None
        return record, provider, None

    def monitor(
        self,
        ref: str,
        *,
        follow: bool = False,
        sink: OutputSink | None = None,
        progress: Progress | None = None,
        offset: int = 0,
    ) -> TrainingStatus:
        """The job's log from byte ``offset`` to ``sink``; with ``follow``, until the
        job ends.

        While following, a machine that cannot be reached is retried with backoff
        for as long as its provider says it runs (see ``Reconnect``); giving up
        raises ``FollowGaveUp`` and leaves the job and the machine as they are."""
        saved = self.past_run(ref)
        if saved is not None:
            runs.read_saved(saved.id, offset, sink or (lambda _b: None))
            return saved.to_status()
        record, provider, job_id = self.find_job(ref)
        on_drop = None
        if follow:
            reconnect = Reconnect(provider, record, job_id or ref, report=progress)

            def dropped(error: RemoteError | CredentialsError, failures: int) -> None:
                # what follows the follow connects again: the machine may have moved
                self.forget_connection(record.id)
                try:
                    reconnect(error, failures)
                except MachineLost as e:
                    # its runs end here, whatever the caller does next: a spot
                    # machine gone under its job was reclaimed, any other is lost
                    how = PREEMPTED if record.spot else ExecutionStatus.LOST.value
                    self.store.end_runs(record.id, how=how, reason=e.message)
                    raise

            on_drop = dropped

        with self._connected(record, provider) as rt:
            if job_id is None:
                job_id = provider._newest_job(rt)
            status = provider.monitor(
                record.id,
                job_id,
                follow=follow,
                sink=runs.LogCopy(job_id, offset, sink),
                offset=offset,
                on_drop=on_drop,
                runtime=rt,
            )
        self._record_job(record, status)
        self._note_log(status)
        return status

    def past_run(self, ref: str) -> JobRecord | None:
        """The run ``ref`` means when its machine is gone: a job id whose machine has no
        live record, or the name of a gone machine (its newest run). None otherwise."""
        run = self.store.job(ref)
        if run is None:
            if self._live(ref) is not None:
                return None
            found = self.store.runs(machine=ref)
            run = found[0] if found else None
        if run is None or self._live(run.resource_id) is not None:
            return None
        return run

    def _live(self, ref: str) -> ResourceRecord | None:
        """The record of a machine that may still be there (not one seen terminated)."""
        try:
            record = self.store.resource(ref)
        except NotFound:
            return None
        return None if record.state == ResourceState.TERMINATED.value else record

    def _note_log(self, status: TrainingStatus) -> None:
        """Mark the run's log complete once all of it is at home."""
        if status.status.is_final and runs.saved(status.job_id) >= status.log_size:
            self.store.set_log_complete(status.job_id)

    def _bring_logs(self, rt: JobRuntime, statuses: list[TrainingStatus]) -> list[str]:
        """Fetch what is missing at home of these jobs' logs; returns the ids of those
        whose log is still not complete at home (a read failed)."""
        missing = []
        for status in statuses:
            run = self.store.job(status.job_id)
            if run is None or run.log_complete:
                continue
            have = runs.saved(status.job_id)
            try:
                copy = runs.LogCopy(status.job_id, have, None)
                if rt.remote.max_read and status.log_size - have > BULK_READS * rt.remote.max_read:
                    # many small reads (SSM's output limit) would take minutes: one copy
                    runs.append_from(copy, rt.remote.get, rt.log_path(status.job_id), have)
                    have = runs.saved(status.job_id)
                while have < status.log_size and (chunk := rt.read(status.job_id, have)):
                    copy(chunk)
                    have += len(chunk)
            except (TrainctlError, OSError) as e:
                log.info("the log of %s did not all come home: %s", status.job_id, e)
                missing.append(status.job_id)
                continue
            self._note_log(status)
        return missing

    def _logs_home(self, record: ResourceRecord, provider: TrainingProvider) -> list[str]:
        """On a contact with a live machine: bring home what is missing of its runs'
        logs. Connects only when a run of it has an incomplete log; a machine that
        cannot be reached keeps what is missing there (returned: the job ids)."""
        pending = [r for r in self.store.runs(resource_id=record.id) if not r.log_complete]
        if not pending:
            return []
        try:
            return self._jobs_of(record, provider)[1]
        except TrainctlError as e:
            log.info("%s: logs not brought home (%s)", record.name, e)
            return [r.id for r in pending]

    def jobs(
        self, ref: str | None = None, *, on_error: Callable[[str], None] | None = None
    ) -> list[TrainingStatus]:
        """Jobs on ``ref``, or on every live machine. Without ``ref``, a machine that
        cannot be asked is reported to ``on_error`` and the others still answer."""
        if ref:
            if self._live(ref) is None and self.store.runs(machine=ref):
                # a machine that is gone: its runs as recorded
                return [r.to_status() for r in reversed(self.store.runs(machine=ref))]
            record, provider = self._resolve(ref)
            return self._jobs_of(record, provider)[0]
        found = []
        for record in self.store.resources():
            if not record.confirmed or record.state == ResourceState.TERMINATED.value:
                continue
            provider = self.provider(record.provider)
            try:
                found += self._jobs_of(record, provider)[0]
            except TrainctlError as e:
                if on_error is None:
                    raise
                on_error(f"{record.name}: {e}")
        return found

    def _jobs_of(
        self, record: ResourceRecord, provider: TrainingProvider
    ) -> tuple[list[TrainingStatus], list[str]]:
        """The machine's jobs, recorded, with what is missing of their logs brought
        home; and the ids of those whose log did not all come."""
        with self._connected(record, provider) as rt:
            statuses = provider.jobs(record.id, runtime=rt)
            for status in statuses:
                self._record_job(record, status)
            return statuses, self._bring_logs(rt, statuses)

    def past_runs(self) -> list[JobRecord]:
        """Runs whose machine is gone (released, or seen terminated), newest first."""
        return [r for r in self.store.runs() if self._live(r.resource_id) is None]

    def cancel(self, job_id: str, grace: float = 10.0) -> TrainingStatus:
        record, provider, resolved = self.find_job(job_id)
        if resolved is None:
            raise NotFound(f"no job {job_id!r} (give a job id; see `trainctl jobs`)")
        with self._connected(record, provider) as rt:
            status = provider.cancel(record.id, resolved, grace, runtime=rt)
        self._record_job(record, status)
        return status

    def _record_job(self, record: ResourceRecord, status: TrainingStatus) -> None:
        if self.store.job(status.job_id) is None:
            self.store.add_job(record, status)
        else:
            self.store.update_job(status)

    def download(
        self,
        ref: str,
        remote_path: str,
        local_path: str | Path,
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Copy ``remote_path`` from the machine; from the object store its guard
        saved to (``--store``) when the machine is gone: its record was deleted, or
        its provider no longer knows it."""
        try:
            record, provider = self._resolve(ref)
        except NotFound:
            saved = self.store.object_store(ref)
            if saved is None:
                raise
            return self._from_store(saved, remote_path, local_path, progress)
        try:
            with self._connected(record, provider) as rt:
                landed = provider.download(
                    record.id, remote_path, local_path, progress=progress, runtime=rt
                )
            self._logs_home(record, provider)
            return landed
        except TrainctlError:
            saved = self.store.object_store(record.id)
            if saved is None or saved["resource_id"] != record.id or not self._gone(record):
                raise
        return self._from_store(saved, remote_path, local_path, progress)

    def _gone(self, record: ResourceRecord) -> bool:
        """Whether the provider says the machine is no more (asked, not assumed from
        a failed connection)."""
        try:
            return self.status(record.id).state is ResourceState.TERMINATED
        except TrainctlError:
            return False

    def _from_store(
        self,
        saved: dict[str, object],
        remote_path: str,
        local_path: str | Path,
        progress: Progress | None,
    ) -> Path:
        if saved.get("credentials") == "instance-role":
            provider = self.provider(str(saved["provider"]))
            assert isinstance(provider, OwnObjectStore)
            creds = provider.object_store_credentials()
        else:
            creds = objstore.access_key()
            assert creds is not None
        if progress:
            progress(f"{saved['name']} is gone: downloading from its store {saved['url']}")
        return objstore.fetch(saved, creds, remote_path, local_path, progress=progress)

    def pull_checkpoints(
        self,
        job_id: str,
        checkpoint_dir: str,
        dest: str | Path,
        *,
        interval: float,
        progress: Progress | None = None,
        restored: dict[str, int] | None = None,
    ) -> CheckpointPuller | None:
        """A puller (not started) that brings the job's ``checkpoint_dir`` (relative:
        in the synced directory) home to ``dest`` while it runs (see
        ``checkpoints.CheckpointPuller``); None, said to ``progress``, when the
        provider cannot download."""
        record, provider, resolved = self.find_job(job_id)
        why = provider.unsupported_reason(Capability.DOWNLOAD)
        if why:
            if progress:
                progress(f"checkpoints stay on {record.name}: {why}")
            return None
        with self._connected(record, provider) as rt:
            source = rt.resolve(checkpoint_dir)
        return CheckpointPuller(
            rt,
            source,
            Path(dest),
            interval=interval,
            job_id=resolved or job_id,
            name=checkpoint_dir,
            progress=progress,
            restored=restored,
        )


@dataclass
class RunResult:
    resource: ResourceRecord
    job: TrainingStatus | None
    downloads: list[str]
    terminated: bool
    kept_reason: str | None = None
    #: the signal that interrupted the run ("Ctrl-C", "SIGTERM", "SIGHUP"), if one did
    interrupted: str | None = None
    #: why the job was lost with its machine, if it was
    lost: str | None = None
    #: what the release says it left behind (an ssh host keeps the registration's
    #: directory, with checkpoints a skipped download did not bring home)
    released_note: str | None = None
    #: the guards a kept machine is left under (one line), when it has any
    guards: str | None = None
    #: what was brought home of the checkpoint directory while the job ran (and by
    #: the last pass after it), when checkpoints were pulled
    checkpoints: Pulled | None = None
    #: a recovering run's attempts, first first (their run records)
    attempts: list[JobRecord] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """130 when interrupted; else the job's own code, or 1 when it has none, or
        when it succeeded but something asked for did not happen (an output not
        brought home, the machine kept because following gave up)."""
        if self.interrupted:
            return 130
        if self.lost or self.job is None or self.job.exit_code is None:
            return 1
        if self.job.exit_code == 0 and self.kept_reason:
            return 1
        return self.job.exit_code

    def to_dict(self) -> dict[str, object]:
        return {
            "resource": self.resource.to_dict(),
            "job": self.job.to_dict() if self.job else None,
            "downloads": self.downloads,
            "terminated": self.terminated,
            "kept_reason": self.kept_reason,
            "interrupted": self.interrupted,
            "lost": self.lost,
            "released_note": self.released_note,
            "guards": self.guards,
            "checkpoints": self.checkpoints.to_dict() if self.checkpoints else None,
            "attempts": [a.to_dict() for a in self.attempts],
            "exit_code": self.exit_code,
        }


def _with_vars(
    tc: Trainctl,
    record: ResourceRecord,
    job: TrainingJob,
    node_vars: Callable[[list[ResourceStatus]], list[dict[str, str]]] | None,
) -> TrainingJob:
    if node_vars is None:
        return job
    (more,) = node_vars([tc.status(record.id)])
    return replace(job, env={**more, **job.env})


def run(
    tc: Trainctl,
    provider_name: str,
    options: CreateResourceOptions,
    job: TrainingJob,
    *,
    outputs: list[str],
    output_dir: Path,
    keep: bool = False,
    grace: float = 10.0,
    sink: OutputSink | None = None,
    progress: Progress | None = None,
    on_created: Callable[[ResourceRecord], None] | None = None,
    checkpoint_sync: float | str | None = None,
    recover: recovery.Recovery | None = None,
    ports: list[PortForward] | None = None,
    node_vars: Callable[[list[ResourceStatus]], list[dict[str, str]]] | None = None,
) -> RunResult:
    """Create a machine, train, follow the log, download outputs, terminate.

    While the job runs, its checkpoint directory comes home, file by file as each is
    complete, to ``output_dir / <its name>`` (``checkpoints.CheckpointPuller``), and a
    last pass takes what is left before the outputs are downloaded.
    ``checkpoint_sync``: seconds (or a duration) between looks at it at most, ``off``,
    or None for the configured default (``checkpoints.interval``).

    With ``recover``, an attempt whose machine was preempted or lost is followed by
    another (``recovery.Recovery``): the machine is released, another is rented with
    the same options (``cheapest`` looks again), the checkpoints at home go into its
    checkpoint directory, and the same command starts again, as job
    ``<first job id>-<attempt>``. Every attempt is a run record of its own that names
    the first (``Store.attempts``); the result's ``attempts`` lists them.

    The machine is terminated on every path out, including errors, unless ``keep``
    is set, an output could not be downloaded, or following gave up while the
    machine still runs (then it is kept, and the result says why, so nothing is
    lost).

    An interrupt (Ctrl-C, or SIGTERM / SIGHUP under ``interrupts.signals_interrupt``)
    while the job runs is graceful, and each step is reported to ``progress``: the
    job is cancelled with ``grace`` seconds to save a checkpoint, the outputs are
    downloaded, then the machine is released; a second interrupt skips the
    download, and one during the release is held until it is done. With ``keep``
    the job and the machine are left running. An interrupt while a recovery rents or
    prepares a machine releases it. The result says ``interrupted``.

    ``ports`` of the machine are forwarded here while the job is followed
    (``Trainctl.forwarding``). ``node_vars`` gives more variables for each attempt's
    job from its machine's status (``groups.NodeVars``; the job's own win)."""
    _check_writable(output_dir)
    every = checkpoints.interval(checkpoint_sync)
    recover = recover or recovery.Recovery()
    say = progress or (lambda _message: None)
    # a kept machine is one the user means to come back to: the create's idle window
    idle = CREATE_IDLE_SECONDS if keep else RUN_IDLE_SECONDS
    if recover.times and job.job_id is None:
        job = replace(job, job_id=new_job_id())
    if options.image and provider_name != "cheapest":
        # a container image is the job's to run in, not the machine's (job_images)
        in_image = tc.provider(provider_name).job_image(options.image)
        if in_image:
            job, options = replace(job, image=in_image), replace(options, image=None)
    run_id, first = job.job_id, job
    home_checkpoints = checkpoints.home_dir(output_dir, job.checkpoint_dir)
    record = tc.create(provider_name, options, progress=progress, default_idle=idle)
    if on_created:
        on_created(record)
    result = RunResult(record, None, [], False)
    log = _CountingSink(sink)
    puller: CheckpointPuller | None = None
    attempt, restore = 1, None
    try:
        while True:
            job_id = job.job_id
            #: why this attempt ended, how, and whether its machine still answers
            ended: tuple[str, str, bool] | None = None
            try:
                started = tc.train(
                    record.id,
                    _with_vars(tc, record, job, node_vars),
                    progress=progress,
                    restore=restore,
                    attempt=(run_id, attempt) if recover.times and run_id else None,
                )
                result.job, job_id = started, started.job_id
                if attempt > 1:
                    say(f"attempt {attempt}: job {job_id} running on {record.name}")
                if every is not None:
                    puller = tc.pull_checkpoints(
                        started.job_id,
                        job.checkpoint_dir,
                        home_checkpoints,
                        interval=every,
                        progress=progress,
                        restored=recovery.files_in(restore) if restore else None,
                    )
                if puller is not None:
                    result.checkpoints = puller.result
                    puller.start()
                with (
                    _watch(tc, record, recover),
                    tc.forwarding(record.id, ports or [], progress),
                ):
                    result.job = tc.monitor(
                        started.job_id, follow=True, sink=log, progress=progress
                    )
            except KeyboardInterrupt as e:
                if puller is not None:
                    puller.stop()
                result.interrupted = signal_name = interrupts.name(e)
                if keep:
                    say(f"{signal_name}: keeping {record.name} and its job running")
                    return result
                if job_id:
                    result.job = _cancel(tc, job_id, grace, signal_name, say, log) or result.job
            except MachineLost as e:
                why = PREEMPTED if record.spot else recovery.LOST  # as monitor records it
                if not recover.allows(attempt, why):
                    result.lost = e.message + _no_more(recover, attempt)
                    return result  # nothing left to download; the release tidies up
                ended = (why, e.message, False)
            except FollowGaveUp as e:
                result.kept_reason = e.message
                keep = True
                return result
            if ended is None and not result.interrupted:
                why_job = recovery.ended_by(result.job)
                if why_job and recover.allows(attempt, why_job):
                    ended = (why_job, _ending(result.job), True)
                elif why_job in (PREEMPTED, recovery.LOST) and recover.times:
                    result.lost = f"{_ending(result.job)}{_no_more(recover, attempt)}"
            if ended is None:
                break
            why, message, answers = ended
            if puller is not None:
                if answers:  # the job ended on a machine that still answers: the last pass
                    with contextlib.suppress(TrainctlError):
                        puller.finish()
                puller.close(0.0)
                puller = None
            attempt += 1
            job = replace(first, job_id=f"{run_id}-{attempt}")
            if why == recovery.FAILED:
                say(f"{message}; attempt {attempt}: running it again on {record.name}")
                restore = None
                continue
            if not answers:  # gone: what its guard saved to the store may be newer
                _merge_from_store(tc, record, first.checkpoint_dir, home_checkpoints, progress)
            newest = recovery.newest_checkpoint(home_checkpoints)
            say(_lost_line(record, why, message, newest, attempt, recover))
            began = time.monotonic()
            with interrupts.deferred(), contextlib.suppress(NotFound):
                tc.terminate(record.id)
            result.terminated = True  # until another is rented
            record = _rent_again(tc, provider_name, options, message, idle, progress)
            say(
                f"rented {record.name} ({record.id}) on {record.provider} in "
                f"{time.monotonic() - began:.0f}s"
                + (f"; restoring {home_checkpoints}" if newest else "")
            )
            restore = home_checkpoints if newest else None
            result.resource = record
            result.terminated = False
            if on_created:
                on_created(record)
        if (outputs or puller is not None) and result.interrupted:
            say(f"downloading outputs to {output_dir} ({result.interrupted} again skips it)")
        if puller is not None:
            puller.finish()
        completed = result.job is not None and result.job.status is ExecutionStatus.COMPLETED
        landed, failed = download_outputs(
            tc, record.id, outputs, output_dir, completed=completed, progress=progress
        )
        result.downloads += landed
        if failed:
            # keep the machine: what could not be brought home is not lost
            result.kept_reason = "download failed for " + "; ".join(failed)
            keep = True
    except KeyboardInterrupt as e:
        # a second interrupt, or the first one after the job ended: skip to the release
        result.interrupted = result.interrupted or interrupts.name(e)
        if not keep:
            say(f"{interrupts.name(e)}: skipping the download")
    except _RentFailed as e:
        result.lost = e.message  # the lost machine is released; no other could be rented
    finally:
        # ``terminated`` here: released by a recovery that rented no other
        live = not result.terminated
        if keep and live and result.guards is None:
            with contextlib.suppress(TrainctlError):
                result.guards = _guards_note(tc, record)
        if not keep and live:
            if result.interrupted:
                say(f"releasing {record.name}")
            with interrupts.deferred():
                result.released_note = tc.terminate(record.id).reason
            result.terminated = True
            if result.job and not result.job.status.is_final:
                # followed no further (a second interrupt cut the cancel short): the
                # release ends the job, so its last-seen "running" is no longer true
                result.job = replace(
                    result.job,
                    status=ExecutionStatus.CANCELLED,
                    reason=f"ended by releasing {record.name}",
                )
        if puller is not None:
            # after the release, which ends the job and with it the look the puller's
            # thread waits on; a job left running ends that look by itself
            puller.close(checkpoints.JOIN_SECONDS if result.terminated else 0.0)
        if run_id and recover.times:
            result.attempts = tc.store.attempts(run_id)
    return result


def _watch(
    tc: Trainctl, record: ResourceRecord, recover: recovery.Recovery
) -> contextlib.AbstractContextManager[object]:
    """A recovering run's look at the machine's state while it follows the job."""
    if not recover.times:
        return contextlib.nullcontext()
    provider = tc.provider(record.provider)
    return recovery.Watch(
        lambda: provider.get_resource_status(record.id).state,
        lambda: tc.cut_connection(record.id),
        recovery.watch_interval(),
    )


class _RentFailed(TrainctlError):
    """A recovery released the preempted machine and could not rent another."""


def _lost_line(
    record: ResourceRecord,
    why: str,
    message: str,
    newest: tuple[str, float] | None,
    attempt: int,
    recover: recovery.Recovery,
) -> str:
    """What `run` says when an attempt's machine is gone: what happened, what work is
    done again, and what it does next."""
    lost_work = (
        f"newest checkpoint at home: {newest[0]}, brought home {newest[1]:.0f}s before"
        if newest
        else "no checkpoint at home: it starts from scratch"
    )
    return (
        f"{record.name} {'was preempted' if why == PREEMPTED else 'was lost'} ({message}); "
        f"{lost_work}. Attempt {attempt} of at most {recover.times + 1}: releasing it and "
        "renting another"
    )


def _rent_again(
    tc: Trainctl,
    provider_name: str,
    options: CreateResourceOptions,
    message: str,
    idle: float,
    progress: Progress | None,
) -> ResourceRecord:
    """Another machine as ``options`` say (under a new name), for the next attempt."""
    again = replace(options, name=None, tags=dict(options.tags))
    try:
        return tc.create(provider_name, again, progress=progress, default_idle=idle)
    except TrainctlError as e:
        raise _RentFailed(
            f"{message}; recovery could not rent another machine: {e.message}",
            hint=e.hint,
        ) from None


def _merge_from_store(
    tc: Trainctl,
    record: ResourceRecord,
    checkpoint_dir: str,
    home_checkpoints: Path,
    progress: Progress | None,
) -> None:
    """Add to the checkpoints at home what the machine's guard saved to its object
    store (``--store``) and never came home: files missing at home, or of another
    size. A store that cannot be read leaves home as it is (said to ``progress``)."""
    saved = tc.store.object_store(record.id)
    if saved is None or saved.get("resource_id") != record.id:
        return
    staging = home_checkpoints.with_name(f".{home_checkpoints.name}.from-store")
    say = progress or (lambda _message: None)
    try:
        home_checkpoints.parent.mkdir(parents=True, exist_ok=True)
        tc._from_store(saved, checkpoint_dir, staging, progress)
        added = 0
        for rel, size in recovery.files_in(staging).items():
            target = home_checkpoints / rel
            if not target.is_file() or target.stat().st_size != size:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
                added += 1
        say(f"checkpoints: {added} file(s) from {saved['url']} added to those at home")
    except (TrainctlError, OSError) as e:
        say(f"checkpoints: could not read {saved.get('url')} ({e}); restoring what is at home")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _no_more(recover: recovery.Recovery, attempt: int) -> str:
    if not recover.times:
        return ""
    return (
        f"; not recovered: {attempt} attempts made, --recover {recover.times} allows "
        f"{recover.times + 1}"
    )


def _ending(status: TrainingStatus | None) -> str:
    if status is None:
        return "the job ended"
    code = "" if status.exit_code is None else f" (exit {status.exit_code})"
    return f"job {status.job_id} {status.ended_by or status.status.value}{code}" + (
        f": {status.reason}" if status.reason else ""
    )


class _CountingSink:
    """Passes the log on and counts its bytes, so that what the job writes after
    following stopped can be shown from there."""

    def __init__(self, sink: OutputSink | None) -> None:
        self.sink = sink
        self.offset = 0

    def __call__(self, chunk: bytes) -> None:
        if self.sink:
            self.sink(chunk)
        self.offset += len(chunk)


def _cancel(
    tc: Trainctl,
    job_id: str,
    grace: float,
    signal_name: str,
    say: Progress,
    log: _CountingSink,
) -> TrainingStatus | None:
    """Cancel the job of an interrupted run: SIGTERM, SIGKILL after ``grace``; then
    show what the job wrote meanwhile (its last words: a checkpoint saved)."""
    say(
        f"{signal_name}: cancelling job {job_id} (SIGTERM, SIGKILL after {grace:g}s, so it "
        f"can save a checkpoint); {signal_name} again skips to releasing the machine"
    )
    try:
        status = tc.cancel(job_id, grace)
    except TrainctlError as e:
        say(f"could not cancel {job_id} ({e}); releasing the machine ends it")
        return None
    with contextlib.suppress(TrainctlError):
        tc.monitor(job_id, sink=log, offset=log.offset)
    say(f"job {job_id} {status.status.value}")
    return status


def download_outputs(
    tc: Trainctl,
    resource_id: str,
    outputs: list[str],
    output_dir: Path,
    *,
    completed: bool,
    progress: Progress | None,
    optional: tuple[str, ...] = (),
) -> tuple[list[str], list[str]]:
    """Bring ``outputs`` home from the machine: (where each landed, what failed). A
    missing output is a failure only of a ``completed`` job (a failed one may never
    have written it), and never one of the ``optional`` paths."""
    landed: list[str] = []
    failed: list[str] = []
    for path in outputs:
        try:
            dest = output_dir / Path(path.rstrip("/")).name
            landed.append(str(tc.download(resource_id, path, dest, progress=progress)))
        except NotFound as e:
            if completed and path not in optional:
                failed.append(f"{path}: {e}")
        except (TrainctlError, OSError) as e:
            failed.append(f"{path}: {e}")
    return landed, failed


#: (where: a user's store, or ``objstore.DEFAULT``; the access key the machine gets)
StoreRequest = tuple[objstore.Target | str, dict[str, str] | None] | None
#: the grace jobs get when a machine with an object store is terminated (as the
#: ``ssh`` and ``local`` providers give theirs)
TERMINATE_GRACE_SECONDS = 5.0


def _store_request(provider: TrainingProvider, options: CreateResourceOptions) -> StoreRequest:
    """``--store`` (or the config file's), checked before anything is rented: a
    malformed URL, a ``default`` the provider has not, a store with no access key
    configured are refused (``BadInput``, exit 2)."""
    asked = objstore.requested(options.store)
    if asked is None:
        return None
    if asked == objstore.DEFAULT:
        if not isinstance(provider, OwnObjectStore):
            raise BadInput(
                f"{provider.name} has no object store of its own: --store default does not apply",
                hint="give --store s3://BUCKET/PREFIX (with endpoint_url in [object_store] "
                "for R2, B2 or MinIO)",
            )
        return asked, None
    return objstore.target_for(asked), objstore.access_key()


def _store_target(
    provider: TrainingProvider, status: ResourceStatus, store: StoreRequest
) -> objstore.Target | None:
    if store is None:
        return None
    if isinstance(store[0], objstore.Target):
        return store[0]
    assert isinstance(provider, OwnObjectStore)
    own = provider.default_object_store(status)
    return objstore.Target(
        own["bucket"], own["prefix"], None, own["region"], objstore.INSTANCE_ROLE
    )


def _guard_table() -> dict[str, object]:
    """The ``[guard]`` table of the config file: default limits, ``interval``, ``grace``."""
    table = load_config().get("guard", {})
    return table if isinstance(table, dict) else {}


def _guards_note(tc: Trainctl, record: ResourceRecord) -> str | None:
    guards = Guards.from_dict(tc.store.resource(record.id).guards)
    return guards.summary() if guards is not None and guards.any else None


def _check_guards(provider: TrainingProvider, options: CreateResourceOptions) -> None:
    """Refuse, before anything is rented, guards this provider's machines cannot have
    (a release they lack, a spend cap on a machine with no price)."""
    releases = type(provider).releases(options)
    resolve(
        options.guards,
        current=Guards(time.time(), hourly=1.0 if releases else None),
        releases=releases,
        default_idle=None,
        what=f"a {provider.name} machine",
    )


def _check_writable(output_dir: Path) -> None:
    """Refuse, before anything is rented, an output directory that cannot be made."""
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise BadInput(
            f"cannot write outputs to {output_dir}: {existing} is not a writable directory"
        )

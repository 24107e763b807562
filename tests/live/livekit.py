"""The live suite's machinery: what it rents, the caps on each machine, the sweep that
releases everything it made, and the report of what that cost.

Every machine is made by ``LiveRun.create`` and by nothing else: it picks the
cheapest offer trainctl's catalog knows that the check can run on, asks the
provider for its hourly price before renting, and refuses to rent without a price
or above ``MAX_PRICE_PER_HOUR``. Each machine gets a hard ``--max-duration``
(``MACHINE_MINUTES``), ``--max-spend`` (that time at that price, plus a quarter),
``--max-price`` (on-demand) and an idle stop, and is named
``trainctl-live-<run>-<check>`` at the provider: a provider with tags (AWS) is also
tagged ``trainctl-live=<run>``, the others carry the name behind trainctl's own
``trainctl-`` prefix. The sweep finds the run's machines in each provider's own
listing by that tag or name, not only in what this process remembers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainctl import catalog, interrupts, registry
from trainctl.api import Trainctl
from trainctl.capabilities import Capability
from trainctl.errors import BadInput, NoCapacity, NotFound
from trainctl.guards import GuardRequest
from trainctl.provider import NAME_PREFIX, SelfRelease, TrainingProvider
from trainctl.store import ResourceRecord
from trainctl.types import CreateResourceOptions, GpuSpec, ResourceState, ResourceStatus

#: the providers the suite knows how to check
PROVIDERS = ("aws", "runpod", "lyceum")
LIVE_PREFIX = NAME_PREFIX + "live-"
#: the tag that marks a machine of one live run, where the provider has tags
RUN_TAG = "trainctl-live"
#: the suite never rents anything dearer than this per hour
MAX_PRICE_PER_HOUR = 1.00
#: every machine's --max-duration; its --max-spend is this time at its price, plus 25%
MACHINE_MINUTES = 30
SPEND_MARGIN = 1.25
#: the idle stop of every machine (the guard check uses its own, shorter one)
IDLE_STOP = "10m"
#: how many offers, cheapest first, a create tries before it gives up
OFFERS_TRIED = 4
#: the profile of Lyceum's CPU VMs (``--instance-type cpu``)
LYCEUM_CPU = "cpu"

Observe = Callable[[str], None]

#: the machines a run rents on each provider (its checks), with the minutes each is
#: expected to bill on the real cloud (boot, the check, the release), for the estimate
CHECKS: dict[str, dict[str, float]] = {
    "aws": {"life": 8, "guard": 8, "snap": 10},
    "runpod": {"life": 5, "guard": 5, "spot": 4, "community": 4},
    "lyceum": {"life": 5, "guard": 5, "ready": 5},
}

#: why the modules of the suite are skipped when it was not asked for
NOT_REQUESTED = (
    "live cloud suite: rents real machines, so it runs only when asked: "
    'make live PROVIDERS="aws runpod lyceum" (see README, Live smoke tests)'
)


def require_live() -> None:
    """Skip the calling module, with the reason, unless the live suite was asked for."""
    if CURRENT is None:
        import pytest

        pytest.skip(NOT_REQUESTED, allow_module_level=True)


@dataclass(frozen=True)
class Timing:
    """How long the checks wait: a real machine takes minutes, a stand-in seconds."""

    #: the guard check's idle stop
    guard_idle: str
    #: how long a release (by the guard, or by terminate) may take to show in the API
    released_within: float
    #: how long a new Lyceum VM is watched after create for a change of state
    watch_states: float
    #: between two looks at a machine's state
    poll: float


LIVE_TIMING = Timing(guard_idle="2m", released_within=600.0, watch_states=120.0, poll=10.0)
FAKE_TIMING = Timing(guard_idle="3s", released_within=60.0, watch_states=1.0, poll=0.2)


class Refused(Exception):
    """The suite will not rent this: no price, or above its caps."""


def caps(price_per_hour: float | None, minutes: float = MACHINE_MINUTES) -> GuardRequest:
    """The hard limits of one machine rented at ``price_per_hour``."""
    if price_per_hour is None:
        raise Refused("no hourly price is known, so no --max-spend can be set")
    if price_per_hour > MAX_PRICE_PER_HOUR:
        raise Refused(
            f"${price_per_hour:.4f}/h is above the suite's ${MAX_PRICE_PER_HOUR:.2f}/h ceiling"
        )
    spend = math.ceil(price_per_hour * minutes / 60 * SPEND_MARGIN * 100) / 100
    return GuardRequest.parse(
        idle_stop=IDLE_STOP, max_duration=f"{minutes:g}m", max_spend=f"{max(spend, 0.01):.2f}"
    )


def ceiling(machines: int, minutes: float = MACHINE_MINUTES) -> float:
    """The most ``machines`` can cost under the suite's caps."""
    return machines * math.ceil(MAX_PRICE_PER_HOUR * minutes / 60 * SPEND_MARGIN * 100) / 100


def has_tags(provider: str) -> bool:
    return Capability.TAGS in registry.get_class(provider).capabilities


def live_name(provider: str, run_id: str, check: str) -> str:
    """The trainctl name that makes the provider-level name
    ``trainctl-live-<run>-<check>``: providers without tags add ``trainctl-`` to it."""
    base = f"live-{run_id}-{check}"
    return NAME_PREFIX + base if has_tags(provider) else base


def provider_name(name: str) -> str:
    """The name a machine of trainctl name ``name`` carries at its provider."""
    return name if name.startswith(NAME_PREFIX) else NAME_PREFIX + name


def candidates(provider: str, *, spot: bool = False, cloud: str | None = None) -> list[dict]:
    """Create options for the cheapest offers the check can run on, cheapest first: a
    CPU machine where trainctl rents one (Lyceum), else the cheapest GPU offers of
    trainctl's catalog at or below the suite's ceiling."""
    if provider == "lyceum":
        return [{"instance_type": LYCEUM_CPU}]
    cls = registry.get_class(provider)
    found = []
    for offer in catalog.offers(provider):
        if cloud and offer.cloud != cloud:
            continue
        if offer.on_demand is None or offer.on_demand > MAX_PRICE_PER_HOUR:
            continue
        gpu = GpuSpec(offer.gpu, 1 if offer.per_gpu else offer.gpu_count)
        options = cls.options_for_offer(
            CreateResourceOptions(spot=spot), offer_id=offer.offer_id, gpu=gpu, cloud=offer.cloud
        )
        found.append({"instance_type": options.instance_type, "gpu": options.gpu,
                      "extra": dict(options.extra)})  # fmt: skip
    return found[:OFFERS_TRIED]


@dataclass
class Made:
    """One machine the run rented, as the report lists it."""

    provider: str
    check: str
    name: str
    id: str
    what: str
    price_per_hour: float | None
    guards: dict[str, Any]
    spot: bool
    created_at: float


@dataclass
class SweepResult:
    released: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: the run's machines the providers still list as not released, after the sweep
    left: list[str] = field(default_factory=list)


class LiveRun:
    """One run of the live suite: its id, its trainctl home, what it made."""

    def __init__(
        self, run_id: str, providers: list[str], directory: Path | None, *, fake: bool = False
    ) -> None:
        """``directory`` receives ``report.json`` (None: no report)."""
        self.run_id = run_id
        self.providers = providers
        self.directory = directory
        self.fake = fake
        self.timing = FAKE_TIMING if fake else LIVE_TIMING
        self.made: list[Made] = []
        #: the --max-spend of each machine asked for, by trainctl name (set before the
        #: create, so that one interrupted midway is counted too)
        self.spend_caps: dict[str, float] = {}
        self.observed: dict[str, list[str]] = {}
        self.sweep_result: SweepResult | None = None
        self.tc = Trainctl(warn=lambda line: print(f"warning: {line}", file=sys.stderr))

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(3)

    @property
    def prefix(self) -> str:
        """The provider-level names of the run's machines (of every run, without an id)."""
        return f"{LIVE_PREFIX}{self.run_id}-" if self.run_id else LIVE_PREFIX

    def provider(self, name: str) -> TrainingProvider:
        return self.tc.provider(name)

    # --- renting ---------------------------------------------------------------------

    def create(
        self,
        provider: str,
        check: str,
        *,
        spot: bool = False,
        cloud: str | None = None,
        idle_stop: str | None = None,
        observe: Observe = print,
        progress: Callable[[str], None] | None = None,
    ) -> ResourceRecord:
        """Rent the cheapest machine ``check`` can run on, under the suite's caps; an
        offer without capacity, or that this account or region cannot rent, gives way
        to the next one."""
        p = self.provider(provider)
        tried: list[str] = []
        for candidate in candidates(provider, spot=spot, cloud=cloud):
            options = CreateResourceOptions(
                name=live_name(provider, self.run_id, check),
                spot=spot,
                instance_type=candidate.get("instance_type"),
                gpu=candidate.get("gpu"),
                extra=candidate.get("extra") or {},
                tags={RUN_TAG: self.run_id} if has_tags(provider) else {},
            )
            what = options.instance_type or str(options.gpu)
            try:
                quote = p.quote(p.plan(options), spot=spot)
                guards = caps(quote.hourly)
            except (BadInput, NotFound, NoCapacity, Refused) as e:
                tried.append(f"{what}: {e}")
                continue
            if idle_stop:
                guards.idle_stop = GuardRequest.parse(idle_stop=idle_stop).idle_stop
            options.guards = guards
            self.spend_caps[options.name] = float(guards.max_spend)
            if not spot:
                options.max_price = MAX_PRICE_PER_HOUR
            observe(f"renting {quote.what} at ${quote.hourly:.4f}/h on {provider} ({check})")
            started = time.time()
            try:
                record = self.tc.create(provider, options, progress=progress)
            except NoCapacity as e:
                tried.append(f"{what}: {e}")
                continue
            finally:
                self.write_report()
            observe(f"{record.name} ({record.id}) usable after {time.time() - started:.0f} s")
            self.made.append(
                Made(provider, check, record.name, record.id, quote.what,
                     record.price_per_hour, record.guards or {}, spot, started)
            )  # fmt: skip
            self.write_report()
            return record
        raise Refused(f"no offer on {provider} could be rented for {check}: " + "; ".join(tried))

    def release(self, record: ResourceRecord, observe: Observe) -> None:
        """Terminate a machine as a user does, and see that it no longer bills."""
        self.tc.terminate(record.name)
        observe(f"terminated: {self.gone(record.provider, record.id)}")

    def gone(self, provider: str, resource_id: str) -> str:
        """Wait until the provider's API says the machine is released (gone, or
        terminated); what it said. Fails when it still bills after the wait."""
        p = self.provider(provider)
        deadline = time.monotonic() + self.timing.released_within
        while True:
            try:
                st = p.get_resource_status(resource_id)
            except NotFound:
                return "the API no longer knows it"
            if st.state is ResourceState.TERMINATED:
                return f"the API says it is {st.raw_state or st.state.value}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{provider} {resource_id} is still {st.raw_state or st.state.value} "
                    f"{self.timing.released_within:g} s after it was released"
                )
            time.sleep(self.timing.poll)

    # --- the sweep -------------------------------------------------------------------

    def owned(self, st: ResourceStatus) -> bool:
        """Whether a listed machine is one of this run's: its tag, or its name."""
        if RUN_TAG in st.tags and st.tags[RUN_TAG] == (self.run_id or st.tags[RUN_TAG]):
            return True
        return provider_name(st.name or "").startswith(self.prefix)

    def sweep(self) -> SweepResult:
        """Release every machine of this run, whatever the tests did: the records of
        the run's trainctl home, then whatever each provider lists under the run's
        tag or name; revoke the guard credentials trainctl handed out; then list
        again and report what is still there."""
        result = SweepResult()
        with held_signals():
            for record in self.tc.store.resources():
                if provider_name(record.name).startswith(self.prefix):
                    self._release(record.id, record.name, result)
            for provider in self.providers:
                for st in self._listed(provider, result):
                    if st.state is not ResourceState.TERMINATED:
                        self._release(st.id, st.name or st.id, result, located=st)
            for machine in self.tc.store.machines():
                if not provider_name(machine.name).startswith(self.prefix):
                    continue
                p = self.provider(machine.provider)
                # only a provider that hands its guard a credential of its own revokes
                if isinstance(p, SelfRelease) and (
                    type(p).forget_release is not SelfRelease.forget_release
                ):
                    try:
                        p.forget_release(machine.id)
                        result.revoked.append(machine.name)
                    except Exception as e:  # noqa: BLE001 - the sweep goes on, and reports it
                        result.errors.append(f"revoke {machine.name}: {e}")
            for provider in self.providers:
                for st in self._listed(provider, result):
                    if st.state not in (ResourceState.TERMINATED, ResourceState.TERMINATING):
                        result.left.append(f"{provider} {st.id} {st.name} ({st.raw_state})")
        self.sweep_result = result
        self.write_report()
        return result

    def _listed(self, provider: str, result: SweepResult) -> list[ResourceStatus]:
        try:
            return [s for s in self.provider(provider).list_resources() if self.owned(s)]
        except Exception as e:  # noqa: BLE001 - the sweep goes on, and reports it
            result.errors.append(f"list {provider}: {e}")
            result.left.append(f"{provider}: could not be listed ({e})")
            return []

    def _release(
        self, ref: str, name: str, result: SweepResult, located: ResourceStatus | None = None
    ) -> None:
        try:
            self.tc.terminate(ref, located=(None, located) if located else None)
            result.released.append(name)
        except NotFound:
            pass
        except Exception as e:  # noqa: BLE001 - the sweep goes on, and reports it
            result.errors.append(f"terminate {name}: {e}")

    # --- what it cost ----------------------------------------------------------------

    def spend(self) -> list[dict[str, Any]]:
        """Each machine of the run as trainctl's history keeps it: the price it was
        rented at, how long it billed, and that cost."""
        rows = []
        for m in self.tc.store.machines():
            if provider_name(m.name).startswith(self.prefix):
                rows.append({
                    "provider": m.provider, "name": m.name, "id": m.id,
                    "instance_type": m.instance_type, "price_per_hour": m.price_per_hour,
                    "minutes": round(m.hours() * 60, 2), "cost": m.cost(),
                })  # fmt: skip
        return sorted(rows, key=lambda r: (r["provider"], r["name"]))

    def spend_lines(self) -> list[str]:
        rows = self.spend()
        lines = []
        for r in rows:
            price = f"${r['price_per_hour']:.4f}/h" if r["price_per_hour"] is not None else "?"
            cost = f"${r['cost']:.4f}" if r["cost"] is not None else "unknown"
            lines.append(
                f"{r['provider']:<7} {provider_name(r['name'])}  {r['instance_type'] or '-'}  "
                f"{price}  {r['minutes']:.2f} min  {cost}"
            )
        for provider in sorted({r["provider"] for r in rows}):
            total = sum(r["cost"] or 0.0 for r in rows if r["provider"] == provider)
            lines.append(f"{provider:<7} total ${total:.4f}")
        total = sum(r["cost"] or 0.0 for r in rows)
        capped = sum(self.spend_caps.get(r["name"], 0.0) for r in rows)
        lines.append(f"spent ${total:.4f} on {len(rows)} machine(s) (caps allowed ${capped:.2f})")
        return lines

    def write_report(self) -> None:
        """``report.json`` in the run's directory: what was made, observed, swept and
        spent (written as the run goes, so a killed run leaves it too)."""
        if self.directory is None:
            return
        report = {
            "run_id": self.run_id,
            "providers": self.providers,
            "fake": self.fake,
            "made": [asdict(m) for m in self.made],
            "observed": self.observed,
            "sweep": asdict(self.sweep_result) if self.sweep_result else None,
            "spend": self.spend(),
        }
        path = self.directory / "report.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, default=str))
        os.replace(tmp, path)


#: the run under way (set by the suite's conftest when ``--live`` is given)
CURRENT: LiveRun | None = None


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done, saying so: an
    interrupted sweep would leave machines billing."""

    def hold(signum: int, _frame: object) -> None:
        print(
            f"live: {signal.Signals(signum).name} held: the sweep is releasing the run's "
            "machines and goes on until it is done",
            file=sys.stderr,
            flush=True,
        )

    with interrupts._handlers(hold):  # trainctl's own install-and-restore of them
        yield

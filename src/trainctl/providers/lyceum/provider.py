"""The ``lyceum`` provider: Lyceum Cloud VMs through its HTTP API, reached by SSH.

Every request goes through ``client.LyceumClient``; this module decides what to
rent and reads what Lyceum says about a VM. Lyceum VMs have no tags, so trainctl
tells its own apart by the ``trainctl-`` prefix of their display name: a VM
without it is ``NotFound`` to every call, and that name is also how a create whose
answer was lost is found again instead of being repeated.

A new VM is usable once it has an ``ip_address`` (``host`` or ``host:port``) and
its status is ``ready``, or ``running`` and an SSH login succeeds: lyceum-cli's own
wait accepts ``running``, and a VM may never say ``ready``. The login user is
``lyceum``. Deleting a VM detaches its block volumes, which live on and keep
billing: ``terminate`` says so. A create that fails deletes the volume it made
along with the VM.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from ...capabilities import Capability
from ...catalog import gpus
from ...errors import BadInput, NoCapacity, NotFound, OperationFailed, TrainctlError
from ...provider import (
    NAME_PREFIX,
    TAG_MANAGED,
    TAG_NAME,
    VOLUME_FLAG,
    CheckResult,
    Quote,
    Release,
    SelfRelease,
    TrainingProvider,
)
from ...remote.base import Progress, Remote
from ...remote.ssh import Endpoint, SSHRemote
from ...sshkeys import public_key
from ...types import CreateResourceOptions, GpuSpec, ResourceState, ResourceStatus
from ...waiting import Seen, wait_ready
from . import settings
from .answers import KINDS, Availability, Variant, is_int, malformed, number, objects, text
from .answers import timestamp as parse_time
from .client import CREATE_TIMEOUT, CREATE_TIMEOUT_VOLUME, Credentials, LyceumClient
from .client import credentials_present as _credentials_present
from .states import STATES

log = logging.getLogger(__name__)

LOGIN_USER = "lyceum"
FAILED = frozenset({"failed", "error", "terminated"})


@dataclass(frozen=True)
class LyceumPlan:
    """What a create rents: one hardware profile (its offers, on-demand and spot),
    the GPU count asked for (None: the smallest offered), the VM's display name and
    the size of a new volume."""

    profile: str  # lower-case
    variants: tuple[Variant, ...]
    gpu_count: int | None
    display: str
    volume_gb: int | None


def split_address(address: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port); port 22 by default."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    if port and not port.isdigit():
        raise OperationFailed(f"Lyceum reported an address trainctl cannot read: {address!r}")
    return host, int(port) if port else 22


#: days a guard's API key lives when its machine has no deadline
KEY_DAYS = 30


def _guard_key(vm_id: str) -> str:
    return f"trainctl-guard-{vm_id}"


class LyceumProvider(SelfRelease, TrainingProvider):
    name = "lyceum"
    capabilities = frozenset(
        {
            Capability.CREATE,
            Capability.SPOT,
            Capability.GPU_SELECTION,
            Capability.INSTANCE_TYPE,
            Capability.DOWNLOAD,
        }
    )
    states = STATES
    offers = "trainctl.providers.lyceum.offers:fetch"  # Lyceum publishes no price list
    flags = (VOLUME_FLAG,)

    @classmethod
    def options_for_offer(
        cls, options: CreateResourceOptions, *, offer_id: str, gpu: GpuSpec, cloud: str = ""
    ) -> CreateResourceOptions:
        """A Lyceum offer is a hardware profile; the GPU count goes with it."""
        return replace(options, instance_type=offer_id, gpu=gpu)

    def __init__(
        self,
        *,
        poll_interval: float | None = None,
        ready_timeout: float | None = None,
        create_timeout: float | None = None,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``poll_interval`` and ``ready_timeout`` win over ``[providers.lyceum]``;
        ``create_timeout`` replaces api.md's create timeouts (150 s, 300 s with a
        volume); ``backoff`` and ``sleep`` pace retries and polls (tests shorten them)."""
        self.settings = settings.load(poll_interval=poll_interval, ready_timeout=ready_timeout)
        self.create_timeout = create_timeout
        self.client = LyceumClient(self.settings, backoff=backoff, sleep=sleep)
        self._sleep = sleep
        self._availability: Availability | None = None

    def __repr__(self) -> str:
        return "LyceumProvider()"

    @classmethod
    def credentials_present(cls) -> bool:
        return _credentials_present()

    @property
    def credentials(self) -> Credentials:
        return self.client.credentials

    def check(self) -> CheckResult:
        try:
            creds = self.credentials
            org = self.client.org()
        except TrainctlError as e:
            return CheckResult(self.name, False, str(e))
        return CheckResult(
            self.name,
            True,
            f"org {org.get('slug')} ({org.get('name')}) at {creds.base_url}, "
            f"key from {creds.source}",
        )

    # -- hardware and prices ----------------------------------------------------

    def availability(self) -> Availability:
        """What Lyceum offers (asked once per provider)."""
        if self._availability is None:
            self._availability = self.client.availability()
        return self._availability

    def plan(self, options: CreateResourceOptions) -> LyceumPlan:
        """The hardware profile for ``options``: ``--gpu A100:2`` (or a raw hardware
        profile as ``instance_type``)."""
        wanted = (options.instance_type or (options.gpu.name if options.gpu else "")).strip()
        offered = self.availability()
        if not wanted:
            raise BadInput(
                "choose the Lyceum hardware with --gpu, e.g. --gpu A100:1",
                hint=f"offered: {offered.describe()}",
            )
        profile = wanted.lower()
        same = [v for v in offered.variants if v.profile.lower() == profile]
        if not same and (model := gpus.canonical(wanted)):
            # another spelling of the same model: "H100 SXM", "gpu.h100", ...
            same = [v for v in offered.variants if gpus.canonical(v.profile) == model]
        if not same:
            if profile in self.client.hardware_profiles():
                raise NoCapacity(
                    f"Lyceum Cloud has no {profile} VM available right now",
                    hint=f"offered: {offered.describe()}",
                )
            raise BadInput(
                f"Lyceum Cloud has no hardware profile {wanted!r}",
                hint=f"offered: {offered.describe()}",
            )
        label = options.name or secrets.token_hex(4)
        return LyceumPlan(
            profile=profile,
            variants=tuple(same),
            gpu_count=options.gpu.count if options.gpu else None,
            display=NAME_PREFIX + label,  # always prefixed, so the name reads back unchanged
            volume_gb=options.extra.get("volume_gb"),
        )

    def _offer(self, plan: LyceumPlan, *, spot: bool) -> tuple[Variant, int]:
        """The offer of ``plan`` as spot or on-demand, and its GPU count; without
        one, ``NoCapacity``."""
        kind = KINDS[spot]
        for v in plan.variants:
            if v.instance_type != kind or not v.gpu_counts:
                continue
            count = plan.gpu_count if plan.gpu_count is not None else min(v.gpu_counts)
            if count in v.gpu_counts:
                return v, count
        counts = "any GPU count" if plan.gpu_count is None else f"{plan.gpu_count} GPU(s)"
        raise NoCapacity(
            f"Lyceum Cloud offers no {kind} {plan.profile} VM with {counts} right now",
            hint=f"offered: {self.availability().describe()}",
        )

    def quote(self, plan: LyceumPlan, *, spot: bool) -> Quote:
        v, count = self._offer(plan, spot=spot)
        what = f"{count} x {v.profile}" if count else v.profile
        return Quote(v.hourly(count), what + " on Lyceum")

    # -- VMs --------------------------------------------------------------------

    def launch(
        self, plan: LyceumPlan, *, spot: bool, progress: Progress | None = None
    ) -> ResourceStatus:
        variant, count = self._offer(plan, spot=spot)
        display = plan.display
        taken = [vm for vm in self.client.vms() if vm.get("display_name") == display]
        if taken:
            raise BadInput(
                f"a Lyceum VM named {display} already exists ({taken[0].get('vm_id')})",
                hint="choose another --name, or terminate that one",
            )
        body: dict[str, Any] = {
            "user_public_key": public_key(),
            "hardware_profile": variant.profile,
            "instance_type": variant.instance_type,
            "display_name": display,
        }
        if count > 0:
            body["instance_specs"] = {"gpu_count": count}
        if plan.volume_gb is not None:
            body["new_volume"] = {"size_gb": plan.volume_gb}
        timeout = self.create_timeout or (
            CREATE_TIMEOUT_VOLUME if plan.volume_gb else CREATE_TIMEOUT
        )
        if progress:
            progress(
                f"creating Lyceum VM {display}: {count} x {variant.profile} "
                f"{variant.instance_type} at ${variant.hourly(count)}/h"
            )
        made = self.client.create_vm(body, display=display, timeout=timeout)
        vm_id = str(made["vm_id"])
        if progress and made.get("volume_notice"):
            progress(str(made["volume_notice"]))

        probed: set[str] = set()

        def poll() -> Polled:
            raw = self.client.vm(vm_id)
            polled = Polled(raw, text(raw, "status", f"VM {vm_id}") or "unknown")
            polled.address = text(raw, "ip_address", f"VM {vm_id}")
            if polled.status == "running" and polled.address:
                # lyceum-cli takes `running` as up; trainctl takes it once it can log in
                polled.login_error = _ssh(self._status(vm_id, raw)).probe_login(probed)
            return polled

        raw = wait_ready(
            f"Lyceum VM {vm_id}",
            poll,
            Polled.seen,
            release=lambda: self._release(vm_id, delete_volumes=plan.volume_gb is not None),
            resource_id=vm_id,
            timeout=self.settings.ready_timeout,
            interval=self.settings.poll_interval,
            progress=progress,
            sleep=self._sleep,
        )
        st = self._status(vm_id, raw.raw)
        if not probed:
            # the address may have served another machine before: its old host key must go
            _tidy_ssh(st, close=False)
        return st

    def _status(self, vm_id: str, raw: dict[str, Any]) -> ResourceStatus:
        """A VM of trainctl's as a ``ResourceStatus`` (see ``_require_ours``)."""
        what = f"VM {vm_id}"
        status = text(raw, "status", what, required=True)
        state = self.state_of(status)
        display = text(raw, "display_name", what)
        profile = text(raw, "hardware_profile", what)
        itype = text(raw, "instance_type", what)
        count = raw.get("gpu_count")
        if count is not None and not is_int(count):
            raise malformed(what, "gpu_count", count)
        gpus = count or 0
        address = text(raw, "ip_address", what)
        volumes = objects(raw, "volumes", what) if raw.get("volumes") is not None else []
        billed = number(raw, "croesus_billed", what)
        uptime = number(raw, "uptime_seconds", what)
        price = self.availability().price(profile, itype)
        host = port = user = None
        if address and state is not ResourceState.TERMINATED:
            host, port = split_address(address)
            # api.md: the login user is `lyceum`; a gateway may name another
            user = text(raw, "ssh_user", what) or LOGIN_USER
        name = display.removeprefix(NAME_PREFIX)
        details: dict[str, Any] = {
            "display_name": display or None,
            "billed_usd": billed,
            "uptime_seconds": uptime,
        }
        if volumes:
            details["volumes"] = volumes
        return ResourceStatus(
            id=vm_id,
            provider=self.name,
            state=state,
            name=name,
            reason=f"Lyceum reports the VM as {status}" if state is ResourceState.ERROR else None,
            instance_type=profile or None,
            gpu=profile.upper() if gpus else None,
            gpu_count=gpus,
            launch_time=parse_time(raw.get("created_at")),
            cost_per_hour=None if price is None else round(price * max(gpus, 1), 4),
            spot=itype == "spot",
            public_ip=host,
            ssh_host=host,
            ssh_port=port,
            ssh_user=user,
            tags={TAG_MANAGED: "true", TAG_NAME: name},
            raw_state=status or None,
            details=details,
        )

    def _describe(self, vm_id: str) -> dict[str, Any]:
        """The VM's status answer; ``NotFound`` when Lyceum does not know it or it
        is not trainctl's."""
        return _require_ours(vm_id, self.client.vm(vm_id))

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._status(resource_id, self._describe(resource_id))

    def list_resources(self) -> list[ResourceStatus]:
        return [
            self._status(str(vm["vm_id"]), vm)
            for vm in self.client.vms()
            if text(vm, "display_name", "the VM list").startswith(NAME_PREFIX)
        ]

    def _release(self, vm_id: str, *, delete_volumes: bool) -> None:
        """Delete a VM whose create failed and, with ``delete_volumes``, the volumes it
        leaves behind (the create made them: trainctl attaches no existing volume), so
        nothing keeps billing. The error of a failed volume delete names them."""
        deleted = self.client.delete_vm(vm_id)
        if deleted.unreadable is not None:
            if delete_volumes:
                raise OperationFailed(
                    f"Lyceum VM {vm_id} was deleted, but its answer does not say which "
                    "volume it left behind, billing: delete it in the Lyceum dashboard"
                )
            log.warning("Lyceum VM %s: deleted, but %s", vm_id, deleted.unreadable)
        if not delete_volumes:
            return
        left: list[str] = []
        errors: list[str] = []
        for vol in deleted.detached:
            vol_id = str(vol.get("volume_id") or "")
            try:
                if not vol_id or "/" in vol_id:
                    raise OperationFailed(f"Lyceum reported a volume without a usable id: {vol}")
                self.client.delete_volume(vol_id)
            except TrainctlError as e:
                left.append(f"{vol_id or '?'} ({vol.get('size_gb')} GB)")
                errors.append(e.message)
        if left:
            raise OperationFailed(
                f"the VM was deleted, but not its volume(s) {', '.join(left)}, which keep "
                f"billing: delete them in the Lyceum dashboard ({'; '.join(errors)})"
            )

    def guard_release(self, status: ResourceStatus, action: str, *, until: float | None) -> Release:
        """Lyceum has no stop: the guard deletes the VM (``DELETE /vms/{id}``) with a
        personal API key made for this VM alone. It expires an hour after the
        deadline (at least a day from now), or after KEY_DAYS without one, and is
        revoked when trainctl terminates the VM."""
        now = datetime.now(timezone.utc)
        if until is not None:
            expires = max(
                datetime.fromtimestamp(until, timezone.utc) + timedelta(hours=1),
                now + timedelta(days=1),
            )
        else:
            expires = now + timedelta(days=KEY_DAYS)
        secret = self.client.create_api_key(_guard_key(status.id), expires)
        url = f"{self.credentials.base_url}/api/v2/external/vms/{quote(status.id, safe='')}"
        request = {"kind": "http", "method": "DELETE", "url": url, "body": None, "gone": [404]}
        return Release("terminate", request, secret=secret)

    def forget_release(self, resource_id: str) -> None:
        self.client.revoke_api_key(_guard_key(resource_id))  # every key of that name

    def terminate(self, resource_id: str) -> ResourceStatus:
        try:
            raw = self.client.vm(resource_id)
        except NotFound:
            return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED)
        _require_ours(resource_id, raw)
        if self.state_of(raw.get("status")) is ResourceState.TERMINATED:
            return self._status(resource_id, raw)
        before = self._status(resource_id, raw)
        deleted = self.client.delete_vm(resource_id)
        st = self._status(resource_id, {**raw, "status": "terminated", "ip_address": None})
        if before.ssh_host:
            _tidy_ssh(before, close=True, into=st)  # the next machine there has another key
        if deleted.unreadable is not None:
            st.reason = (
                "Lyceum's answer to the delete cannot be read, so volumes it may have "
                "detached (they keep billing) are unknown: check the Lyceum dashboard"
            )
            st.warnings.append(f"Lyceum VM {resource_id}: deleted, but {deleted.unreadable}")
        elif deleted.detached:
            sizes = ", ".join(
                f"{v.get('volume_id')} ({v.get('size_gb')} GB)" for v in deleted.detached
            )
            st.reason = (
                f"volumes outlive the VM and keep billing: {sizes}; "
                "delete them in the Lyceum dashboard when their data is no longer needed"
            )
            st.details["detached_volumes"] = list(deleted.detached)
            st.warnings.append(f"Lyceum VM {resource_id}: {st.reason}")
        return st

    def connect(self, resource_id: str) -> Remote:
        st = self.get_resource_status(resource_id)
        if st.state is ResourceState.TERMINATED:
            raise NotFound(f"Lyceum VM {resource_id} is terminated")
        if st.state is not ResourceState.RUNNING or not st.ssh_host:
            raise OperationFailed(
                f"Lyceum VM {resource_id} is {st.raw_state or 'unknown'}, not ready for SSH",
                hint=f"check it with `trainctl status {resource_id}`",
            )
        return _ssh(st)

    def connect_to(self, status: ResourceStatus) -> Remote:
        """A running VM is reached at the SSH address its status holds."""
        if status.state is ResourceState.RUNNING and status.ssh_host:
            return _ssh(status)
        return self.connect(status.id)


@dataclass
class Polled:
    """One poll of a new VM: what Lyceum says and, for a ``running`` VM with an
    address, how an SSH login went (``login_error`` is ``None`` once it worked)."""

    raw: dict[str, Any]
    status: str
    address: str = ""
    login_error: str | None = "not tried"

    def seen(self) -> Seen:
        status, address = self.status, self.address
        if status in FAILED:
            return Seen(status, failure=f"Lyceum reports the VM as {status}")
        if status == "ready" and address:
            return Seen(f"ready at {address}", ready=True)
        if status == "running" and address:
            if self.login_error is None:
                return Seen(f"running at {address}, SSH login works", ready=True)
            return Seen(f"running at {address}, waiting for SSH ({self.login_error})")
        return Seen(f"{status}, waiting for an address" if status == "ready" else status)


def _require_ours(vm_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    """``raw``, when its display name says trainctl made the VM; else ``NotFound``:
    trainctl neither shows nor touches a VM it did not make."""
    display = text(raw, "display_name", f"VM {vm_id}")
    if not display.startswith(NAME_PREFIX):
        raise NotFound(
            f"Lyceum VM {vm_id} ({display or 'no name'}) was not created by trainctl; "
            "trainctl leaves it alone"
        )
    return raw


def _tidy_ssh(st: ResourceStatus, *, close: bool, into: ResourceStatus | None = None) -> None:
    """Forget the host key at the VM's address (and end the shared connection to it).
    The VM itself is settled by then, so a failure here is only a warning of the
    status returned (``into``, else ``st``)."""
    remote = _ssh(st)
    try:
        if close:
            remote.close()
        remote.forget_host_key()
    except TrainctlError as e:
        (into or st).warnings.append(f"Lyceum VM {st.id}: could not tidy up SSH state: {e}")


def _ssh(st: ResourceStatus) -> SSHRemote:
    """The VM as an SSH remote, reached with trainctl's own key."""
    assert st.ssh_host, st
    return SSHRemote(Endpoint(st.ssh_host, st.ssh_port, st.ssh_user))

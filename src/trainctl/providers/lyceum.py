"""The ``lyceum`` provider: Lyceum Cloud VMs through its HTTP API, reached by SSH.

The API is the one Lyceum's own command-line client speaks (see
``reference/lyceum/api.md``): ``/api/v2/external/vms/...`` with a Bearer key and,
when an org is chosen, ``X-Org-Slug``. Lyceum VMs have no tags, so trainctl tells
its own apart by the ``trainctl-`` prefix of their display name; that name is also
how a create whose answer was lost is found again instead of being repeated.

A VM is usable once its status is ``ready`` *and* it has an ``ip_address``
(``host`` or ``host:port``); Lyceum reports ``running`` while it is still being set
up. The login user is ``lyceum``. Deleting a VM detaches its block volumes, which
live on and keep billing: ``terminate`` says so.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capabilities import Capability
from ..catalog import gpus
from ..errors import (
    BadInput,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    TrainctlError,
)
from ..home import provider_config
from ..provider import NAME_PREFIX, TAG_MANAGED, TAG_NAME, CheckResult, TrainingProvider
from ..remote.base import Progress, Remote
from ..states import normalize_state
from ..types import CostEstimate, CreateResourceOptions, GpuSpec, ResourceState, ResourceStatus

if TYPE_CHECKING:
    from ..httpapi import ApiError, JsonApi
    from ..remote.ssh import SSHRemote

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.lyceum.technology"
API = "/api/v2/external"
LOGIN_USER = "lyceum"
#: api.md: VM create may take 150 s, 300 s when block storage is involved
CREATE_TIMEOUT = 150.0
CREATE_TIMEOUT_VOLUME = 300.0
#: tries per request: with the backoff, rides out up to a minute of 429 or 5xx answers
#: (longer when the server asks for it with Retry-After)
MAX_ATTEMPTS = 8
#: extra options ``create`` understands (``CreateResourceOptions.extra``)
CREDENTIALS_HINT = (
    "set LYCEUM_API_KEY to an API key (lk_...) from the Lyceum dashboard, "
    "or run `lyceum auth login` to refresh ~/.lyceum/config.json"
)
FAILED = frozenset({"failed", "error", "terminated"})


def config_file() -> Path:
    """The file Lyceum's own client writes (``lyceum auth login``)."""
    return Path.home() / ".lyceum" / "config.json"


def read_config_file() -> dict[str, Any]:
    path = config_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CredentialsError(
            f"cannot read {path}: {type(e).__name__}", hint=CREDENTIALS_HINT
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} does not hold a JSON object", hint=CREDENTIALS_HINT)
    return data


@dataclass(frozen=True)
class Credentials:
    """Where to send requests and as whom; ``repr`` never shows the key."""

    api_key: str = field(repr=False)
    base_url: str
    org: str | None
    source: str  # where the key came from, for messages

    @classmethod
    def load(cls) -> Credentials:
        """``LYCEUM_API_KEY``, else the key in ``~/.lyceum/config.json``; the org from
        ``LYCEUM_ORG``, else that file; the URL from ``TRAINCTL_LYCEUM_API_URL``, else
        that file's ``base_url``."""
        env_key = os.environ.get("LYCEUM_API_KEY", "").strip()
        cfg = read_config_file()
        key = env_key or str(cfg.get("api_key") or "").strip()
        if not key:
            raise CredentialsError("no Lyceum Cloud API key found", hint=CREDENTIALS_HINT)
        base = (
            os.environ.get("TRAINCTL_LYCEUM_API_URL", "").strip()
            or str(cfg.get("base_url") or "").strip()
            or DEFAULT_URL
        )
        org = os.environ.get("LYCEUM_ORG", "").strip() or cfg.get("active_org_slug") or None
        source = "LYCEUM_API_KEY" if env_key else str(config_file())
        return cls(key, base.rstrip("/"), org, source)


@dataclass(frozen=True)
class Variant:
    """One offer of ``/vms/availability``; ``price_per_hour`` is per GPU."""

    profile: str
    instance_type: str  # on-demand | spot
    price_per_hour: float
    gpu_counts: tuple[int, ...]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Variant:
        return cls(
            str(raw.get("hardware_profile", "")),
            str(raw.get("instance_type", "")),
            float(raw.get("price_per_hour") or 0.0),
            tuple(int(n) for n in raw.get("available_gpus_per_instance") or ()),
        )

    def hourly(self, gpus: int) -> float:
        return round(self.price_per_hour * max(gpus, 1), 4)

    def describe(self) -> str:
        if not any(self.gpu_counts):
            return f"{self.profile} {self.instance_type} (no GPU, ${self.price_per_hour}/h)"
        counts = "/".join(str(n) for n in self.gpu_counts)
        return f"{self.profile} {self.instance_type} ({counts} GPUs, ${self.price_per_hour}/GPU-h)"


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


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _translate(e: ApiError) -> TrainctlError:
    """An API error status as the trainctl error it means (402: no credit)."""
    if e.status == 402:
        return OperationFailed(
            "Lyceum Cloud refused: the account has not enough credit"
            + (f" ({e.detail})" if e.detail else ""),
            hint="add credit in the Lyceum dashboard, then try again",
        )
    if e.status == 404:
        return NotFound(e.message)
    return e


def _seconds(conf: dict[str, Any], key: str, default: float) -> float:
    value = conf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadInput(f"[providers.lyceum] {key} must be a number of seconds, not {value!r}")
    return float(value)


class LyceumProvider(TrainingProvider):
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
    extra_options = frozenset({"volume_gb"})

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
        """Timings default to ``[providers.lyceum]`` in the config file (``poll_interval``,
        ``ready_timeout``), then to 10 s and 15 min."""
        conf = provider_config(self.name)
        self.poll_interval = (
            poll_interval if poll_interval is not None else _seconds(conf, "poll_interval", 10.0)
        )
        self.ready_timeout = (
            ready_timeout if ready_timeout is not None else _seconds(conf, "ready_timeout", 900.0)
        )
        self.create_timeout = create_timeout
        self.backoff = backoff
        self._sleep = sleep
        self._api: JsonApi | None = None
        self._credentials: Credentials | None = None
        self._availability: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return "LyceumProvider()"

    # -- plumbing ---------------------------------------------------------------

    @classmethod
    def credentials_present(cls) -> bool:
        if os.environ.get("LYCEUM_API_KEY", "").strip():
            return True
        try:
            return bool(read_config_file().get("api_key"))
        except CredentialsError:
            return False

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = Credentials.load()
        return self._credentials

    @property
    def api(self) -> JsonApi:
        if self._api is None:
            from ..httpapi import JsonApi

            creds = self.credentials
            self._api = JsonApi(
                creds.base_url,
                creds.api_key,
                service="Lyceum Cloud",
                credentials_hint=CREDENTIALS_HINT,
                headers={"X-Org-Slug": creds.org} if creds.org else None,
                max_attempts=MAX_ATTEMPTS,
                backoff=self.backoff,
                sleep=self._sleep,
            )
        return self._api

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One API request, its error statuses turned into trainctl's errors."""
        from ..httpapi import ApiError

        try:
            return self.api.request(method, API + path, **kw)
        except ApiError as e:
            raise _translate(e) from None

    def check(self) -> CheckResult:
        try:
            creds = self.credentials
            org = self._call("GET", "/user/org")
        except TrainctlError as e:
            return CheckResult(self.name, False, str(e))
        return CheckResult(
            self.name,
            True,
            f"org {org.get('slug')} ({org.get('name')}) at {creds.base_url}, "
            f"key from {creds.source}",
        )

    # -- hardware and prices ----------------------------------------------------

    def availability(self) -> dict[str, Any]:
        """``GET /vms/availability`` as Lyceum answers it (fetched once per provider)."""
        if self._availability is None:
            raw = self._call("GET", "/vms/availability")
            self._availability = raw if isinstance(raw, dict) else {}
        return self._availability

    def variants(self) -> list[Variant]:
        return [
            Variant.parse(v)
            for v in self.availability().get("available_instance_variants") or []
            if isinstance(v, dict)
        ]

    def _offered(self) -> str:
        return "; ".join(v.describe() for v in self.variants()) or "nothing right now"

    def choose(self, options: CreateResourceOptions) -> tuple[Variant, int]:
        """The offer and GPU count for ``options``: ``--gpu A100:2`` (or a raw
        hardware profile as ``instance_type``), spot or on-demand."""
        wanted = (options.instance_type or (options.gpu.name if options.gpu else "")).strip()
        if not wanted:
            raise BadInput(
                "choose the Lyceum hardware with --gpu, e.g. --gpu A100:1",
                hint=f"offered: {self._offered()}",
            )
        profile = wanted.lower()
        same = [v for v in self.variants() if v.profile.lower() == profile]
        if not same and (model := gpus.canonical(wanted)):
            # another spelling of the same model: "H100 SXM", "gpu.h100", ...
            same = [v for v in self.variants() if gpus.canonical(v.profile) == model]
        if not same:
            types = self._call("GET", "/machine-types") or {}
            known = {
                str(t.get("hardware_profile", "")).lower()
                for t in types.get("machine_types") or []
                if isinstance(t, dict)
            }
            if profile in known:
                raise NoCapacity(
                    f"Lyceum Cloud has no {profile} VM available right now",
                    hint=f"offered: {self._offered()}",
                )
            raise BadInput(
                f"Lyceum Cloud has no hardware profile {wanted!r}",
                hint=f"offered: {self._offered()}",
            )
        kinds = ["spot"] if options.spot else ["on-demand"]
        if options.spot and options.spot_fallback:
            kinds.append("on-demand")
        for kind in kinds:
            for v in same:
                if v.instance_type != kind or not v.gpu_counts:
                    continue
                count = options.gpu.count if options.gpu else min(v.gpu_counts)
                if count in v.gpu_counts:
                    self._check_price(v, count, options.max_price)
                    return v, count
        count_text = f"{options.gpu.count} GPU(s)" if options.gpu else "any GPU count"
        raise NoCapacity(
            f"Lyceum Cloud offers no {kinds[0]} {profile} VM with {count_text} right now",
            hint=f"offered: {self._offered()}",
        )

    @staticmethod
    def _check_price(v: Variant, count: int, max_price: float | None) -> None:
        """``--max-price`` caps what spot capacity may cost, as everywhere in trainctl."""
        if max_price is not None and v.instance_type == "spot" and v.hourly(count) > max_price:
            raise NoCapacity(
                f"{count} x {v.profile} {v.instance_type} costs ${v.hourly(count)}/h, "
                f"above the maximum price ${max_price}/h"
            )

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        v, count = self.choose(options)
        return CostEstimate(
            self.name,
            v.hourly(count),
            hours,
            source=f"Lyceum availability: ${v.price_per_hour} per GPU-hour x {max(count, 1)}",
            spot=v.instance_type == "spot",
        )

    def _price(self, profile: str, instance_type: str) -> float | None:
        for v in self.variants():
            if v.profile == profile and v.instance_type == instance_type:
                return v.price_per_hour
        return None

    # -- VMs --------------------------------------------------------------------

    def validate_options(self, options: CreateResourceOptions) -> None:
        super().validate_options(options)
        size = options.extra.get("volume_gb")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise BadInput(f"volume_gb must be a whole number of GB >= 1, not {size!r}")

    def create_resource(
        self, options: CreateResourceOptions, *, progress: Progress | None = None
    ) -> ResourceStatus:
        from ..sshkeys import public_key
        from ..waiting import Seen, wait_ready

        self.validate_options(options)
        variant, count = self.choose(options)
        label = options.name or secrets.token_hex(4)
        display = NAME_PREFIX + label  # always prefixed, so the name reads back unchanged
        taken = [vm for vm in self._list_raw(terminated=False) if vm.get("display_name") == display]
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
        volume_gb = options.extra.get("volume_gb")
        if volume_gb is not None:
            body["new_volume"] = {"size_gb": volume_gb}
        timeout = self.create_timeout or (CREATE_TIMEOUT_VOLUME if volume_gb else CREATE_TIMEOUT)
        if progress:
            progress(
                f"creating Lyceum VM {display}: {count} x {variant.profile} "
                f"{variant.instance_type} at ${variant.hourly(count)}/h"
            )
        made = self._post_create(body, display, timeout)
        vm_id = str(made["vm_id"])
        if progress and made.get("volume_notice"):
            progress(str(made["volume_notice"]))

        def look(raw: dict[str, Any]) -> Seen:
            status = str(raw.get("status") or "unknown")
            if status in FAILED:
                return Seen(status, failure=f"Lyceum reports the VM as {status}")
            if status == "ready" and raw.get("ip_address"):
                return Seen(f"ready at {raw['ip_address']}", ready=True)
            return Seen(status if status != "ready" else "ready, waiting for an address")

        raw = wait_ready(
            f"Lyceum VM {vm_id}",
            lambda: self._describe(vm_id),
            look,
            release=lambda: self._delete(vm_id),
            resource_id=vm_id,
            timeout=self.ready_timeout,
            interval=self.poll_interval,
            progress=progress,
            sleep=self._sleep,
        )
        st = self._status(vm_id, raw)
        # the address may have served another machine before: its old host key must go
        _tidy_ssh(st, close=False)
        return st

    def _post_create(self, body: dict[str, Any], display: str, timeout: float) -> dict[str, Any]:
        """POST the create; a lost answer is looked up by display name, not repeated.

        When even that cannot settle whether a VM was made, the error says so."""
        from ..httpapi import ApiError

        try:
            return self.api.request(
                "POST",
                API + "/vms/create",
                json=body,
                timeout=timeout,
                recover=lambda: self._find_by_display_name(display),
            )
        except ApiError as e:
            if e.status < 500:
                raise _translate(e) from None
            uncertain: TrainctlError = e
        except CredentialsError:
            raise
        except OperationFailed as e:  # the connection failed, or so did the lookup
            uncertain = e
        raise OperationFailed(
            f"could not create Lyceum VM {display}: {uncertain.message}",
            hint=f"a VM named {display} may exist anyway: look with `trainctl list --refresh` "
            "or in the Lyceum dashboard",
        ) from None

    def _describe(self, vm_id: str) -> dict[str, Any]:
        if not vm_id or "/" in vm_id:
            raise NotFound(f"no Lyceum VM {vm_id!r}")
        try:
            raw = self._call("GET", f"/vms/{vm_id}/status")
        except NotFound:
            raise NotFound(f"no Lyceum VM {vm_id}") from None
        if not isinstance(raw, dict):
            raise OperationFailed(f"Lyceum answered the status of {vm_id} with {raw!r}")
        return raw

    def _list_raw(self, *, terminated: bool) -> list[dict[str, Any]]:
        params = {
            "include_provisioning": "true",
            "include_ready": "true",
            "include_failed": "true",
            "include_terminated": "true" if terminated else "false",
        }
        raw = self._call("GET", "/vms/list", params=params) or {}
        return [vm for vm in raw.get("vms") or [] if isinstance(vm, dict) and vm.get("vm_id")]

    def _find_by_display_name(self, display: str) -> dict[str, Any] | None:
        """The VM a lost create made, if it made one (``None`` to send it again)."""
        for vm in self._list_raw(terminated=False):
            if vm.get("display_name") == display:
                return vm
        return None

    def _status(self, vm_id: str, raw: dict[str, Any]) -> ResourceStatus:
        status = str(raw.get("status") or "")
        state = normalize_state(self.name, status)
        display = str(raw.get("display_name") or "")
        profile = str(raw.get("hardware_profile") or "")
        itype = str(raw.get("instance_type") or "")
        gpus = int(raw.get("gpu_count") or 0)
        price = self._price(profile, itype)
        host = port = user = None
        if raw.get("ip_address") and state is not ResourceState.TERMINATED:
            host, port = split_address(str(raw["ip_address"]))
            # api.md: the login user is `lyceum`; a gateway may name another
            user = str(raw.get("ssh_user") or LOGIN_USER)
        owned = display.startswith(NAME_PREFIX)
        name = display.removeprefix(NAME_PREFIX) if owned else display or None
        details: dict[str, Any] = {
            "display_name": display or None,
            "billed_usd": raw.get("croesus_billed"),
            "uptime_seconds": raw.get("uptime_seconds"),
        }
        if raw.get("volumes"):
            details["volumes"] = raw["volumes"]
        return ResourceStatus(
            id=vm_id,
            provider=self.name,
            state=state,
            name=name,
            reason=f"Lyceum reports the VM as {status}" if state is ResourceState.ERROR else None,
            instance_type=profile or None,
            gpu=profile.upper() if gpus else None,
            gpu_count=gpus,
            launch_time=_parse_time(raw.get("created_at")),
            cost_per_hour=None if price is None else round(price * max(gpus, 1), 4),
            spot=itype == "spot",
            public_ip=host,
            ssh_host=host,
            ssh_port=port,
            ssh_user=user,
            tags={TAG_MANAGED: "true", TAG_NAME: name or ""} if owned else {},
            raw_state=status or None,
            details=details,
        )

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._status(resource_id, self._describe(resource_id))

    def list_resources(self) -> list[ResourceStatus]:
        return [
            self._status(str(vm["vm_id"]), vm)
            for vm in self._list_raw(terminated=False)
            if str(vm.get("display_name") or "").startswith(NAME_PREFIX)
        ]

    def _delete(self, vm_id: str) -> list[dict[str, Any]]:
        """Delete the VM; returns the volumes it leaves behind (still billing)."""
        try:
            gone = self._call("DELETE", f"/vms/{vm_id}") or {}
        except NotFound:
            return []
        return [v for v in gone.get("detached_volumes") or [] if isinstance(v, dict)]

    def terminate(self, resource_id: str) -> ResourceStatus:
        try:
            raw = self._describe(resource_id)
        except NotFound:
            return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED)
        display = str(raw.get("display_name") or "")
        if not display.startswith(NAME_PREFIX):
            raise BadInput(
                f"Lyceum VM {resource_id} ({display or 'no name'}) was not created by trainctl; "
                "not terminating it"
            )
        if normalize_state(self.name, raw.get("status")) is ResourceState.TERMINATED:
            return self._status(resource_id, raw)
        before = self._status(resource_id, raw)
        detached = self._delete(resource_id)
        if before.ssh_host:
            _tidy_ssh(before, close=True)  # the next machine at this address has another key
        st = self._status(resource_id, {**raw, "status": "terminated", "ip_address": None})
        if detached:
            sizes = ", ".join(f"{v.get('volume_id')} ({v.get('size_gb')} GB)" for v in detached)
            st.reason = (
                f"volumes outlive the VM and keep billing: {sizes}; "
                "delete them in the Lyceum dashboard when their data is no longer needed"
            )
            st.details["detached_volumes"] = detached
            log.warning("Lyceum VM %s: %s", resource_id, st.reason)
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


def _tidy_ssh(st: ResourceStatus, *, close: bool) -> None:
    """Forget the host key at the VM's address (and end the shared connection to it).
    The VM itself is settled by then, so a failure here is only reported."""
    remote = _ssh(st)
    try:
        if close:
            remote.close()
        remote.forget_host_key()
    except TrainctlError as e:
        log.warning("Lyceum VM %s: could not tidy up SSH state: %s", st.id, e)


def _ssh(st: ResourceStatus) -> SSHRemote:
    """The VM as an SSH remote, reached with trainctl's own key."""
    from ..remote.ssh import Endpoint, SSHRemote

    assert st.ssh_host, st
    return SSHRemote(Endpoint(st.ssh_host, st.ssh_port, st.ssh_user))

"""The ``lyceum`` provider: Lyceum Cloud VMs through its HTTP API, reached by SSH.

The API is the one Lyceum's own command-line client speaks (see
``reference/lyceum/api.md``): ``/api/v2/external/vms/...`` with a Bearer key and,
when an org is chosen, ``X-Org-Slug``. Lyceum VMs have no tags, so trainctl tells
its own apart by the ``trainctl-`` prefix of their display name; that name is also
how a create whose answer was lost is found again instead of being repeated.

A new VM is usable once it has an ``ip_address`` (``host`` or ``host:port``) and
its status is ``ready``, or ``running`` and an SSH login succeeds: lyceum-cli's own
wait accepts ``running``, and a VM may never say ``ready``. The login user is
``lyceum``. Answers are checked before use: a list, status or offer that is not
what api.md describes (``null``, a string for a number, a missing field) is an
error, never taken as "nothing there". Session tokens from ``lyceum auth login``
are refreshed as lyceum-cli does (``lyceum_auth``). Deleting a VM detaches its block volumes, which
live on and keep billing: ``terminate`` says so. A create that fails deletes the
volume it made along with the VM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...capabilities import Capability
from ...catalog import gpus
from ...errors import (
    BadInput,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    ResourceLeft,
    TrainctlError,
)
from ...home import provider_config
from ...provider import (
    NAME_PREFIX,
    TAG_MANAGED,
    TAG_NAME,
    VOLUME_FLAG,
    CheckResult,
    TrainingProvider,
)
from ...remote.base import Progress, Remote
from ...types import CostEstimate, CreateResourceOptions, GpuSpec, ResourceState, ResourceStatus
from ...waiting import Seen, wait_ready
from .auth import (
    CREDENTIALS_HINT,
    REFRESH_PATH,
    REFRESH_TIMEOUT,
    config_file,
    is_api_key,
    needs_refresh,
    read_config_file,
    refresh_session,
)
from .states import STATES

if TYPE_CHECKING:
    from ...httpapi import ApiError, JsonApi
    from ...remote.ssh import SSHRemote

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
FAILED = frozenset({"failed", "error", "terminated"})


@dataclass(frozen=True)
class Credentials:
    """Where to send requests and as whom; ``repr`` never shows the key."""

    api_key: str = field(repr=False)
    base_url: str
    org: str | None
    source: str  # where the key came from, for messages
    #: a session token of the config file (a JWT that expires), not an ``lk_`` key
    session: bool = False

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
        session = not env_key and not is_api_key(key)
        return cls(key, base.rstrip("/"), org, source, session)


@dataclass(frozen=True)
class Variant:
    """One offer of ``/vms/availability``; ``price_per_hour`` is per GPU."""

    profile: str
    instance_type: str  # on-demand | spot
    price_per_hour: float
    gpu_counts: tuple[int, ...]

    @classmethod
    def parse(cls, raw: Any) -> Variant:
        """One entry of ``available_instance_variants``; malformed, it is an error."""
        what = "an offer of /vms/availability"
        raw = _object(raw, what)
        counts = raw.get("available_gpus_per_instance")
        if counts is None:
            counts = []
        if not isinstance(counts, list) or not all(_is_int(n) for n in counts):
            raise _malformed(what, "available_gpus_per_instance", counts)
        price = _number(raw, "price_per_hour", what)
        if price is None:
            raise _malformed(what, "price_per_hour", None)
        return cls(
            _text(raw, "hardware_profile", what, required=True),
            _text(raw, "instance_type", what, required=True),
            price,
            tuple(counts),
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _malformed(what: str, key: str | None, value: Any) -> OperationFailed:
    """An answer that is not what api.md describes: one line, never a traceback."""
    part = f"{key} is {_shown(value)}" if key else f"got {_shown(value)}"
    return OperationFailed(
        f"Lyceum answered {what} with something trainctl cannot read ({part})",
        hint="try again; if it keeps happening, the Lyceum API may have changed",
    )


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(what, None, value)
    return value


def _objects(raw: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    """``raw[key]``, a list of JSON objects (missing: none, for optional lists)."""
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _malformed(what, key, value)
    return value


def _text(raw: dict[str, Any], key: str, what: str, *, required: bool = False) -> str:
    """A string field ("" when absent or null, unless ``required``)."""
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _malformed(what, key, value)
    return value


def _number(raw: dict[str, Any], key: str, what: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(what, key, value)
    return float(value)


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
            from ...httpapi import JsonApi

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

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        """One API request with a usable token: a session token about to expire is
        refreshed first, and one the server refuses is refreshed and the request
        sent once more (the server refused it, so repeating it is safe)."""
        self._renew_session(only_if_expiring=True)
        try:
            return self.api.request(method, API + path, **kw)
        except CredentialsError as e:
            if not self.credentials.session or e.status != 401:
                raise  # a key, or a 403: the token is valid, its rights are not enough
            log.info("Lyceum refused the session token; refreshing it and trying again")
        self._renew_session(only_if_expiring=False)
        return self.api.request(method, API + path, **kw)

    def _renew_session(self, *, only_if_expiring: bool) -> None:
        creds = self.credentials
        if not creds.session or (only_if_expiring and not needs_refresh(creds.api_key)):
            return
        token = refresh_session(config_file(), creds.api_key, self._post_refresh)
        self._credentials = replace(creds, api_key=token)
        # the client's Authorization header holds the old token; a request still under
        # way (a create whose lost answer is being looked up) keeps the old client
        self._api = None

    def _post_refresh(self, body: dict[str, Any]) -> Any:
        """``POST /auth/refresh``: no Authorization header, as lyceum-cli sends it."""
        from ...httpapi import JsonApi

        with JsonApi(
            self.credentials.base_url,
            None,
            service="Lyceum Cloud",
            timeout=REFRESH_TIMEOUT,
            max_attempts=3,
            backoff=self.backoff,
            sleep=self._sleep,
        ) as api:
            # a refresh token works once, but one the server did not act on still works
            return api.request("POST", REFRESH_PATH, json=body, idempotent=True)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One API request, its error statuses turned into trainctl's errors."""
        from ...httpapi import ApiError

        try:
            return self._request(method, path, **kw)
        except ApiError as e:
            raise _translate(e) from None

    def check(self) -> CheckResult:
        try:
            creds = self.credentials
            org = _object(self._call("GET", "/user/org"), "/user/org")
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
            key = "available_instance_variants"
            offers = _object(raw, "/vms/availability").get(key)
            if not isinstance(offers, list):
                raise _malformed("/vms/availability", key, offers)
            for v in offers:
                Variant.parse(v)  # every offer readable, or an error now
            self._availability = raw
        return self._availability

    def variants(self) -> list[Variant]:
        return [Variant.parse(v) for v in self.availability()["available_instance_variants"]]

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
            what = "/machine-types"
            types = _object(self._call("GET", "/machine-types"), what)
            known = {
                _text(t, "hardware_profile", what).lower()
                for t in _objects(types, "machine_types", what)
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
        count_text = f"{options.gpu.count} GPU(s)" if options.gpu else "any GPU count"
        # why each kind was passed over; --max-price is the most the user pays per hour,
        # so an offer above it is passed over like one without capacity
        refused: list[str] = []
        too_dear = False
        for kind in kinds:
            why = f"no {kind} {profile} VM with {count_text} right now"
            for v in same:
                if v.instance_type != kind or not v.gpu_counts:
                    continue
                count = options.gpu.count if options.gpu else min(v.gpu_counts)
                if count not in v.gpu_counts:
                    continue
                if options.max_price is None or v.hourly(count) <= options.max_price:
                    return v, count
                too_dear = True
                why = (
                    f"{count} x {v.profile} {kind} costs ${v.hourly(count)}/h, "
                    f"above the maximum price ${options.max_price}/h"
                )
                break
            refused.append(why)
        if not too_dear:
            offered = self._offered()
            raise NoCapacity(f"Lyceum Cloud offers {refused[0]}", hint=f"offered: {offered}")
        raise NoCapacity("; the on-demand fallback: ".join(refused), hint="raise --max-price")

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
        from ...sshkeys import public_key

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

        probed: set[str] = set()

        def poll() -> Polled:
            raw = self._describe(vm_id)
            polled = Polled(raw, _text(raw, "status", f"VM {vm_id}") or "unknown")
            polled.address = _text(raw, "ip_address", f"VM {vm_id}")
            if polled.status == "running" and polled.address:
                # lyceum-cli takes `running` as up; trainctl takes it once it can log in
                polled.login_error = _ssh(self._status(vm_id, raw)).probe_login(probed)
            return polled

        raw = wait_ready(
            f"Lyceum VM {vm_id}",
            poll,
            Polled.seen,
            release=lambda: self._release(vm_id, delete_volumes=volume_gb is not None),
            resource_id=vm_id,
            timeout=self.ready_timeout,
            interval=self.poll_interval,
            progress=progress,
            sleep=self._sleep,
        )
        st = self._status(vm_id, raw.raw)
        if not probed:
            # the address may have served another machine before: its old host key must go
            _tidy_ssh(st, close=False)
        return st

    def _post_create(self, body: dict[str, Any], display: str, timeout: float) -> dict[str, Any]:
        """POST the create; a lost answer is looked up by display name, not repeated.

        When even that cannot settle whether a VM was made, ``ResourceLeft`` says so."""
        from ...httpapi import ApiError

        try:
            made = self._request(
                "POST",
                "/vms/create",
                json=body,
                timeout=timeout,
                recover=lambda: self._find_by_display_name(display),
            )
            if isinstance(made, dict) and isinstance(made.get("vm_id"), str) and made["vm_id"]:
                return made
            # an unreadable answer is a lost one (looked up below): the VM may exist
            raise _malformed(
                "the create", "vm_id", made.get("vm_id") if isinstance(made, dict) else made
            )
        except ApiError as e:
            if e.status < 500:
                raise _translate(e) from None
            uncertain: TrainctlError = e
        except CredentialsError:
            raise
        except OperationFailed as e:  # the connection failed, or so did the lookup
            uncertain = e
            if not isinstance(e, ResourceLeft):  # an answer that could not be read
                # (ResourceLeft: the request's own recover has looked already)
                with contextlib.suppress(TrainctlError):
                    found = self._find_by_display_name(display)
                    if found is not None:
                        return found
        raise ResourceLeft(
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
        return _object(raw, f"the status of {vm_id}")

    def _list_raw(self, *, terminated: bool) -> list[dict[str, Any]]:
        params = {
            "include_provisioning": "true",
            "include_ready": "true",
            "include_failed": "true",
            "include_terminated": "true" if terminated else "false",
        }
        raw = self._call("GET", "/vms/list", params=params)
        # an unreadable list (empty, null, not a list) is an error: taken as "no VMs",
        # it would mark every live VM terminated and hide them from the name checks
        what = "the VM list"
        if not isinstance(raw, dict) or not isinstance(raw.get("vms"), list):
            raise _malformed(what, "vms" if isinstance(raw, dict) else None, raw)
        return [_with_id(vm) for vm in _objects(raw, "vms", what)]

    def _find_by_display_name(self, display: str) -> dict[str, Any] | None:
        """The VM a lost create made, if it made one (``None`` to send it again)."""
        for vm in self._list_raw(terminated=False):
            if vm.get("display_name") == display:
                return vm
        return None

    def _status(self, vm_id: str, raw: dict[str, Any]) -> ResourceStatus:
        what = f"VM {vm_id}"
        status = _text(raw, "status", what, required=True)
        state = self.state_of(status)
        display = _text(raw, "display_name", what)
        profile = _text(raw, "hardware_profile", what)
        itype = _text(raw, "instance_type", what)
        count = raw.get("gpu_count")
        if count is not None and not _is_int(count):
            raise _malformed(what, "gpu_count", count)
        gpus = count or 0
        address = _text(raw, "ip_address", what)
        volumes = _objects(raw, "volumes", what) if raw.get("volumes") is not None else []
        billed = _number(raw, "croesus_billed", what)
        uptime = _number(raw, "uptime_seconds", what)
        price = self._price(profile, itype)
        host = port = user = None
        if address and state is not ResourceState.TERMINATED:
            host, port = split_address(address)
            # api.md: the login user is `lyceum`; a gateway may name another
            user = _text(raw, "ssh_user", what) or LOGIN_USER
        owned = display.startswith(NAME_PREFIX)
        name = display.removeprefix(NAME_PREFIX) if owned else display or None
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
            if _text(vm, "display_name", "the VM list").startswith(NAME_PREFIX)
        ]

    def _delete(self, vm_id: str) -> list[dict[str, Any]] | None:
        """Delete the VM; returns the volumes it leaves behind (still billing), or
        ``None`` when the answer accepted the delete but cannot be read."""
        try:
            gone = self._call("DELETE", f"/vms/{vm_id}")
        except NotFound:
            return []
        if gone is None:  # api.md: sometimes an empty body
            return []
        try:
            what = f"the delete of {vm_id}"
            if _object(gone, what).get("detached_volumes") is None:
                return []
            return _objects(gone, "detached_volumes", what)
        except OperationFailed as e:
            log.warning("Lyceum VM %s: deleted, but %s", vm_id, e.message)
            return None

    def _release(self, vm_id: str, *, delete_volumes: bool) -> None:
        """Delete a VM whose create failed and, with ``delete_volumes``, the volumes it
        leaves behind (the create made them: trainctl attaches no existing volume), so
        nothing keeps billing. The error of a failed volume delete names them."""
        detached = self._delete(vm_id)
        if not delete_volumes:
            return
        if detached is None:
            raise OperationFailed(
                f"Lyceum VM {vm_id} was deleted, but its answer does not say which volume "
                "it left behind, billing: delete it in the Lyceum dashboard"
            )
        left: list[str] = []
        errors: list[str] = []
        for vol in detached:
            vol_id = str(vol.get("volume_id") or "")
            try:
                if not vol_id or "/" in vol_id:
                    raise OperationFailed(f"Lyceum reported a volume without a usable id: {vol}")
                self._call("DELETE", f"/storage/block/{vol_id}")
            except NotFound:
                continue
            except TrainctlError as e:
                left.append(f"{vol_id or '?'} ({vol.get('size_gb')} GB)")
                errors.append(e.message)
        if left:
            raise OperationFailed(
                f"the VM was deleted, but not its volume(s) {', '.join(left)}, which keep "
                f"billing: delete them in the Lyceum dashboard ({'; '.join(errors)})"
            )

    def terminate(self, resource_id: str) -> ResourceStatus:
        try:
            raw = self._describe(resource_id)
        except NotFound:
            return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED)
        display = _text(raw, "display_name", f"VM {resource_id}")
        if not display.startswith(NAME_PREFIX):
            raise BadInput(
                f"Lyceum VM {resource_id} ({display or 'no name'}) was not created by trainctl; "
                "not terminating it"
            )
        if self.state_of(raw.get("status")) is ResourceState.TERMINATED:
            return self._status(resource_id, raw)
        before = self._status(resource_id, raw)
        detached = self._delete(resource_id)
        if before.ssh_host:
            _tidy_ssh(before, close=True)  # the next machine at this address has another key
        st = self._status(resource_id, {**raw, "status": "terminated", "ip_address": None})
        if detached is None:
            st.reason = (
                "Lyceum's answer to the delete cannot be read, so volumes it may have "
                "detached (they keep billing) are unknown: check the Lyceum dashboard"
            )
        elif detached:
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


def _with_id(vm: dict[str, Any]) -> dict[str, Any]:
    """A ``vms/list`` entry with its id as ``vm_id``. api.md gives list entries the
    status fields, which hold no id, so ``id`` is taken too; an entry with neither is
    an error: dropping it would hide a VM from listing, the duplicate-name check and
    the search for a VM whose create answer was lost."""
    vm_id = vm.get("vm_id") or vm.get("id")
    if vm_id is not None and not isinstance(vm_id, str | int) or isinstance(vm_id, bool):
        raise _malformed("the VM list", "vm_id", vm_id)
    if not vm_id:
        raise OperationFailed(
            "Lyceum listed a VM without an id (neither vm_id nor id): "
            f"{vm.get('display_name') or 'no name'}, status {vm.get('status')}",
            hint="trainctl cannot tell which VM this is; see it in the Lyceum dashboard",
        )
    return {**vm, "vm_id": str(vm_id)}


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
    from ...remote.ssh import Endpoint, SSHRemote

    assert st.ssh_host, st
    return SSHRemote(Endpoint(st.ssh_host, st.ssh_port, st.ssh_user))

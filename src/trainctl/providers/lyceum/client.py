"""The Lyceum Cloud API client: the one place trainctl speaks HTTP to Lyceum.

The API is the one Lyceum's own command-line client speaks (see
``reference/lyceum/api.md``): ``/api/v2/external/...`` with a Bearer key and, when
an org is chosen, ``X-Org-Slug``. Each method is one operation of that API; its
answer is checked (``answers``) and its error statuses come out as trainctl's
errors (402: no credit, 404: ``NotFound``). Session tokens from ``lyceum auth
login`` are refreshed as lyceum-cli does (``auth``). A create whose answer is lost
is looked up by the VM's display name instead of being repeated.

Personal API keys (``/auth/api-keys/``) can be made and revoked: a key that expires
on its own, made for one machine, is a smaller credential to leave on it than the
user's own. A new key's secret is shown only once, in the answer to its creation; it
is returned to the caller and nowhere else (no message, log line or ``repr``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ...errors import (
    CredentialsError,
    NotFound,
    OperationFailed,
    ResourceLeft,
    TrainctlError,
)
from ...httpapi import ApiError, JsonApi
from .answers import AVAILABILITY, Availability, an_object, malformed, objects, text
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
from .settings import LyceumSettings

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.lyceum.technology"
API = "/api/v2/external"
SERVICE = "Lyceum Cloud"
#: api.md: VM create may take 150 s, 300 s when block storage is involved
CREATE_TIMEOUT = 150.0
CREATE_TIMEOUT_VOLUME = 300.0
#: personal API keys; the trailing slash is part of the path (api.md)
API_KEYS = "/auth/api-keys/"
#: tries per request: with the backoff, rides out up to a minute of 429 or 5xx answers
#: (longer when the server asks for it with Retry-After)
MAX_ATTEMPTS = 8


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
    def load(cls, settings: LyceumSettings) -> Credentials:
        """``LYCEUM_API_KEY``, else the key in ``~/.lyceum/config.json``; the org from
        ``LYCEUM_ORG``, else that file; the URL from the settings
        (``TRAINCTL_LYCEUM_API_URL``), else that file's ``base_url``."""
        env_key = os.environ.get("LYCEUM_API_KEY", "").strip()
        cfg = read_config_file()
        key = env_key or str(cfg.get("api_key") or "").strip()
        if not key:
            raise CredentialsError("no Lyceum Cloud API key found", hint=CREDENTIALS_HINT)
        base = settings.api_url or str(cfg.get("base_url") or "").strip() or DEFAULT_URL
        org = os.environ.get("LYCEUM_ORG", "").strip() or cfg.get("active_org_slug") or None
        source = "LYCEUM_API_KEY" if env_key else str(config_file())
        session = not env_key and not is_api_key(key)
        return cls(key, base.rstrip("/"), org, source, session)


def credentials_present() -> bool:
    """Whether a key is at hand (no network)."""
    if os.environ.get("LYCEUM_API_KEY", "").strip():
        return True
    try:
        return bool(read_config_file().get("api_key"))
    except CredentialsError:
        return False


@dataclass(frozen=True)
class Deleted:
    """What a VM delete left behind: the block volumes it detached (they live on
    and keep billing), or, when its answer accepted the delete but cannot be read,
    why (``unreadable``; the volumes are then unknown)."""

    detached: tuple[dict[str, Any], ...] = ()
    unreadable: str | None = None


def translate(e: ApiError) -> TrainctlError:
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


class LyceumClient:
    """Lyceum's API as typed calls. Credentials are read at the first request."""

    def __init__(
        self,
        settings: LyceumSettings,
        *,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.backoff = backoff
        self._sleep = sleep
        self._api: JsonApi | None = None
        self._credentials: Credentials | None = None

    def __repr__(self) -> str:
        return "LyceumClient()"

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = Credentials.load(self.settings)
        return self._credentials

    # -- requests ---------------------------------------------------------------

    @property
    def _json(self) -> JsonApi:
        if self._api is None:
            creds = self.credentials
            self._api = JsonApi(
                creds.base_url,
                creds.api_key,
                service=SERVICE,
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
            return self._json.request(method, API + path, **kw)
        except CredentialsError as e:
            if not self.credentials.session or e.status != 401:
                raise  # a key, or a 403: the token is valid, its rights are not enough
            log.info("Lyceum refused the session token; refreshing it and trying again")
        self._renew_session(only_if_expiring=False)
        return self._json.request(method, API + path, **kw)

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
        with JsonApi(
            self.credentials.base_url,
            None,
            service=SERVICE,
            timeout=REFRESH_TIMEOUT,
            max_attempts=3,
            backoff=self.backoff,
            sleep=self._sleep,
        ) as api:
            # a refresh token works once, but one the server did not act on still works
            return api.request("POST", REFRESH_PATH, json=body, idempotent=True)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One API request, its error statuses turned into trainctl's errors."""
        try:
            return self._request(method, path, **kw)
        except ApiError as e:
            raise translate(e) from None

    # -- the account and its offers -----------------------------------------------

    def org(self) -> dict[str, Any]:
        """``GET /user/org``: the org the key acts for."""
        return an_object(self._call("GET", "/user/org"), "/user/org")

    def availability(self) -> Availability:
        """``GET /vms/availability``: what can be rented now, at which price."""
        return Availability.parse(self._call("GET", AVAILABILITY))

    def hardware_profiles(self) -> set[str]:
        """``GET /machine-types``: every hardware profile Lyceum has (lower-case),
        whether or not any is available now."""
        what = "/machine-types"
        types = an_object(self._call("GET", "/machine-types"), what)
        return {
            text(t, "hardware_profile", what).lower() for t in objects(types, "machine_types", what)
        }

    # -- VMs ----------------------------------------------------------------------

    def create_vm(self, body: dict[str, Any], *, display: str, timeout: float) -> dict[str, Any]:
        """``POST /vms/create`` of a VM named ``display``; its answer (with ``vm_id``).
        A lost answer is looked up by display name, not repeated; when even that
        cannot settle whether a VM was made, ``ResourceLeft`` says so."""
        try:
            made = self._request(
                "POST",
                "/vms/create",
                json=body,
                timeout=timeout,
                recover=lambda: self.find_vm(display),
            )
            if isinstance(made, dict) and isinstance(made.get("vm_id"), str) and made["vm_id"]:
                return made
            # an unreadable answer is a lost one (looked up below): the VM may exist
            raise malformed(
                "the create", "vm_id", made.get("vm_id") if isinstance(made, dict) else made
            )
        except ApiError as e:
            if e.status < 500:
                raise translate(e) from None
            uncertain: TrainctlError = e
        except CredentialsError:
            raise
        except OperationFailed as e:  # the connection failed, or so did the lookup
            uncertain = e
            if not isinstance(e, ResourceLeft):  # an answer that could not be read
                # (ResourceLeft: the request's own recover has looked already)
                with contextlib.suppress(TrainctlError):
                    found = self.find_vm(display)
                    if found is not None:
                        return found
        raise ResourceLeft(
            f"could not create Lyceum VM {display}: {uncertain.message}",
            hint=f"a VM named {display} may exist anyway: look with `trainctl list --refresh` "
            "or in the Lyceum dashboard",
        ) from None

    def vm(self, vm_id: str) -> dict[str, Any]:
        """``GET /vms/{id}/status``; ``NotFound`` for an id Lyceum does not know."""
        if not vm_id or "/" in vm_id:
            raise NotFound(f"no Lyceum VM {vm_id!r}")
        try:
            raw = self._call("GET", f"/vms/{vm_id}/status")
        except NotFound:
            raise NotFound(f"no Lyceum VM {vm_id}") from None
        return an_object(raw, f"the status of {vm_id}")

    def vms(self, *, terminated: bool = False) -> list[dict[str, Any]]:
        """``GET /vms/list``: every VM of the org, each with its id as ``vm_id``."""
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
            raise malformed(what, "vms" if isinstance(raw, dict) else None, raw)
        return [_with_id(vm) for vm in objects(raw, "vms", what)]

    def find_vm(self, display: str) -> dict[str, Any] | None:
        """The live VM named ``display``, if there is one."""
        for vm in self.vms():
            if vm.get("display_name") == display:
                return vm
        return None

    def delete_vm(self, vm_id: str) -> Deleted:
        """``DELETE /vms/{id}`` (an id Lyceum does not know is gone already)."""
        try:
            gone = self._call("DELETE", f"/vms/{vm_id}")
        except NotFound:
            return Deleted()
        if gone is None:  # api.md: sometimes an empty body
            return Deleted()
        try:
            what = f"the delete of {vm_id}"
            if an_object(gone, what).get("detached_volumes") is None:
                return Deleted()
            return Deleted(tuple(objects(gone, "detached_volumes", what)))
        except OperationFailed as e:
            return Deleted(unreadable=e.message)

    def delete_volume(self, volume_id: str) -> None:
        """``DELETE /storage/block/{id}`` of a detached volume (one Lyceum does not
        know is gone already)."""
        with contextlib.suppress(NotFound):
            self._call("DELETE", f"/storage/block/{volume_id}")

    # -- API keys -------------------------------------------------------------------

    def api_keys(self) -> list[dict[str, Any]]:
        """``GET /auth/api-keys/``: the user's API keys (ids, names, dates; no
        secrets), a bare JSON array as lyceum-cli reads it."""
        raw = self._call("GET", API_KEYS)
        if not isinstance(raw, list) or not all(isinstance(k, dict) for k in raw):
            raise malformed("the API key list", None, type(raw).__name__)
        return raw

    def create_api_key(self, key_name: str, expires_at: datetime) -> str:
        """``POST /auth/api-keys/``: a new API key named ``key_name`` that stops
        working at ``expires_at`` (a timezone-aware time); returns its secret.

        Lyceum shows the secret only in this answer, so an answer that is lost or
        cannot be read leaves a key nobody holds: every key of that name is revoked
        then, and the error says whether that worked. Error messages never quote
        the answer, which would hold the secret."""
        if expires_at.utcoffset() is None:
            raise ValueError("expires_at must name its timezone")
        when = expires_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
        body = {"key_name": key_name, "expires_at": when.replace("+00:00", "Z")}
        answer: Any = None
        try:
            answer = self._request("POST", API_KEYS, json=body)
        except ApiError as e:
            raise translate(e) from None
        except ResourceLeft:
            # an unreadable answer is quoted in the error: raise another, outside
            # this block, so that the first is not even the new one's context
            answer = None
        secret = answer.get("api_key") if isinstance(answer, dict) else None
        if isinstance(secret, str) and secret:
            return secret
        raise self._abandon_key(key_name)

    def _abandon_key(self, key_name: str) -> TrainctlError:
        """The error for a key made (maybe) without its secret reaching trainctl,
        after revoking every key of that name."""
        what = f"Lyceum's answer to the creation of API key {key_name!r} was lost or unreadable"
        try:
            revoked = self.revoke_api_key(key_name)
        except TrainctlError as e:
            return ResourceLeft(
                f"{what}, and revoking the key failed too ({e.message})",
                hint=f"revoke the API key {key_name!r} in the Lyceum dashboard",
            )
        done = "the key it made was revoked" if revoked else "it made no key"
        return OperationFailed(f"{what}; {done}", hint="try again")

    def revoke_api_key(self, key_name: str) -> bool:
        """``DELETE /auth/api-keys/{id}`` of every key named ``key_name`` (the list
        gives the ids); whether there was one. Idempotent: a key already gone is
        not an error, and a second call answers False."""
        named = [k for k in self.api_keys() if k.get("key_name") == key_name]
        for key_id in [_key_id(k) for k in named]:
            with contextlib.suppress(NotFound):
                self._call("DELETE", API_KEYS + key_id)
        return bool(named)


def _key_id(entry: dict[str, Any]) -> str:
    """The id of a ``/auth/api-keys/`` entry, for its ``DELETE``."""
    key_id = entry.get("id")
    if isinstance(key_id, bool) or not isinstance(key_id, str | int) or key_id == "":
        raise malformed("the API key list", "id", key_id)
    return quote(str(key_id), safe="")


def _with_id(vm: dict[str, Any]) -> dict[str, Any]:
    """A ``vms/list`` entry with its id as ``vm_id``. api.md gives list entries the
    status fields, which hold no id, so ``id`` is taken too; an entry with neither is
    an error: dropping it would hide a VM from listing, the duplicate-name check and
    the search for a VM whose create answer was lost."""
    vm_id = vm.get("vm_id") or vm.get("id")
    if vm_id is not None and not isinstance(vm_id, str | int) or isinstance(vm_id, bool):
        raise malformed("the VM list", "vm_id", vm_id)
    if not vm_id:
        raise OperationFailed(
            "Lyceum listed a VM without an id (neither vm_id nor id): "
            f"{vm.get('display_name') or 'no name'}, status {vm.get('status')}",
            hint="trainctl cannot tell which VM this is; see it in the Lyceum dashboard",
        )
    return {**vm, "vm_id": str(vm_id)}

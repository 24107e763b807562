"""A fake Lyceum Cloud API on 127.0.0.1, built from ``reference/lyceum/api.md``.

It serves the VM part of the API the way api.md describes it: the same paths,
fields, status strings and FastAPI-style error bodies (``{"detail": ...}``; 422
with a list of field errors for a malformed body). It is strict where a real
server would be and more: a request without a bearer token, with an unknown key,
an unknown org, a body field of the wrong type or a field api.md does not list is
refused. Every request is recorded so that tests can inspect what was sent.

Knobs (attributes, set by tests):

- ``variants``: the on-demand and spot offers of ``/vms/availability``; a profile
  not listed is refused by create. ``machine_types``: what ``/machine-types`` lists.
- ``provision_outcome``: ``"ready"`` (default), ``"failed"``, ``"error"`` or
  ``"stuck"`` (never leaves ``provisioning``); ``provision_seconds`` how long it takes.
- ``credit``: False makes create answer 402.
- ``fail_next(status, times, ...)``: the next matching requests (after ``after``
  of them) answer ``status`` (429, 500, 502, 503 ...), optionally with ``Retry-After``;
  with ``acted=True`` each is carried out first (a create makes its VM), then
  answered with ``status`` all the same.
- ``lose_next_create(mode)``: the next create makes the VM but its response is
  lost: ``"drop"`` closes the connection, ``"delay"`` answers too late.
- ``rewrite_next(answer, ...)``: the next matching requests are carried out, and
  their answer is replaced: ``answer`` is a function of the decoded answer (to break
  a field's type, or return ``None``), or raw bytes sent as they are (an HTML page,
  cut-off JSON) with ``content_type``.
- ``stay_running``: VMs get their address and machine but stay ``running`` and never
  say ``ready`` (lyceum-cli's own wait accepts ``running``).
- Session tokens: ``issue_session(ttl)`` returns a JWT (its ``exp`` ``ttl`` seconds
  away, signed with nothing the client can check) and a refresh token, as
  ``lyceum auth login`` stores them. An expired JWT is answered 401.
  ``POST /auth/refresh`` takes ``{"refresh_token": str}`` and no Authorization
  header (api.md) and answers ``{access_token, refresh_token}``; each refresh token
  works once (``refresh_answers_token=False`` leaves the new one out of the answer,
  and the old one keeps working). ``session_ttl`` is the life of refreshed tokens.
- ``list_id_field``: the key that holds each ``vms/list`` entry's id: ``"vm_id"``
  (default), ``"id"``, or ``None`` for none (api.md does not say which).
- ``ip_with_port``: report ``ip_address`` as ``host:port`` (default) or ``host``.
- ``machines``: what backs a VM once it is ready: an object with
  ``start(vm_id, public_key) -> (host, port, user)`` and ``stop(vm_id)``.
  ``SshdMachines`` uses the test SSH server; the default, ``NoMachines``, backs
  nothing and reports a documentation address.
- Volumes: a create with ``new_volume`` makes a volume attached to the VM;
  deleting the VM detaches it (it lives on, billing) as api.md says;
  ``DELETE /storage/block/{id}`` deletes a detached one (409 while attached).

- Personal API keys (api.md section 2): ``GET /auth/api-keys/`` lists them (a bare
  array, as lyceum-cli reads it), ``POST`` with ``{key_name, expires_at?}`` issues
  one and answers ``{key_name, api_key}``, ``DELETE /auth/api-keys/{id}`` revokes
  one, ``PATCH /auth/api-keys/{id}/toggle`` switches it off or on. A key issued so
  (``lk_`` + hex) works on every route as the account's own keys do, for the org it
  was created in, until it is revoked, switched off or past ``expires_at``: then it
  is answered 401. ``issued`` holds every key issued, revoked ones included.

``ssh_user`` is the one field the fake adds to api.md: only for VMs backed by a
machine whose login user is not ``lyceum`` (the test SSH server's users), so a real
gateway, which never sends it, leaves the provider on the documented ``lyceum``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import pytest

API = "/api/v2/external"
DEFAULT_KEY = "lk_fake_0123456789abcdef"
DEFAULT_ORG = "acme-ml"
LOGIN_USER = "lyceum"

DEFAULT_VARIANTS: list[dict[str, Any]] = [
    {
        "hardware_profile": "a100",
        "instance_type": "on-demand",
        "price_per_hour": 1.79,
        "available_gpus_per_instance": [1, 2, 4, 8],
        "block_storage_gpu_counts": [1, 2],
    },
    {
        "hardware_profile": "a100",
        "instance_type": "spot",
        "price_per_hour": 0.99,
        "available_gpus_per_instance": [1, 2],
        "block_storage_gpu_counts": None,
    },
    {
        "hardware_profile": "h100",
        "instance_type": "on-demand",
        "price_per_hour": 2.89,
        "available_gpus_per_instance": [1, 2, 8],
        "block_storage_gpu_counts": [1],
    },
    {
        "hardware_profile": "cpu",
        "instance_type": "on-demand",
        "price_per_hour": 0.12,
        "available_gpus_per_instance": [0],
        "block_storage_gpu_counts": None,
    },
]

_PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?$")


class Machines(Protocol):
    def start(self, vm_id: str, public_key: str) -> tuple[str, int, str]: ...

    def stop(self, vm_id: str) -> None: ...


class NoMachines:
    """Backs nothing: a ready VM reports an address from the documentation range."""

    def __init__(self) -> None:
        self._n = 0

    def start(self, vm_id: str, public_key: str) -> tuple[str, int, str]:
        self._n += 1
        return f"192.0.2.{self._n % 250 + 1}", 22000 + self._n, LOGIN_USER

    def stop(self, vm_id: str) -> None:
        return None


class SshdMachines:
    """Backs each VM by one machine of the test SSH server (``tests/sshd.py``): a
    dedicated Unix user that accepts the key the VM was created with. Deleting the
    VM destroys the machine."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.by_vm: dict[str, Any] = {}

    def start(self, vm_id: str, public_key: str) -> tuple[str, int, str]:
        machine = self.server.new_machine(authorize_client_key=False)
        machine.authorize(public_key)
        self.by_vm[vm_id] = machine
        return machine.host, machine.port, machine.user

    def stop(self, vm_id: str) -> None:
        machine = self.by_vm.get(vm_id)
        if machine is not None:
            machine.destroy()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Injected:
    status: int
    times: int
    method: str | None
    path_contains: str | None
    retry_after: str | None
    after: int = 0  # matching requests let through first
    acted: bool = False  # carry the request out, then answer the status anyway

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class Rewrite:
    answer: Callable[[Any], Any] | bytes
    times: int
    method: str | None
    path_contains: str | None
    content_type: str

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class Session:
    org: str | None
    exp: float


def make_jwt(exp: float) -> str:
    """A token shaped like a JWT (header.payload.signature) with an ``exp`` claim;
    its signature means nothing, as a client decodes ``exp`` without verifying it."""

    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    payload = {"sub": "user-1", "exp": int(exp), "nonce": secrets.token_hex(4)}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{secrets.token_hex(16)}"


@dataclass
class IssuedKey:
    """An API key issued through ``POST /auth/api-keys/``."""

    id: str
    key_name: str
    secret: str = field(repr=False)
    org: str | None  # the org it was created in (None: the personal org)
    created: float
    expires: float | None
    is_active: bool = True
    revoked: bool = False
    last_used: float | None = None

    def usable(self) -> bool:
        return (
            self.is_active
            and not self.revoked
            and (self.expires is None or self.expires > time.time())
        )

    def listed(self) -> dict[str, Any]:
        """The entry of ``GET /auth/api-keys/``: the fields Lyceum's dashboard reads
        (api.md lists none), never the secret."""
        return {
            "id": self.id,
            "user_id": "user-1",
            "key_name": self.key_name,
            "key_hash": hashlib.sha256(self.secret.encode()).hexdigest(),
            "key_prefix": self.secret[:8],
            "is_active": self.is_active,
            "last_used_at": _iso(self.last_used) if self.last_used else None,
            "created_at": _iso(self.created),
            "updated_at": _iso(self.created),
            "expires_at": _iso(self.expires) if self.expires is not None else None,
        }


def validate_key_create(body: Any) -> list[dict[str, Any]]:
    """Field errors of an API key create body ``{key_name, expires_at?}``, pydantic
    style: ``expires_at`` an ISO 8601 time with its timezone, in the future."""
    if not isinstance(body, dict):
        return [_field_error([], "value is not a valid dict", "type_error.dict")]
    errors = []
    name = body.get("key_name")
    if "key_name" not in body:
        errors.append(_field_error(["key_name"], "field required", "value_error.missing"))
    elif not _check_type(name, "str") or not name.strip():
        errors.append(_field_error(["key_name"], "a non-empty str expected", "type_error.str"))
    if "expires_at" in body and body["expires_at"] is not None:
        when = _parse_time(body["expires_at"])
        if when is None:
            msg = "invalid datetime format: ISO 8601 with a timezone expected"
            errors.append(_field_error(["expires_at"], msg, "value_error.datetime"))
        elif when <= time.time():
            msg = "the expiry must be in the future"
            errors.append(_field_error(["expires_at"], msg, "value_error"))
    for extra in body:
        if extra not in ("key_name", "expires_at"):
            errors.append(_field_error([extra], "extra fields not permitted", "value_error.extra"))
    return errors


def _parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time that names its timezone."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.timestamp() if when.utcoffset() is not None else None


@dataclass
class VM:
    vm_id: str
    org: str
    hardware_profile: str
    instance_type: str
    gpu_count: int
    display_name: str | None
    public_key: str
    created: float
    status: str = "pending"
    ip_address: str | None = None
    ssh_user: str = LOGIN_USER
    ended: float | None = None
    volumes: list[dict[str, Any]] = field(default_factory=list)


class ApiError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class _Drop(Exception):
    """Close the connection without an answer."""


class _Raw(Exception):
    """Answer these bytes as they are."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__("raw")
        self.status = status
        self.body = body
        self.content_type = content_type


class _Late(Exception):
    """Answer, but only after the client has given up waiting."""

    def __init__(self, answer: tuple[int, Any, dict[str, str]], delay: float) -> None:
        super().__init__("late")
        self.answer = answer
        self.delay = delay


def _field_error(loc: list[str], msg: str, kind: str, where: str = "body") -> dict[str, Any]:
    return {"loc": [where, *loc], "msg": msg, "type": kind}


def _check_type(value: Any, expected: str) -> bool:
    if expected == "str":
        return isinstance(value, str)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected == "dict":
        return isinstance(value, dict)
    raise AssertionError(expected)


#: the create body as api.md lists it: field -> (type, required)
CREATE_FIELDS = {
    "user_public_key": ("str", True),
    "hardware_profile": ("str", False),
    "instance_type": ("str", False),
    "instance_specs": ("dict", False),
    "display_name": ("str", False),
    "volume_ids": ("[str]", False),
    "volume_migration_allowed": ("bool", False),
    "new_volume": ("dict", False),
}


def validate_create(body: Any) -> list[dict[str, Any]]:
    """Field errors of a create body, pydantic-style (an empty list when valid)."""
    if not isinstance(body, dict):
        return [_field_error([], "value is not a valid dict", "type_error.dict")]
    errors = []
    for name, (kind, required) in CREATE_FIELDS.items():
        if name not in body:
            if required:
                errors.append(_field_error([name], "field required", "value_error.missing"))
            continue
        if not _check_type(body[name], kind):
            errors.append(_field_error([name], f"value is not a valid {kind}", "type_error"))
    for name in body:
        if name not in CREATE_FIELDS:
            errors.append(_field_error([name], "extra fields not permitted", "value_error.extra"))
    if errors:
        return errors
    if not _PUBLIC_KEY.match(body["user_public_key"].strip()):
        errors.append(_field_error(["user_public_key"], "not an OpenSSH public key", "value_error"))
    if body.get("instance_type", "on-demand") not in ("on-demand", "spot"):
        errors.append(
            _field_error(
                ["instance_type"], "unexpected value; permitted: 'on-demand', 'spot'", "enum"
            )
        )
    specs = body.get("instance_specs")
    if specs is not None:
        count = specs.get("gpu_count")
        if set(specs) != {"gpu_count"} or not _check_type(count, "int") or count < 1:
            errors.append(
                _field_error(["instance_specs", "gpu_count"], "must be an integer >= 1", "value")
            )
    volume = body.get("new_volume")
    if volume is not None:
        size = volume.get("size_gb")
        if set(volume) != {"size_gb"} or not _check_type(size, "int") or size < 1:
            errors.append(_field_error(["new_volume", "size_gb"], "must be >= 1", "value"))
        if "volume_ids" in body:
            errors.append(
                _field_error(["new_volume"], "cannot be combined with volume_ids", "value")
            )
    return errors


_BOOL_QUERY = {"true": True, "false": False}
_LIST_FILTERS = {
    "include_provisioning": ("pending", "provisioning", "running"),
    "include_ready": ("ready",),
    "include_failed": ("failed", "error"),
    "include_terminated": ("terminated",),
}


class FakeLyceum:
    """The fake server. Use as a context manager, or call ``start()``/``stop()``."""

    def __init__(
        self,
        *,
        api_keys: dict[str, str] | None = None,
        orgs: tuple[str, ...] = (DEFAULT_ORG,),
        machines: Machines | None = None,
    ) -> None:
        #: api key -> the org it was created in (None: a personal key)
        self.api_keys = api_keys if api_keys is not None else {DEFAULT_KEY: None}
        self.orgs = set(orgs) | {"personal"}
        self.machines: Machines = machines or NoMachines()
        self.variants = [dict(v) for v in DEFAULT_VARIANTS]
        #: every profile the org may know, available right now or not
        self.machine_types = {v["hardware_profile"]: v["price_per_hour"] for v in self.variants}
        self.provision_outcome = "ready"
        self.provision_seconds = 0.15
        self.credit = True
        self.ip_with_port = True
        self.list_id_field: str | None = "vm_id"
        self.stay_running = False
        #: JWT session token -> its org and expiry; refresh token -> its org
        self.sessions: dict[str, Session] = {}
        self.refresh_tokens: dict[str, str | None] = {}
        self.session_ttl = 3600.0
        self.refresh_answers_token = True
        #: API keys issued through /auth/api-keys/, in order (revoked ones too)
        self.issued: list[IssuedKey] = []
        self._rewrites: list[Rewrite] = []
        self.vms: dict[str, VM] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self._injected: list[Injected] = []
        self._lose: list[str] = []
        self.lost_delay = 2.0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> FakeLyceum:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        for vm in list(self.vms.values()):
            if vm.status != "terminated":
                self.machines.stop(vm.vm_id)

    def __enter__(self) -> FakeLyceum:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- knobs ------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: str | None = None,
        after: int = 0,
        acted: bool = False,
    ) -> None:
        with self._lock:
            self._injected.append(
                Injected(status, times, method, path_contains, retry_after, after, acted)
            )

    def rewrite_next(
        self,
        answer: Callable[[Any], Any] | bytes,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        with self._lock:
            self._rewrites.append(Rewrite(answer, times, method, path_contains, content_type))

    def issue_session(self, ttl: float, org: str | None = None) -> tuple[str, str]:
        """A session token that expires in ``ttl`` seconds and its refresh token."""
        with self._lock:
            token = make_jwt(time.time() + ttl)
            self.sessions[token] = Session(org, time.time() + ttl)
            refresh = "rt_" + secrets.token_urlsafe(16)
            self.refresh_tokens[refresh] = org
            return token, refresh

    def refreshes(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == f"{API}/auth/refresh"]

    def lose_next_create(self, mode: str = "drop") -> None:
        assert mode in ("drop", "delay")
        with self._lock:
            self._lose.append(mode)

    def live_vms(self) -> list[VM]:
        with self._lock:
            self._advance_all()
            return [vm for vm in self.vms.values() if vm.status != "terminated"]

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == f"{API}/vms/create"]

    def issued_key(self, secret: str) -> IssuedKey | None:
        """The issued key whose secret this is."""
        with self._lock:
            return next((k for k in self.issued if k.secret == secret), None)

    # -- dispatch ---------------------------------------------------------------

    def handle(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            for inj in self._injected:
                if inj.times > 0 and inj.matches(rec.method, rec.path):
                    if inj.after > 0:
                        inj.after -= 1
                        continue
                    inj.times -= 1
                    if inj.acted:
                        self._route(rec, self._authenticate(rec.headers))
                    headers = {"Retry-After": inj.retry_after} if inj.retry_after else {}
                    return inj.status, {"detail": f"injected {inj.status}"}, headers
            if rec.method == "POST" and rec.path == f"{API}/auth/refresh":
                return self._refresh(rec)
            org = self._authenticate(rec.headers)
            answer = self._route(rec, org)
            for rw in self._rewrites:
                if rw.times > 0 and rw.matches(rec.method, rec.path):
                    rw.times -= 1
                    if isinstance(rw.answer, bytes):
                        raise _Raw(answer[0], rw.answer, rw.content_type)
                    return answer[0], rw.answer(answer[1]), answer[2]
            return answer

    def _refresh(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        """``POST /auth/refresh`` as api.md describes it: no Authorization header, the
        body ``{"refresh_token": str}``; the answer ``{access_token, refresh_token?}``."""
        if "authorization" in rec.headers:
            raise ApiError(400, "the refresh call takes no Authorization header")
        body = rec.body
        if not isinstance(body, dict) or set(body) != {"refresh_token"}:
            msg = "the body must be exactly {refresh_token}"
            raise ApiError(422, [_field_error(["refresh_token"], msg, "value_error")])
        if not _check_type(body["refresh_token"], "str"):
            msg = "str type expected"
            raise ApiError(422, [_field_error(["refresh_token"], msg, "type_error.str")])
        old = body["refresh_token"]
        if old not in self.refresh_tokens:
            raise ApiError(401, "Invalid Refresh Token: Refresh Token Not Found")
        org = self.refresh_tokens[old]
        token = make_jwt(time.time() + self.session_ttl)
        self.sessions[token] = Session(org, time.time() + self.session_ttl)
        answer: dict[str, Any] = {"access_token": token}
        if self.refresh_answers_token:
            del self.refresh_tokens[old]  # each refresh token works once
            new = "rt_" + secrets.token_urlsafe(16)
            self.refresh_tokens[new] = org
            answer["refresh_token"] = new
        return 200, answer, {}

    def _authenticate(self, headers: dict[str, str]) -> str:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme != "Bearer" or not token:
            raise ApiError(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})
        session = self.sessions.get(token)
        issued = self.issued_key(token)
        if session is not None:
            if session.exp <= time.time():
                raise ApiError(401, "Token has expired", {"WWW-Authenticate": "Bearer"})
            key_org = session.org
        elif token in self.api_keys:
            key_org = self.api_keys[token]
        elif issued is not None and issued.usable():
            issued.last_used = time.time()
            key_org = issued.org
        else:
            raise ApiError(401, "Invalid or expired token", {"WWW-Authenticate": "Bearer"})
        slug = headers.get("x-org-slug")
        if slug is not None and slug not in self.orgs:
            raise ApiError(403, f"You do not have access to organization '{slug}'")
        # api.md: the key's own org, then X-Org-Slug, then the personal org
        return key_org or slug or "personal"

    def _route(self, rec: Recorded, org: str) -> tuple[int, Any, dict[str, str]]:
        m, p = rec.method, rec.path
        if m == "GET" and p == f"{API}/machine-types":
            types = self.machine_types
            return (
                200,
                {
                    "machine_types": [
                        {"hardware_profile": k, "price_per_hour": v} for k, v in types.items()
                    ]
                },
                {},
            )
        if m == "GET" and p == f"{API}/user/org":
            return (
                200,
                {
                    "org_id": f"org_{org}",
                    "slug": org,
                    "name": org.replace("-", " ").title(),
                    "is_personal": org == "personal",
                    "is_key_scoped": self._key_org(self._token(rec)) is not None,
                },
                {},
            )
        if p == f"{API}/auth/api-keys/":
            if m == "GET":
                return 200, [k.listed() for k in self.issued if not k.revoked], {}
            if m == "POST":
                return self._issue_key(rec, org)
            raise ApiError(405, "Method Not Allowed")
        if match := re.fullmatch(rf"{API}/auth/api-keys/([^/]+)(/toggle)?", p):
            if m != ("PATCH" if match.group(2) else "DELETE"):
                raise ApiError(405, "Method Not Allowed")
            key = next((k for k in self.issued if k.id == match.group(1) and not k.revoked), None)
            if key is None:
                raise ApiError(404, "API key not found")
            if match.group(2):
                key.is_active = not key.is_active
                return 200, key.listed(), {}
            key.revoked = True
            return 200, {"message": "API key deleted"}, {}
        if m == "GET" and p == f"{API}/vms/availability":
            return 200, {"available_instance_variants": [dict(v) for v in self.variants]}, {}
        if m == "POST" and p == f"{API}/vms/create":
            return self._create(rec, org)
        if m == "GET" and p == f"{API}/vms/list":
            return self._list(rec, org)
        if m == "GET" and p == f"{API}/storage/block":
            return 200, {"volumes": [dict(v) for v in self.volumes.values() if v["org"] == org]}, {}
        if match := re.fullmatch(rf"{API}/storage/block/([^/]+)", p):
            if m != "DELETE":
                raise ApiError(405, "Method Not Allowed")
            return self._delete_volume(match.group(1), org)
        if match := re.fullmatch(rf"{API}/vms/([^/]+)/status", p):
            if m != "GET":
                raise ApiError(405, "Method Not Allowed")
            return 200, self._describe(self._vm(match.group(1), org)), {}
        if match := re.fullmatch(rf"{API}/vms/([^/]+)", p):
            if m != "DELETE":
                raise ApiError(405, "Method Not Allowed")
            return self._delete(self._vm(match.group(1), org))
        raise ApiError(404, "Not Found")

    @staticmethod
    def _token(rec: Recorded) -> str:
        return rec.headers.get("authorization", "").partition(" ")[2]

    def _key_org(self, token: str) -> str | None:
        """The org an API key was created in (None: a personal key, or no key)."""
        issued = self.issued_key(token)
        return issued.org if issued is not None else self.api_keys.get(token)

    # -- API keys -----------------------------------------------------------------

    def _issue_key(self, rec: Recorded, org: str) -> tuple[int, Any, dict[str, str]]:
        body = rec.body
        if errors := validate_key_create(body):
            raise ApiError(422, errors)
        expires = body.get("expires_at")
        key = IssuedKey(
            id=str(uuid4()),
            key_name=body["key_name"],
            secret="lk_" + secrets.token_hex(24),
            org=None if org == "personal" else org,
            created=time.time(),
            expires=_parse_time(expires) if expires is not None else None,
        )
        self.issued.append(key)
        return 200, {"key_name": key.key_name, "api_key": key.secret}, {}

    # -- VMs --------------------------------------------------------------------

    def _create(self, rec: Recorded, org: str) -> tuple[int, Any, dict[str, str]]:
        body = rec.body
        if errors := validate_create(body):
            raise ApiError(422, errors)
        if not self.credit:
            raise ApiError(402, "Insufficient credits. Please add credits to your account.")
        profile = body.get("hardware_profile", "a100")
        itype = body.get("instance_type", "on-demand")
        variant = next(
            (
                v
                for v in self.variants
                if v["hardware_profile"] == profile and v["instance_type"] == itype
            ),
            None,
        )
        if variant is None:
            raise ApiError(400, f"Hardware profile '{profile}' is not available for {itype}")
        # api.md: the server defaults to one GPU (none on a profile without GPUs)
        default = 1 if max(variant["available_gpus_per_instance"], default=0) > 0 else 0
        count = body.get("instance_specs", {}).get("gpu_count", default)
        if count not in variant["available_gpus_per_instance"]:
            raise ApiError(400, f"gpu_count {count} is not available for {profile}")
        vm = VM(
            vm_id="vm-" + secrets.token_hex(6),
            org=org,
            hardware_profile=profile,
            instance_type=itype,
            gpu_count=count,
            display_name=body.get("display_name"),
            public_key=body["user_public_key"].strip(),
            created=time.time(),
        )
        answer: dict[str, Any] = {
            "vm_id": vm.vm_id,
            "status": vm.status,
            "created_at": _iso(vm.created),
            "name": vm.vm_id,
        }
        if vm.display_name is not None:
            answer["display_name"] = vm.display_name
        if "new_volume" in body:
            vol = {
                "volume_id": "vol-" + secrets.token_hex(5),
                "size_gb": body["new_volume"]["size_gb"],
                "status": "attached",
                "location": "eu-central",
                "attached_vm_id": vm.vm_id,
                "mount_path": "/mnt/data",
                "org": org,
            }
            self.volumes[vol["volume_id"]] = vol
            vm.volumes.append(vol)
            answer["volume"] = {
                "name": vol["volume_id"],
                "size_gb": vol["size_gb"],
                "status": "creating",
            }
            answer["volume_notice"] = (
                "Block volumes are billed separately and are kept when the VM is deleted."
            )
        self.vms[vm.vm_id] = vm
        if self._lose:
            if self._lose.pop(0) == "drop":
                raise _Drop()
            raise _Late((200, answer, {}), self.lost_delay)
        return 200, answer, {}

    def _vm(self, vm_id: str, org: str) -> VM:
        vm = self.vms.get(vm_id)
        if vm is None or vm.org != org:
            raise ApiError(404, "VM not found")
        self._advance(vm)
        return vm

    def _advance_all(self) -> None:
        for vm in self.vms.values():
            self._advance(vm)

    def _advance(self, vm: VM) -> None:
        """Move a VM along pending -> provisioning -> running -> ready (or a failure)."""
        if vm.status in ("ready", "failed", "error", "terminated"):
            return
        age = time.time() - vm.created
        step = self.provision_seconds / 3
        if age < step:
            return
        vm.status = "provisioning"
        if self.provision_outcome == "stuck" or age < 2 * step:
            return
        if self.provision_outcome in ("failed", "error"):
            vm.status = self.provision_outcome
            return
        if vm.status != "running":
            vm.status = "running"
        if age < 3 * step or vm.ip_address:
            return
        host, port, user = self.machines.start(vm.vm_id, vm.public_key)
        vm.ip_address = f"{host}:{port}" if self.ip_with_port else host
        vm.ssh_user = user
        if not self.stay_running:
            vm.status = "ready"

    def _describe(self, vm: VM) -> dict[str, Any]:
        end = vm.ended or time.time()
        uptime = int(end - vm.created)
        price = next(
            (
                v["price_per_hour"]
                for v in self.variants
                if v["hardware_profile"] == vm.hardware_profile
                and v["instance_type"] == vm.instance_type
            ),
            0.0,
        )
        d: dict[str, Any] = {
            "status": vm.status,
            "instance_type": vm.instance_type,
            "display_name": vm.display_name,
            "name": vm.vm_id,
            "ip_address": vm.ip_address,
            "hardware_profile": vm.hardware_profile,
            "gpu_count": vm.gpu_count,
            "croesus_billed": round(price * vm.gpu_count * (end - vm.created) / 3600, 6),
            "uptime_seconds": uptime,
            "created_at": _iso(vm.created),
            "volumes": [
                {k: v[k] for k in ("volume_id", "size_gb", "mount_path")} for v in vm.volumes
            ],
        }
        if vm.ssh_user != LOGIN_USER:
            d["ssh_user"] = vm.ssh_user
        return d

    def _list(self, rec: Recorded, org: str) -> tuple[int, Any, dict[str, str]]:
        wanted: set[str] = set()
        for name, statuses in _LIST_FILTERS.items():
            raw = rec.query.get(name, ["true"])[-1].lower()
            if raw not in _BOOL_QUERY:
                msg = "value could not be parsed to a boolean"
                raise ApiError(422, [_field_error([name], msg, "type_error.bool", "query")])
            if _BOOL_QUERY[raw]:
                wanted.update(statuses)
        for name in rec.query:
            if name not in _LIST_FILTERS:
                msg = "unexpected query parameter"
                raise ApiError(422, [_field_error([name], msg, "value_error.extra", "query")])
        self._advance_all()
        vms = [
            # api.md lists no id among the status fields; a list entry needs one
            {**({self.list_id_field: vm.vm_id} if self.list_id_field else {}), **self._describe(vm)}
            for vm in self.vms.values()
            if vm.org == org and vm.status in wanted
        ]
        return 200, {"vms": vms}, {}

    def preempt(self, vm_id: str) -> None:
        """Lyceum takes a spot VM back: it is terminated and its machine is gone (what
        Lyceum does then is not documented; terminated is the state its API has)."""
        vm = self.vms[vm_id]
        assert vm.instance_type == "spot" and vm.status in ("running", "ready"), vm.status
        vm.status = "terminated"
        vm.ended = time.time()
        vm.ip_address = None
        self.machines.stop(vm.vm_id)

    def _delete(self, vm: VM) -> tuple[int, Any, dict[str, str]]:
        if vm.status == "terminated":
            raise ApiError(404, "VM not found")
        vm.status = "terminated"
        vm.ended = time.time()
        vm.ip_address = None
        self.machines.stop(vm.vm_id)
        detached = []
        for vol in vm.volumes:
            vol["status"] = "available"
            vol["attached_vm_id"] = None
            detached.append({k: vol[k] for k in ("volume_id", "size_gb", "mount_path")})
        vm.volumes = []
        return 200, {"message": f"VM {vm.vm_id} stopped", "detached_volumes": detached}, {}

    def _delete_volume(self, volume_id: str, org: str) -> tuple[int, Any, dict[str, str]]:
        vol = self.volumes.get(volume_id)
        if vol is None or vol["org"] != org:
            raise ApiError(404, "Volume not found")
        if vol["attached_vm_id"] is not None:
            raise ApiError(409, f"Volume {volume_id} is attached to {vol['attached_vm_id']}")
        del self.volumes[volume_id]
        return 200, {"message": f"Volume {volume_id} deleted"}, {}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeLyceum
    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: without this, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms a request on a kept-alive connection)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _serve(self) -> None:
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, url.path, parse_qs(url.query), headers, None)
        fake = self.server_fake
        with fake._lock:
            fake.requests.append(rec)
        extra: dict[str, str] = {}
        try:
            if raw:
                if "application/json" not in headers.get("content-type", ""):
                    raise ApiError(415, "Content-Type must be application/json")
                try:
                    rec.body = json.loads(raw)
                except ValueError:
                    raise ApiError(
                        422,
                        [{"loc": ["body"], "msg": "invalid JSON", "type": "value_error.json"}],
                    ) from None
            elif self.command in ("POST", "PATCH", "PUT"):
                rec.body = None
            status, payload, extra = fake.handle(rec)
        except _Raw as raw_answer:
            rec.status = raw_answer.status
            try:
                self.send_response(raw_answer.status)
                self.send_header("Content-Type", raw_answer.content_type)
                self.send_header("Content-Length", str(len(raw_answer.body)))
                self.end_headers()
                self.wfile.write(raw_answer.body)
            except OSError:
                self.close_connection = True
            return
        except _Late as late:
            time.sleep(late.delay)  # outside the lock: other requests go on meanwhile
            status, payload, extra = late.answer
        except ApiError as e:
            status, payload, extra = e.status, {"detail": e.detail}, e.headers
        except _Drop:
            rec.status = -1
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        rec.status = status
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve


@pytest.fixture
def lyceum_sshd(sshd: Any, monkeypatch: pytest.MonkeyPatch, trainctl_home: Any) -> Any:
    """A running fake whose VMs are machines of the test SSH server, with trainctl
    pointed at it: short polls, and a guard that looks every 0.2 s (grace 3 s)."""
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text(
        "[providers.lyceum]\npoll_interval = 0.02\nready_timeout = 10\n"
        "[guard]\ninterval = 0.2\ngrace = 3\n"
    )
    with FakeLyceum(machines=SshdMachines(sshd)) as fake:
        monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", fake.url)
        monkeypatch.setenv("LYCEUM_API_KEY", DEFAULT_KEY)
        monkeypatch.setenv("LYCEUM_ORG", DEFAULT_ORG)
        yield fake

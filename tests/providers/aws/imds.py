"""An IMDSv2 stand-in for the machines the SSM agent stand-in sandboxes.

One ``ThreadingHTTPServer`` on 127.0.0.1 serves every instance, each under its own
path prefix: instance ``i-abc`` is ``http://127.0.0.1:PORT/i-abc/`` (``endpoint``),
which its sandbox gets as ``AWS_EC2_METADATA_SERVICE_ENDPOINT``; botocore, like any
client, appends ``latest/...`` to it (``IMDSFetcher._construct_url``). What it
serves is read from moto's EC2 backend, so it is the instance's own id, region and
instance profile.

Under a prefix it answers as IMDS does on an instance launched with
``HttpTokens=required`` (as trainctl launches them). Amazon EC2 User Guide, "Use the
Instance Metadata Service to access instance metadata" and "Responses and error
messages"; botocore/utils.py ``IMDSFetcher._fetch_metadata_token`` and
``InstanceMetadataFetcher``:

- ``PUT latest/api/token`` needs ``X-aws-ec2-metadata-token-ttl-seconds``, at least
  one second and at most six hours (21,600); without it, or out of range, ``400 -
  Missing or Invalid Parameters``. The token comes back as text/plain, with the TTL
  in the same header of the answer.
- every GET (or HEAD) needs ``X-aws-ec2-metadata-token``: a missing, expired or
  other instance's token ("the token is an instance-specific key") is ``401 -
  Unauthorized``.
- everything is text/plain; a resource that is not there is ``404``. A path ending
  in ``/`` is a listing (``iam/security-credentials/``: the role name, one line);
  a leaf may be asked with a trailing ``/`` too (botocore asks for
  ``placement/availability-zone/``).
- ``iam/security-credentials/<role>`` is the JSON of "Retrieve security credentials
  from instance metadata" (Code, LastUpdated, Type ``AWS-HMAC``, AccessKeyId,
  SecretAccessKey, Token, Expiration), and 404 without an instance profile. The
  credentials are minted by moto's STS for the profile's role with the instance id as
  session name, so their ``aws:userid`` is ``<role id>:<instance id>`` as on EC2;
  each one handed out is recorded in ``handed_out``.
- ``dynamic/instance-identity/document``: the identity document's JSON.
- ``meta-data/spot/instance-action``: 404, until ``notice`` gives the instance its
  spot interruption notice.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from moto.ec2.models import ec2_backends
from moto.sts.models import sts_backends

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21_600
#: how long credentials handed out stay valid (as instance profile credentials do)
CREDENTIALS_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Handed:
    """Credentials of an instance profile's role, as handed to an instance."""

    instance_id: str
    role: str
    access_key_id: str
    expiration: datetime


class IMDS:
    def __init__(self, account: str) -> None:
        self.account = account
        self.handed_out: list[Handed] = []
        #: spot interruption notices served, by instance id (``notice``)
        self.notices: dict[str, dict[str, str]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token: (instance id, expiry)
        self._credentials: dict[str, tuple[Handed, dict[str, str]]] = {}  # by instance id
        self._lock = threading.Lock()
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_PUT(self) -> None:
                self._answer(*imds.put(self.path, self.headers.get(TTL_HEADER)))

            def do_GET(self) -> None:
                self._answer(*imds.get(self.path, self.headers.get(TOKEN_HEADER)))

            def do_HEAD(self) -> None:
                self._answer(*imds.get(self.path, self.headers.get(TOKEN_HEADER)), body=False)

            def _answer(
                self, status: int, text: str, headers: dict[str, str], body: bool = True
            ) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notice(self, instance_id: str, action: str = "terminate") -> None:
        """Serve the instance the spot interruption notice: ``spot/instance-action``,
        404 until then, answers ``{"action", "time"}`` (the time two minutes on), as
        in "Spot Instance interruption notices" (Amazon EC2 User Guide)."""
        when = datetime.now(timezone.utc) + timedelta(minutes=2)
        self.notices[instance_id] = {"action": action, "time": _iso(when)}

    def endpoint(self, instance_id: str) -> str:
        """``AWS_EC2_METADATA_SERVICE_ENDPOINT`` for ``instance_id``'s sandbox."""
        return f"{self.url}/{instance_id}/"

    def instance_of(self, access_key_id: str) -> str | None:
        """The instance that was handed ``access_key_id`` (None: no instance was)."""
        found = [h.instance_id for h in self.handed_out if h.access_key_id == access_key_id]
        return found[0] if found else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the service -----------------------------------------------------------------

    def put(self, path: str, ttl: str | None) -> tuple[int, str, dict[str, str]]:
        instance_id, rest = _split(path)
        if self._instance(instance_id) is None or rest != "latest/api/token":
            return _not_found()
        if ttl is None or not ttl.strip().isdigit() or not 1 <= int(ttl) <= MAX_TTL:
            return 400, "Missing or Invalid Parameters", {}
        token = secrets.token_urlsafe(42)
        with self._lock:
            self._tokens[token] = (instance_id, time.monotonic() + int(ttl))
        return 200, token, {TTL_HEADER: str(int(ttl))}

    def get(self, path: str, token: str | None) -> tuple[int, str, dict[str, str]]:
        instance_id, rest = _split(path)
        instance = self._instance(instance_id)
        if instance is None:
            return _not_found()
        with self._lock:
            owner, expiry = self._tokens.get(token or "", ("", 0.0))
        if owner != instance_id or time.monotonic() >= expiry:
            return 401, "Unauthorized", {}
        text = self._resource(instance, rest)
        return (200, text, {}) if text is not None else _not_found()

    def _resource(self, instance: Any, path: str) -> str | None:
        role = self._role(instance)
        leaf = path.rstrip("/")
        if leaf == "latest/meta-data/instance-id":
            return instance.id
        if leaf == "latest/meta-data/placement/region":
            return instance.region_name
        if leaf == "latest/meta-data/placement/availability-zone":
            return instance.placement.zone
        if leaf == "latest/meta-data/iam/security-credentials":
            return role.name if role is not None else None
        if role is not None and leaf == f"latest/meta-data/iam/security-credentials/{role.name}":
            return json.dumps(self._credentials_for(instance, role), indent=2)
        if leaf == "latest/meta-data/spot/instance-action":
            notice = self.notices.get(instance.id)
            return json.dumps(notice) if notice else None
        if leaf == "latest/dynamic/instance-identity/document":
            return json.dumps(
                {
                    "accountId": self.account,
                    "architecture": instance.architecture,
                    "availabilityZone": instance.placement.zone,
                    "imageId": instance.image_id,
                    "instanceId": instance.id,
                    "instanceType": instance.instance_type,
                    "pendingTime": _iso(instance.launch_time),
                    "privateIp": instance.private_ip,
                    "region": instance.region_name,
                    "version": "2017-09-30",
                },
                indent=2,
            )
        return None

    def _instance(self, instance_id: str) -> Any | None:
        """moto's record of ``instance_id``, in whichever region it is."""
        if not instance_id.startswith("i-"):
            return None
        for backend in list(ec2_backends[self.account].values()):
            try:
                return backend.get_instance(instance_id)
            except Exception:
                continue
        return None

    def _role(self, instance: Any) -> Any | None:
        """The role of the instance profile associated with ``instance`` (None: none)."""
        backend = ec2_backends[self.account][instance.region_name]
        association = backend.iam_instance_profile_associations.get(instance.id)
        roles = association.iam_instance_profile.roles if association else []
        return roles[0] if roles else None

    def _credentials_for(self, instance: Any, role: Any) -> dict[str, str]:
        """The role's credentials for ``instance``: the same until they near their
        expiry, as IMDS rotates them."""
        with self._lock:
            held = self._credentials.get(instance.id)
            now = datetime.now(timezone.utc)
            if (
                held
                and held[0].role == role.name
                and held[0].expiration - now > timedelta(minutes=15)
            ):
                return held[1]
            partition = role.arn.split(":")[1]
            assumed = sts_backends[self.account][partition].assume_role(
                region_name=instance.region_name,
                role_session_name=instance.id,
                role_arn=role.arn,
                policy=None,
                duration=CREDENTIALS_SECONDS,
                external_id=None,
            )
            expiration = assumed.expiration.replace(tzinfo=timezone.utc)
            handed = Handed(instance.id, role.name, assumed.access_key_id, expiration)
            document = {
                "Code": "Success",
                "LastUpdated": _iso(now),
                "Type": "AWS-HMAC",
                "AccessKeyId": assumed.access_key_id,
                "SecretAccessKey": assumed.secret_access_key,
                "Token": assumed.session_token,
                "Expiration": _iso(expiration),
            }
            self._credentials[instance.id] = (handed, document)
            self.handed_out.append(handed)
            return document


def _split(path: str) -> tuple[str, str]:
    """``/i-abc/latest/...?query`` as ``("i-abc", "latest/...")``."""
    instance_id, _, rest = path.split("?", 1)[0].lstrip("/").partition("/")
    return instance_id, rest


def _not_found() -> tuple[int, str, dict[str, str]]:
    return 404, "Not Found", {}


def _iso(moment: datetime) -> str:
    """IMDS's timestamps: UTC, to the second, with ``Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

"""``--store``: an object store where a machine's guard saves its jobs' work while no
client is attached, and where ``download`` finds it once the machine is gone.

``--store s3://bucket/prefix`` names any S3-compatible store (AWS S3, Cloudflare R2,
Backblaze B2, MinIO): ``endpoint_url`` in the ``[object_store]`` table of the config
file (or ``TRAINCTL_OBJECT_STORE_ENDPOINT``) says where one other than AWS S3 is.
``--store default`` is the provider's own store where it has one: on AWS, the
machine's own prefix of trainctl's staging bucket. ``--store none`` switches off a
``url`` set in ``[object_store]``.

Credentials are the least that can write under the prefix:

- on AWS, ``--store default`` uses the instance profile's role, which may already
  write only its own machine's prefix of the staging bucket (``${aws:userid}``, see
  ``providers/aws/setup.py``): nothing is handed to the machine;
- any other store needs an access key the user scopes to that bucket and prefix
  (``TRAINCTL_OBJECT_STORE_ACCESS_KEY_ID`` and ``..._SECRET_ACCESS_KEY``, or the
  environment variables the table names, or ``access_key_id`` and
  ``secret_access_key`` in the table of a config file of mode 0600). It travels to
  the machine on stdin and is kept there in a file of mode 0600; it is never on a
  command line, in output or in the state store, which keeps only where the work
  went (``Store.save_object_store``).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput, NotFound, OperationFailed
from .home import config_path, load_config
from .remote.base import Progress
from .runtime import objstore as wire

DEFAULT = "default"
NONE = "none"
ENDPOINT_ENV = "TRAINCTL_OBJECT_STORE_ENDPOINT"
KEY_ENV = "TRAINCTL_OBJECT_STORE_ACCESS_KEY_ID"
SECRET_ENV = "TRAINCTL_OBJECT_STORE_SECRET_ACCESS_KEY"
TOKEN_ENV = "TRAINCTL_OBJECT_STORE_SESSION_TOKEN"
#: how the machine signs: with the access key it was given, or its instance role's
KEYS, INSTANCE_ROLE = "keys", "instance-role"

#: S3's bucket names (also R2's and B2's): 3-63 lowercase letters, digits, '.' and '-'
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KNOWN = {
    "url",
    "endpoint_url",
    "region",
    "access_key_id_env",
    "secret_access_key_env",
    "session_token_env",
    "access_key_id",
    "secret_access_key",
}


@dataclass
class Target:
    """Where one machine's jobs are saved: ``<prefix>/<job-id>/checkpoints/<rel>`` and
    ``<prefix>/<job-id>/log`` in ``bucket``."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    credentials: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def spec(self) -> dict[str, Any]:
        """The guard's ``store`` policy (never a secret)."""
        return {
            "url": self.url,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint": self.endpoint,
            "region": self.region,
            "credentials": "secret" if self.credentials == KEYS else INSTANCE_ROLE,
        }


def table() -> dict[str, Any]:
    """The ``[object_store]`` table of the config file (not ``[store]``, the state
    store's)."""
    found = load_config().get("object_store", {})
    if not isinstance(found, dict):
        raise BadInput("[object_store] in the config file must be a table")
    unknown = sorted(set(found) - _KNOWN)
    if unknown:
        raise BadInput(
            f"[object_store] in the config file: unknown key {unknown[0]!r} "
            f"(known: {', '.join(sorted(_KNOWN))})"
        )
    return found


def parse_url(value: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``."""
    m = re.match(r"^s3://([^/]*)(?:/(.*))?$", value.strip())
    bucket, prefix = (m.group(1), (m.group(2) or "").strip("/")) if m else ("", "")
    if not m or not _BUCKET.match(bucket) or ".." in bucket:
        raise BadInput(
            f"bad --store {value!r}: expected s3://BUCKET/PREFIX (a bucket name of 3-63 "
            f"lowercase letters, digits, '.' or '-'), {DEFAULT} or {NONE}"
        )
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise BadInput(f"bad --store {value!r}: the prefix has an empty, '.' or '..' part")
    return bucket, prefix


def requested(flag: str | None) -> str | None:
    """What ``--store`` (or, when not given, ``url`` in ``[object_store]``) asks for:
    a checked ``s3://`` URL, ``DEFAULT``, or None (no store)."""
    value = flag if flag is not None else table().get("url")
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"[object_store] url must be a string, not {value!r}")
    text = value.strip()
    if text.lower() == NONE:
        return None
    if text.lower() == DEFAULT:
        return DEFAULT
    parse_url(text)
    return text


def endpoint() -> str | None:
    found = os.environ.get(ENDPOINT_ENV) or table().get("endpoint_url")
    if found is not None and not re.match(r"^https?://[^/\s]+", str(found)):
        raise BadInput(f"bad object store endpoint {found!r}: expected https://HOST[:PORT]")
    return str(found).rstrip("/") if found else None


def access_key(required: bool = True) -> dict[str, str] | None:
    """The access key the user configured for the store (see the module docstring);
    None, or with ``required`` a ``BadInput``, when there is none."""
    t = table()
    names = (
        str(t.get("access_key_id_env") or KEY_ENV),
        str(t.get("secret_access_key_env") or SECRET_ENV),
        str(t.get("session_token_env") or TOKEN_ENV),
    )
    key_id, secret, token = (os.environ.get(n) for n in names)
    if not (key_id and secret) and (t.get("access_key_id") or t.get("secret_access_key")):
        path = config_path()
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise BadInput(
                f"{path} holds object store keys but others may read it",
                hint=f"chmod 600 {path}, or put the keys in environment variables",
            )
        key_id, secret = t.get("access_key_id"), t.get("secret_access_key")
    if key_id and secret:
        found = {"AccessKeyId": str(key_id), "SecretAccessKey": str(secret)}
        if token:
            found["Token"] = token
        return found
    if required:
        raise BadInput(
            f"no access key for the object store: set {names[0]} and {names[1]}",
            hint="use a key that can write only under the --store prefix; on AWS, "
            "--store default needs none",
        )
    return None


def target_for(url: str) -> Target:
    """The target of a user's ``s3://`` URL, with the configured endpoint and region."""
    bucket, prefix = parse_url(url)
    where = endpoint()
    region = table().get("region")
    if region is None and where is None:
        region = bucket_region(bucket)
    return Target(bucket, prefix, where, str(region) if region else None, KEYS)


def bucket_region(bucket: str) -> str:
    """The AWS region of ``bucket``, from the ``x-amz-bucket-region`` header S3 sends
    whoever asks (even when it refuses the request)."""
    req = urllib.request.Request(f"https://{bucket}.s3.amazonaws.com/", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - https only
            region = resp.headers.get("x-amz-bucket-region")
    except urllib.error.HTTPError as e:
        region = e.headers.get("x-amz-bucket-region")
    except OSError as e:
        raise BadInput(
            f"cannot ask AWS S3 where bucket {bucket} is ({e})",
            hint="set region (and, for a store other than AWS S3, endpoint_url) in [object_store]",
        ) from None
    if not region:
        raise BadInput(f"AWS S3 has no bucket {bucket}", hint="set endpoint_url in [object_store]")
    return region


# --- reading back ----------------------------------------------------------------------


def fetch(
    saved: dict[str, Any],
    creds: dict[str, str],
    remote_path: str,
    local_path: str | Path,
    *,
    progress: Progress | None = None,
) -> Path:
    """``download`` from the store: ``remote_path`` is the checkpoint directory of a
    job of the machine (as given to the job, relative to the synced directory) or a
    path inside it; the newest job that saved something there answers. A directory's
    contents land in ``local_path``; a file lands at ``local_path`` (or inside it)."""
    spec = {k: saved.get(k) for k in ("bucket", "prefix", "endpoint", "region")}
    store = wire.Store(spec, lambda: creds)
    wanted = posixpath.normpath(remote_path.strip()).strip("/")
    if remote_path.startswith("/") or wanted.startswith(".."):
        raise BadInput(
            f"the machine is gone: its store holds only checkpoint directories, "
            f"given relative to the synced directory (not {remote_path!r})"
        )
    asked = []
    for job in reversed(saved.get("jobs") or []):
        base = posixpath.normpath(job.get("checkpoint_dir") or "checkpoints").strip("/")
        if wanted == base:
            sub = ""
        elif wanted.startswith(base + "/"):
            sub = wanted[len(base) + 1 :]
        else:
            asked.append(base)
            continue
        root = store.key(f"{job['id']}/checkpoints/")
        try:
            listed = store.list(root + sub)
        except wire.Failed as e:
            raise OperationFailed(f"cannot read {store.where(root)}: {e}") from None
        inside = root + sub
        objects = [
            (k, n) for k, n in listed if not sub or k == inside or k.startswith(inside + "/")
        ]
        if objects:
            return _land(store, objects, root + sub, local_path, progress)
    where = saved.get("url")
    raise NotFound(
        f"the machine is gone and its store {where} has nothing under {remote_path!r}",
        hint="its jobs saved " + ", ".join(sorted(set(asked))) if asked else None,
    )


def _land(
    store: wire.Store,
    objects: list[tuple[str, int]],
    base: str,
    local_path: str | Path,
    progress: Progress | None,
) -> Path:
    dest = Path(local_path)
    single = len(objects) == 1 and objects[0][0] == base
    if single:
        target = dest / posixpath.basename(base) if dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        _get(store, objects[0][0], target, progress)
        return target
    for key, _size in objects:
        rel = key[len(base) :].lstrip("/")
        target = dest.joinpath(*rel.split("/"))
        if not target.resolve().is_relative_to(dest.resolve()):
            continue  # a key that would land outside the destination
        target.parent.mkdir(parents=True, exist_ok=True)
        _get(store, key, target, progress)
    return dest


def _get(store: wire.Store, key: str, target: Path, progress: Progress | None) -> None:
    if progress:
        progress(f"from {store.where(key)}")
    try:
        store.get_file(key, str(target))
    except wire.Failed as e:
        raise OperationFailed(str(e)) from None

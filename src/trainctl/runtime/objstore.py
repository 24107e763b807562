"""An S3-compatible object store, spoken with the standard library: runs on the machine.

The guard uploads each job's settled checkpoints and its log with it (see
``Uploader``); the client reads them back with it when the machine is gone. Any store
that speaks the S3 API with Signature Version 4 works: AWS S3, Cloudflare R2,
Backblaze B2, MinIO. A *spec* says where:

``{"bucket", "prefix", "endpoint", "region", "credentials"}``
    ``endpoint`` (``https://<account>.r2.cloudflarestorage.com``, MinIO's URL) is
    addressed path-style (``endpoint/bucket/key``); without one, AWS S3 in
    ``region``, virtual-hosted (``bucket.s3.region.amazonaws.com``), unless the
    machine's ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` names another.
    ``credentials`` is ``"secret"`` (an access key the client left in a file of mode
    0600, JSON ``{"AccessKeyId", "SecretAccessKey", "Token"?}``) or
    ``"instance-role"`` (the EC2 instance profile's, read from IMDSv2).

Objects are written with one PUT each, so each appears whole or not at all; the
payload's SHA-256 is signed, so a store that receives other bytes than were hashed
(a file changed while it was sent) refuses the object. A file larger than
``MAX_SINGLE_PUT`` (S3's limit for one PUT) is not uploaded: multipart uploads are
not implemented. A message never holds a credential.
Kept compatible with Python 3.8.
"""

import datetime
import hashlib
import http.client
import json
import os
import re
import time
import urllib.parse
import xml.etree.ElementTree as ET

try:  # imported as part of the trainctl package (tests, the client)
    from . import files as settle
    from . import release
except ImportError:  # run on the machine, from the runtime's directory
    import files as settle
    import release

#: the largest object one PUT may write (S3, R2 and B2 all stop at 5 GiB)
MAX_SINGLE_PUT = 5 * 1024**3
TIMEOUT = 60.0
CHUNK = 1 << 20
#: instance-role credentials are read again this long before they expire
REFRESH_SECONDS = 300.0
#: a running job's log larger than this is sent again at most every LOG_PAUSE_SECONDS
#: (it is sent whole each time); always when the job ends and before a release
LOG_PAUSE_BYTES = 1 << 20
LOG_PAUSE_SECONDS = 30.0


class Failed(Exception):
    """A call the store refused or that did not reach it (the message is safe to show)."""


# --- signing ---------------------------------------------------------------------------


quote = release.quote
sign = release.sign


# --- the store -------------------------------------------------------------------------


class Store:
    """One bucket of one store, with credentials from ``creds()`` (called per request,
    so that expiring ones are renewed)."""

    def __init__(self, spec, creds):
        self.bucket = spec["bucket"]
        self.prefix = (spec.get("prefix") or "").strip("/")
        self.region = spec.get("region") or "us-east-1"
        self.creds = creds
        endpoint = (
            spec.get("endpoint")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if endpoint:
            parts = urllib.parse.urlsplit(endpoint)
            self.scheme, self.host = parts.scheme or "https", parts.netloc
            self.base = parts.path.rstrip("/") + "/" + quote(self.bucket, safe="")
        elif "." in self.bucket:  # a dotted name does not match S3's wildcard certificate
            self.scheme, self.host = "https", "s3.%s.amazonaws.com" % self.region
            self.base = "/" + self.bucket
        else:
            self.scheme, self.host = "https", "%s.s3.%s.amazonaws.com" % (self.bucket, self.region)
            self.base = ""

    def key(self, rel):
        return "%s/%s" % (self.prefix, rel) if self.prefix else rel

    def where(self, key):
        return "s3://%s/%s" % (self.bucket, key)

    def _request(self, method, key, query=None, body=None, size=0, payload_hash=None):
        """One signed request; ``body`` is bytes or an open file of ``size`` bytes.
        Returns (status, headers, response) with the response still to be read."""
        path = self.base + "/" + quote(key) if key is not None else (self.base or "/")
        query = query or {}
        if payload_hash is None:
            payload_hash = hashlib.sha256(body if isinstance(body, bytes) else b"").hexdigest()
        headers = {}
        if body is not None:
            headers["content-length"] = str(size if not isinstance(body, bytes) else len(body))
        when = datetime.datetime.now(datetime.timezone.utc)
        headers = sign(
            method, self.host, path, query, headers, payload_hash, self.region, self.creds(), when
        )
        target = path
        if query:
            target += "?" + "&".join(
                "%s=%s" % (quote(k, safe=""), quote(str(v), safe="")) for k, v in query.items()
            )
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = kind(self.host, timeout=TIMEOUT)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            if isinstance(body, bytes):
                conn.send(body)
            elif body is not None:
                left = size
                while left > 0:
                    chunk = body.read(min(CHUNK, left))
                    if not chunk:
                        raise Failed("the file shrank while it was sent")
                    conn.send(chunk)
                    left -= len(chunk)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise Failed("cannot reach %s: %s" % (self.host, e)) from None
        return conn, resp

    def _simple(self, method, key, query=None, body=None, size=0, payload_hash=None, ok=(200,)):
        conn, resp = self._request(method, key, query, body, size, payload_hash)
        try:
            data = resp.read()
        finally:
            conn.close()
        if resp.status not in ok:
            raise Failed(
                "%s %s answered %d: %s"
                % (method, self.where(key or ""), resp.status, _error(data) or resp.reason)
            )
        return resp.status, data

    def put_bytes(self, key, data):
        self._simple("PUT", key, body=data)

    def put_file(self, key, path, size):
        """PUT the first ``size`` bytes of ``path`` (a log grows meanwhile: what was
        there when it was looked at is sent, never more)."""
        if size > MAX_SINGLE_PUT:
            raise Failed(
                "%s is %d bytes, more than one PUT may write (%d); multipart uploads are "
                "not implemented" % (path, size, MAX_SINGLE_PUT)
            )
        h = hashlib.sha256()
        with open(path, "rb") as f:
            left = size
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise Failed("%s shrank while it was read" % path)
                h.update(chunk)
                left -= len(chunk)
            f.seek(0)
            self._simple("PUT", key, body=f, size=size, payload_hash=h.hexdigest())

    def list(self, prefix):
        """[(key, size)] of the objects whose key starts with ``prefix``."""
        found, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            _, data = self._simple("GET", None, query=query)
            root = ET.fromstring(data)
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for item in root.iter(ns + "Contents"):
                found.append((item.findtext(ns + "Key"), int(item.findtext(ns + "Size") or 0)))
            token = root.findtext(ns + "NextContinuationToken")
            if root.findtext(ns + "IsTruncated") != "true" or not token:
                return found

    def get_file(self, key, dest):
        """GET ``key`` into ``dest``, written under a temporary name and renamed into
        place once complete."""
        conn, resp = self._request("GET", key)
        tmp = "%s.trainctl-part-%d" % (dest, os.getpid())
        try:
            if resp.status != 200:
                raise Failed(
                    "GET %s answered %d: %s"
                    % (self.where(key), resp.status, _error(resp.read()) or resp.reason)
                )
            with open(tmp, "wb") as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
            os.replace(tmp, dest)
        finally:
            conn.close()
            if os.path.exists(tmp):
                os.unlink(tmp)


def _error(data):
    """``Code: Message`` of an S3 error document (never its other fields, which can
    name the access key)."""
    text = (data or b"").decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return ": ".join(m.group(1) for m in (code, message) if m)


# --- credentials on the machine ----------------------------------------------------------


class Credentials:
    """What a spec's ``credentials`` says to sign with, read when first needed and
    again when instance-role credentials near their expiry."""

    def __init__(self, spec, secret_path):
        self.kind = spec.get("credentials") or "secret"
        self.secret_path = secret_path
        self.cached = None
        self.expires = 0.0

    def __call__(self):
        if self.cached is not None and time.time() < self.expires:
            return self.cached
        if self.kind == "instance-role":
            self.cached, self.expires = _instance_role()
        else:
            try:
                with open(self.secret_path) as f:
                    self.cached = json.load(f)
            except (OSError, ValueError):
                raise Failed("no object store credentials on the machine") from None
            self.expires = time.time() + 60.0  # read again now and then: guard-set may renew
        return self.cached


def _instance_role():
    imds = release.Imds(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or release.IMDS_DEFAULT)
    roles = imds.get("meta-data/iam/security-credentials/").split()
    if not roles:
        raise Failed("the instance has no instance profile to write to the store with")
    creds = json.loads(imds.get("meta-data/iam/security-credentials/" + roles[0]))
    expires = time.time() + 3600.0
    stamp = creds.get("Expiration")
    if stamp:
        try:
            at = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
            expires = at.replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            pass
    return creds, max(time.time() + 30.0, expires - REFRESH_SECONDS)


# --- what the guard uploads --------------------------------------------------------------


class Uploader:
    """Each job's new or changed settled checkpoint files and its log, to
    ``<prefix>/<job-id>/checkpoints/<rel>`` and ``<prefix>/<job-id>/log``.

    What was uploaded ({job: {"files": {rel: [size, mtime_ns]}, "log": [size,
    mtime_ns], "final": bool}}) is kept in ``done_path``, so that a guard started
    again does not send it again. A look at a job whose files did not change costs
    one walk of its checkpoint directory and a stat of its log: the processes' open
    files (``files.settled``) are read only when something changed."""

    def __init__(self, spec, secret_path, done_path, log):
        self.store = Store(spec, Credentials(spec, secret_path))
        self.done_path = done_path
        self.log = log
        self.done = _read_json(done_path) or {}
        self.failing = {}

    def look(self, jobs, until=None):
        """Upload what changed for ``jobs`` (job statuses, as ``job_status`` gives
        them, with ``log_path``); an ended job's files are taken once more without
        waiting for them to settle (no process of its writes them any more), then left
        alone. ``until``: a time after which nothing more is started."""
        changed = False
        for st in jobs:
            entry = self.done.setdefault(st["job_id"], {"files": {}})
            if entry.get("final"):
                continue
            ended = st["status"] not in ("running", "pending")
            try:
                sent, complete = self._job(st, entry, ended, until)
            except Failed as e:
                self._failed(st["job_id"], str(e))
                continue
            changed |= sent
            if ended and complete:
                entry["final"] = changed = True
        if changed:
            _write_json(self.done_path, self.done)

    def _job(self, st, entry, ended, until):
        """(whether anything was sent, whether all there was to send was)."""
        job = st["job_id"]
        self.failing.pop(job, None)
        changed = False
        directory = st.get("checkpoint_dir")
        if directory:
            current = settle.scan(directory)
            sent = entry["files"]
            if any(sent.get(rel) != v for rel, v in current.items()):
                now = time.time() + (settle.SETTLE_SECONDS if ended else 0.0)
                current, ready = settle.settled(directory, now)
                for rel in ready:
                    if sent.get(rel) == current[rel]:
                        continue
                    if until is not None and time.time() >= until:
                        return changed, False
                    if current[rel][0] > MAX_SINGLE_PUT:
                        self.log("store: %s of job %s is larger than one PUT: left" % (rel, job))
                        sent[rel] = current[rel]
                        changed = True
                        continue
                    path = os.path.join(directory, rel)
                    key = self.store.key("%s/checkpoints/%s" % (job, rel))
                    self.store.put_file(key, path, current[rel][0])
                    if _stat(path) == current[rel]:  # else changed while sent: again next look
                        sent[rel] = current[rel]
                        changed = True
        log_path = st.get("log_path")
        seen = _stat(log_path) if log_path else None
        due = (
            ended
            or until is not None
            or seen is None
            or seen[0] <= LOG_PAUSE_BYTES
            or time.time() - entry.get("log_at", 0) >= LOG_PAUSE_SECONDS
        )
        if seen and seen != entry.get("log") and seen[0] <= MAX_SINGLE_PUT and due:
            if until is not None and time.time() >= until:
                return changed, False
            self.store.put_file(self.store.key("%s/log" % job), log_path, seen[0])
            entry["log"], entry["log_at"] = seen, time.time()
            changed = True
        return changed, True

    def _failed(self, job, message):
        if self.failing.get(job) != message:
            self.log("store: job %s: %s" % (job, message))
        self.failing[job] = message


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)

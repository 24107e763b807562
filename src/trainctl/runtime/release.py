"""How the guard releases its machine: one call to the provider's own API.

Standard library only, Python 3.8+: this file runs on the machine, next to
``jobrunner.py``. The provider (on the client) says what to call in a *request*, a
JSON object; this module knows the two ways of authenticating it:

``{"kind": "http", "method", "url", "body", "gone": [404], "secret_from": {...}}``
    an HTTPS call with ``Authorization: Bearer <secret>``. The secret is the one the
    client left in ``guard/secret`` (mode 0600), or, with ``secret_from``
    (``{"files": [...], "name": "RUNPOD_API_KEY", "match": {"RUNPOD_POD_ID": id}}``),
    a credential the provider already put on the machine: the first of ``files`` (an
    ``environ``-style file, NUL-separated, or ``export NAME="value"`` lines; ``~``
    is the home directory) that holds ``name`` and whose ``match`` variables agree.
``{"kind": "aws-ec2", "action", "instance_id", "endpoint"}``
    EC2's Query API (``StopInstances`` / ``TerminateInstances``), signed with
    Signature Version 4 with the instance profile's credentials, read from IMDSv2
    (``AWS_EC2_METADATA_SERVICE_ENDPOINT``, else 169.254.169.254). The instance
    releases itself only: IMDS must say it is ``instance_id``.

``execute`` answers ``(outcome, message)``: ``released``, ``gone`` (the provider no
longer knows the machine: nothing bills) or ``failed``. A message never holds a secret.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 20.0
EC2_VERSION = "2016-11-15"
IMDS_DEFAULT = "http://169.254.169.254/"


class Failed(Exception):
    pass


def execute(request, secret=None):
    try:
        kind = request.get("kind")
        if kind == "http":
            return _http_release(request, secret)
        if kind == "aws-ec2":
            return _ec2_release(request)
        raise Failed("unknown release kind %r" % kind)
    except Failed as e:
        return "failed", str(e)
    except Exception as e:  # an answer that cannot be read: tried again later
        return "failed", "%s: %s" % (type(e).__name__, e)


# --- plain HTTPS with a bearer token -----------------------------------------------


def _http_release(request, secret):
    if request.get("secret_from"):
        secret = machine_secret(request["secret_from"])
    if not secret:
        raise Failed("no credential to call %s with" % _where(request["url"]))
    body = request.get("body")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": "Bearer " + secret, "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    status, text = _call(request["method"], request["url"], data, headers)
    what = "%s %s" % (request["method"], _where(request["url"]))
    if 200 <= status < 300:
        return "released", "%s answered %d" % (what, status)
    if status in (request.get("gone") or []):
        return "gone", "%s answered %d: the machine is gone" % (what, status)
    raise Failed("%s answered %d: %s" % (what, status, _short(text)))


def machine_secret(spec):
    """The credential ``spec`` names, from the first file that holds it."""
    name, match = spec["name"], spec.get("match") or {}
    for path in spec.get("files") or []:
        values = _read_environment(os.path.expanduser(path))
        if values.get(name) and all(values.get(k) in (None, v) for k, v in match.items()):
            return values[name]
    return None


def _read_environment(path):
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except OSError:
        return {}
    values = {}
    for line in re.split(b"[\0\n]", raw):
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("export "):
            text = text[len("export ") :].strip()
        key, sep, value = text.partition("=")
        if sep and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key] = value
    return values


# --- EC2, signed with the instance profile's credentials -----------------------------


def _ec2_release(request):
    imds = Imds(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT)
    instance_id = imds.get("meta-data/instance-id").strip()
    if instance_id != request["instance_id"]:
        raise Failed(
            "this machine is %s, not %s: nothing was released"
            % (instance_id, request["instance_id"])
        )
    region = imds.get("meta-data/placement/region").strip()
    roles = imds.get("meta-data/iam/security-credentials/").split()
    if not roles:
        raise Failed("the instance has no instance profile to release itself with")
    creds = json.loads(imds.get("meta-data/iam/security-credentials/" + roles[0]))
    endpoint = (
        request.get("endpoint")
        or os.environ.get("AWS_ENDPOINT_URL_EC2")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "https://ec2.%s.amazonaws.com%s/" % (region, ".cn" if region.startswith("cn-") else "")
    )
    action = request["action"]
    body = urllib.parse.urlencode(
        {"Action": action, "Version": EC2_VERSION, "InstanceId.1": instance_id}
    ).encode()
    headers = sigv4_headers(
        "POST", endpoint, region, "ec2", body, creds, datetime.datetime.now(datetime.timezone.utc)
    )
    status, text = _call("POST", endpoint, body, headers)
    if status == 200:
        return "released", "EC2 %s of %s answered 200" % (action, instance_id)
    code = _xml_field(text, "Code")
    if code == "InvalidInstanceID.NotFound":
        return "gone", "EC2 says %s is gone" % instance_id
    raise Failed(
        "EC2 %s answered %d: %s %s"
        % (action, status, code or "", _xml_field(text, "Message") or "")
    )


class Imds:
    """IMDSv2: a session token first, then reads with it."""

    def __init__(self, endpoint):
        self.base = endpoint.rstrip("/") + "/latest/"
        status, token = _call(
            "PUT",
            self.base + "api/token",
            None,
            {"X-aws-ec2-metadata-token-ttl-seconds": "300"},
            direct=True,
        )
        if status != 200:
            raise Failed("IMDS refused a token (%d)" % status)
        self.token = token.strip()

    def get(self, path):
        status, text = _call(
            "GET", self.base + path, None, {"X-aws-ec2-metadata-token": self.token}, direct=True
        )
        if status != 200:
            raise Failed("IMDS %s answered %d" % (path, status))
        return text


def sigv4_headers(method, url, region, service, body, creds, when):
    """The headers that sign a request with AWS Signature Version 4 (the form body
    is signed; the URL has no query string)."""
    parts = urllib.parse.urlsplit(url)
    return sign(
        method,
        parts.netloc,
        quote(parts.path or "/"),
        {},
        {"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
        hashlib.sha256(body).hexdigest(),
        region,
        creds,
        when,
        service,
        payload_header=False,
    )


def quote(text, safe="/"):
    return urllib.parse.quote(text, safe=safe + "-_.~")


def sign(
    method, host, path, query, headers, payload_hash, region, creds, when, service="s3",
    payload_header=True,
):
    """``headers`` with ``x-amz-date``, ``x-amz-content-sha256`` (S3 wants it; left
    out with ``payload_header=False``), the session token and ``Authorization``
    added: AWS Signature Version 4 over every header given. ``path`` is already
    URI-encoded; ``query`` is a dict of plain values."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = dict(headers)
    out["host"] = host
    out["x-amz-date"] = amz_date
    if payload_header:
        out["x-amz-content-sha256"] = payload_hash
    if creds.get("Token"):
        out["x-amz-security-token"] = creds["Token"]
    lower = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
    names = sorted(lower)
    canonical_query = "&".join(
        "%s=%s" % (quote(k, safe=""), quote(str(v), safe="")) for k, v in sorted(query.items())
    )
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query,
            "".join("%s:%s\n" % (k, lower[k]) for k in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + creds["SecretAccessKey"]).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        creds["AccessKeyId"],
        scope,
        ";".join(names),
        signature,
    )
    return out


# --- plumbing ----------------------------------------------------------------------


#: IMDS answers on the machine itself, never through a proxy (it refuses proxied calls)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(method, url, data, headers, direct=False):
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = _DIRECT if direct else urllib.request.build_opener()
    try:
        with opener.open(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.read(1 << 16).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(1 << 16).decode("utf-8", "replace")
    except (OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise Failed("cannot reach %s: %s" % (_where(url), reason)) from None


def _where(url):
    parts = urllib.parse.urlsplit(url)
    return parts.netloc + parts.path


def _xml_field(text, tag):
    m = re.search(r"<%s>([^<]*)</%s>" % (tag, tag), text or "")
    return m.group(1) if m else None


def _short(text):
    text = " ".join((text or "").split())
    return text[:200] + ("..." if len(text) > 200 else "")

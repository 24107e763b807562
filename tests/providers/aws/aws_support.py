"""The moto server shared by the AWS tests, the SSM agent and IMDS stand-ins on it,
and helpers.

One ``ThreadedMotoServer`` on 127.0.0.1 serves every AWS test module of a session;
tests reach it with real boto3 calls over HTTP through ``AWS_ENDPOINT_URL``. Test
modules keep apart by region. The machines' commands reach one IMDS stand-in
(``imds.IMDS``) through ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, each its own prefix.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from botocore.awsrequest import AWSResponse
from moto.ec2.models import ec2_backends
from moto.server import ThreadedMotoServer
from moto.ssm.models import Parameter, ssm_backends

from imds import IMDS
from ssm_agent import SSMAgent
from trainctl.providers.aws.images import DLAMI_PARAMETER

ACCOUNT = "123456789012"
_state: dict[str, object] = {}


def server_url() -> str:
    """Start the session's moto server (once) with the SSM agent stand-in on it."""
    if "url" not in _state:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # AWS-managed policies (AmazonSSMManagedInstanceCore) exist only when asked for
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        sandboxes = Path(tempfile.mkdtemp(prefix="trainctl-ssm-"))
        metadata = IMDS(ACCOUNT)
        agent = SSMAgent(sandboxes, machine_env(url), metadata).install()
        atexit.register(shutil.rmtree, sandboxes, ignore_errors=True)
        atexit.register(metadata.close)
        atexit.register(agent.kill_all)  # runs first
        _state.update(url=url, server=server, agent=agent, imds=metadata)
    return str(_state["url"])


def agent() -> SSMAgent:
    server_url()
    return _state["agent"]  # type: ignore[return-value]


def imds() -> IMDS:
    """The IMDS stand-in the sandboxed machines reach."""
    server_url()
    return _state["imds"]  # type: ignore[return-value]


def machine_env(url: str) -> dict[str, str]:
    """What commands on every sandboxed machine see: this venv's python3 and aws first
    on PATH, and the instance profile's stand-in credentials (each machine's metadata
    endpoint is added by the agent)."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "machine",
        "AWS_SECRET_ACCESS_KEY": "machine",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }


def use_moto(monkeypatch, region: str) -> str:
    """Point boto3 in this process at the moto server, in ``region``."""
    url = server_url()
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    return url


def publish_dlami(region: str, arch: str = "x86_64") -> str:
    """Publish a Deep Learning AMI parameter as AWS does (moto has none): it names one
    of moto's Amazon-owned Linux images."""
    name = DLAMI_PARAMETER.format(arch=arch)
    params = ssm_backends[ACCOUNT][region]._parameters
    if not params.get(name):
        image = next(
            a
            for a in ec2_backends[ACCOUNT][region].amis.values()
            if a.owner_alias == "amazon" and a.architecture == arch and a.platform != "windows"
        )
        params[name].append(
            Parameter(
                account_id=ACCOUNT,
                name=name,
                value=image.id,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(timezone.utc),
                version=1,
                data_type="text",
            )
        )
    return params[name][-1].value


def instance(region: str, instance_id: str):
    """moto's own record of an instance (for what the EC2 API does not show)."""
    return ec2_backends[ACCOUNT][region].get_instance(instance_id)


# --- shaping what botocore sees (registered on a client's before-send event) -------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs):
        yield self.body


def ec2_error(code: str, message: str = "injected", status: int = 400) -> AWSResponse:
    """An EC2 (query protocol) error answer, as AWS sends it."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error>"
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>injected</RequestID></Response>"
    ).encode()
    return AWSResponse("http://injected", status, {"Content-Type": "text/xml"}, _Raw(body))


def s3_error(code: str, message: str = "injected", status: int = 403) -> AWSResponse:
    """An S3 (REST-XML protocol) error answer, as AWS sends it."""
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return AWSResponse("http://injected", status, {"Content-Type": "application/xml"}, _Raw(body))


def ec2_answer(body: bytes) -> AWSResponse:
    """A successful EC2 answer with ``body`` (XML)."""
    return AWSResponse("http://injected", 200, {"Content-Type": "text/xml"}, _Raw(body))


def forward(request) -> bytes:
    """Send a prepared botocore request to the server for real; the answer's body."""
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    body = request.body.encode() if isinstance(request.body, str) else request.body
    req = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
    with urllib.request.urlopen(req) as answer:
        return answer.read()


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of the moto server, for a CLI run in a
    subprocess: ``fault(method, path, headers, body)`` may return an answer
    ``(status, content type, body)`` to send instead of forwarding, or a callable that
    takes the server's answer body and returns the body to send (a cut answer)."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading

        proxy = self
        self.fault = lambda *_: None
        self.faulted: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                chosen = proxy.fault(self.command, self.path, headers, body)
                if chosen is None or callable(chosen):
                    req = urllib.request.Request(
                        upstream + self.path,
                        data=body or None,
                        headers=headers,
                        method=self.command,
                    )
                    try:
                        with urllib.request.urlopen(req) as answer:
                            status, data = answer.status, answer.read()
                            kind = answer.headers.get("Content-Type", "")
                    except urllib.error.HTTPError as e:
                        status, data, kind = e.code, e.read(), e.headers.get("Content-Type", "")
                    if callable(chosen):
                        proxy.faulted.append(self.path)
                        data = chosen(data)
                else:
                    proxy.faulted.append(self.path)
                    status, kind, data = chosen
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


HTML_PAGE = (200, "text/html", b"<html><body><h1>Gateway Timeout</h1></body></html>")


def record_backoff(monkeypatch) -> list[float]:
    """botocore's retry pauses, recorded instead of slept."""
    import botocore.endpoint

    pauses: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=pauses.append))
    return pauses


def set_up(monkeypatch, region: str) -> str:
    """``use_moto`` plus what ``trainctl aws setup`` makes in ``region`` (made once per
    session) and a published Deep Learning AMI; returns the moto server's URL."""
    from trainctl.providers.aws import AwsProvider

    url = use_moto(monkeypatch, region)
    publish_dlami(region)
    done = _state.setdefault("set_up", set())
    if region not in done:
        AwsProvider(region=region).setup()
        done.add(region)
    return url

"""A fake RunPod API on 127.0.0.1, faithful to RunPod's published OpenAPI v2 document.

Every request body and query string, and every response the fake sends, is
validated against ``openapi-v2.json`` (OpenAPI 3.1, i.e. JSON Schema 2020-12, with
the document's own components). A request the real API would refuse is answered
the way the document says (422 with an ``ErrorResponse``) *and* recorded in
``violations``; the ``fake_runpod`` fixture fails the test if any were recorded.
A response that does not match the document is a bug in the fake and is recorded
the same way.

It serves the v2 operations trainctl uses (pods: list, create, get, delete,
action; catalog: GPU types; account: SSH keys) and RunPod's GraphQL endpoint for
the operations REST v2 lacks: ``podRentInterruptable`` (spot pods),
``podBidResume`` (restarting one) and ``gpuTypes`` spot prices. The GraphQL input
is checked against the fields ``tests/reference/README.md`` lists for
``PodRentInterruptableInput`` (GraphQL is not in the OpenAPI document).

Pods advance on each read (``PROVISIONING`` -> ``STARTING`` -> ``RUNNING``); when
a pod first runs it is given a machine by ``machine_factory`` (the SSH test
server provides real ones) and its ``22/tcp`` mapping points at it. Knobs:
``no_capacity``, ``no_spot_capacity`` (spot rentals only), ``no_capacity_gpus`` (GPU
type ids with no capacity, on-demand or spot), ``stuck`` (never leaves
PROVISIONING), ``error_on_start``,
``sshd_late_reads`` (the image installs ``PUBLIC_KEY`` only after that many reads),
``fail_next(operation, *faults)`` for bursts of 429 / 5xx / dropped connections,
the ``"lose"`` fault (the pod is created, the response is lost), ``"act-503"``
(the pod is created, then the answer is a 503, or any other status after ``act-``)
and the ``"bad-KIND"`` faults (the request is processed, then answered 200 with a
body that cannot be used: ``bad-html`` an HTML error page, ``bad-cut`` the real
answer cut in half, ``bad-empty`` no body, ``bad-null`` JSON ``null``, ``bad-types``
the real answer with every field of the wrong type, ``bad-nothing`` the real
answer with every list emptied); ``"ok"`` lets one call through unharmed (to aim a
later fault). More knobs: ``forbidden_clouds`` (createPod answers 403 for pods on
these clouds: the account cannot use that pool), ``spot_removed`` (GraphQL no
longer knows ``podRentInterruptable`` and answers with validation errors),
``no_direct_ssh`` (pods run without a public IP, so ``ssh.direct`` stays null).

Instant Clusters (``/v2/clusters``: create, list, get, delete, list its pods): a
create makes every member pod at once, named by the fake (``<cluster id>-node-<i>``,
nothing trainctl chose), each with a ``cluster`` object whose ``rank`` and ``ip`` (on
``10.65.0.0/16``) are null until the pod leaves PROVISIONING; ranks are not given in
creation order. Members are left out of ``GET /v2/pods`` unless
``includeClusterPods=true``, and the pod endpoints answer 409 to deleting or acting on
one, as the document says. ``member_error_rank`` makes that rank's pod go to ERROR
instead of RUNNING; ``no_capacity`` refuses clusters too.

Pod-scoped keys: RunPod gives every pod's environment ``RUNPOD_POD_ID`` and
``RUNPOD_API_KEY``, a key scoped to that pod, and its images write the ``RUNPOD_``
variables into ``/etc/rp_environment`` (``export NAME="value"`` lines) for SSH
sessions, which do not inherit the container's environment. Here each pod gets its
own key (``pod_key(pod_id)``, ``rpp_`` + hex) when it is created, and when it runs
its machine is given the file ``rp_environment`` (``ENV_FILE``, mode 0600) in its
home with those two lines. A pod key is good for that pod's own ``GET``, ``DELETE``
and ``POST .../action`` only, and for a cluster's pod the ``GET`` and ``DELETE`` of
its cluster (whether RunPod's pod keys may delete their cluster is not documented;
this is the assumption trainctl's guard makes): anything else with it is answered 403, and once its
pod is deleted it is answered 401 like any unknown key. ``key_log`` records which
key made each request.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

#: the vendored document (``tests/reference/README.md`` gives its source and date)
OPENAPI = Path(__file__).resolve().parents[2] / "reference" / "runpod" / "openapi-v2.json"
DOC_URI = "urn:runpod:openapi-v2"
NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)

#: the catalog the fake serves (a subset of RunPod's, with its real ids and names)
GPUS: list[dict[str, Any]] = [
    ("NVIDIA GeForce RTX 4090", "RTX 4090", "ADA_24", 24, 0.69, 0.34, 8, 8),
    ("NVIDIA GeForce RTX 3090", "RTX 3090", "AMPERE_24", 24, 0.46, 0.22, 8, 8),
    ("NVIDIA RTX A6000", "RTX A6000", "AMPERE_48", 48, 0.49, 0.33, 8, 8),
    ("NVIDIA L40S", "L40S", "ADA_48_PRO", 48, 0.86, 0.79, 8, 8),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", "AMPERE_80", 80, 1.64, 1.19, 8, 8),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM", "AMPERE_80", 80, 1.74, 1.39, 8, 8),
    ("NVIDIA H100 PCIe", "H100 PCIe", "HOPPER_141", 80, 2.39, 1.99, 8, 4),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", "HOPPER_141", 80, 2.69, 0.0, 8, 0),
]
GPUS = [
    {
        "id": gid,
        "name": name,
        "pool": pool,
        "manufacturer": "NVIDIA",
        "memory": mem,
        "secure": True,
        "community": community > 0,
        "price": {"secure": secure, "community": community},
        "maxCount": {"secure": max_s, "community": max_c},
    }
    for gid, name, pool, mem, secure, community, max_s, max_c in GPUS
]

#: what the reference README says PodRentInterruptableInput carries
RENT_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["gpuTypeId", "gpuCount", "bidPerGpu", "name", "imageName"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "imageName": {"type": "string", "minLength": 1},
        "gpuTypeId": {"type": "string"},
        "gpuCount": {"type": "integer", "minimum": 1},
        "cloudType": {"enum": ["SECURE", "COMMUNITY", "ALL"]},
        "containerDiskInGb": {"type": "integer", "minimum": 1},
        "volumeInGb": {"type": "integer", "minimum": 0},
        "volumeMountPath": {"type": "string"},
        "ports": {"type": "string", "pattern": r"^\d+/(tcp|http)(,\d+/(tcp|http))*$"},
        "env": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "value"],
                "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
            },
        },
        "startSsh": {"type": "boolean"},
        "supportPublicIp": {"type": "boolean"},
        "dataCenterId": {"type": "string"},
        "bidPerGpu": {"type": "number", "exclusiveMinimum": 0},
    },
}
BID_RESUME_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["podId", "bidPerGpu", "gpuCount"],
    "properties": {
        "podId": {"type": "string"},
        "bidPerGpu": {"type": "number", "exclusiveMinimum": 0},
        "gpuCount": {"type": "integer", "minimum": 1},
    },
}
SPOT_PRICE_VARIABLES = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "gpuCount"],
    "properties": {"id": {"type": "string"}, "gpuCount": {"type": "integer", "minimum": 1}},
}
GRAPHQL_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["query"],
    "properties": {
        "query": {"type": "string"},
        "variables": {"type": "object"},
        "operationName": {"type": "string"},
    },
}


#: where a running pod's environment file lands, relative to its machine's home
#: (the home stands for the container's root: RunPod's images write /etc/rp_environment)
ENV_FILE = "rp_environment"
POD_KEY_PREFIX = "rpp_"
#: what a pod-scoped key may do, and only to its own pod
POD_KEY_OPERATIONS = frozenset({"getPod", "podAction", "deletePod"})


class Machine(Protocol):
    """Where a pod's ``22/tcp`` leads (``tests/sshd.py`` machines are these)."""

    host: str
    port: int
    user: str

    def authorize(self, pubkey_text: str) -> None: ...

    def write(self, relpath: str, data: bytes | str, mode: int = 0o644) -> object: ...

    def halt(self) -> None:
        """End every process on the machine (a stopped pod runs nothing)."""

    def destroy(self) -> None: ...


MachineFactory = Callable[[str], Machine]


@dataclass
class NoMachine:
    """A pod endpoint with nothing behind it (control-plane tests)."""

    host: str
    port: int
    user: str = "root"
    destroyed: bool = False
    keys: list[str] = field(default_factory=list)
    #: what the pod wrote: path -> (content, mode); nothing is on a disk
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def authorize(self, pubkey_text: str) -> None:
        self.keys.append(pubkey_text)

    def write(self, relpath: str, data: bytes | str, mode: int = 0o644) -> None:
        self.files[relpath] = (data.encode() if isinstance(data, str) else data, mode)

    def halt(self) -> None:
        pass

    def destroy(self) -> None:
        self.destroyed = True


@dataclass
class FakePod:
    data: dict[str, Any]
    public_keys: list[str]
    key: str  # the pod-scoped API key, RUNPOD_API_KEY inside the pod
    spot: bool = False
    reads: int = 0
    machine: Machine | None = None
    keys_installed: bool = False


@dataclass
class Knobs:
    no_capacity: bool = False
    no_spot_capacity: bool = False
    no_capacity_gpus: set[str] = field(default_factory=set)  # GPU type ids
    stuck: bool = False  # pods never leave PROVISIONING
    error_on_start: bool = False  # pods go STARTING -> ERROR
    provisioning_reads: int = 1  # reads spent in PROVISIONING, then in STARTING
    starting_reads: int = 1
    sshd_late_reads: int = 0  # reads while RUNNING before the image installs PUBLIC_KEY
    retry_after: int = 1  # seconds, on injected 429s
    forbidden_clouds: set[str] = field(default_factory=set)  # createPod: 403 on these
    spot_removed: bool = False  # GraphQL has no podRentInterruptable any more
    no_direct_ssh: bool = False  # pods have no public IP: ssh.direct stays null
    member_error_rank: int | None = None  # that cluster rank's pod goes ERROR on start
    faults: dict[str, list[int | str]] = field(default_factory=dict)


class OpenApi:
    """Operations and schemas of the OpenAPI document, with validation."""

    def __init__(self, path: Path) -> None:
        self.doc = json.loads(path.read_text())
        self.registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(self.doc))
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        self.routes: list[tuple[re.Pattern[str], str, str, dict[str, Any]]] = []
        for template, item in self.doc["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "([^/]+)", template) + "$")
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    params = [*item.get("parameters", []), *op.get("parameters", [])]
                    self.routes.append((pattern, method.upper(), template, {**op, "_p": params}))

    def route(self, method: str, path: str) -> tuple[dict[str, Any], list[str]] | None:
        for pattern, m, _template, op in self.routes:
            match = pattern.match(path)
            if match and m == method:
                return op, list(match.groups())
        return None

    def deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = jsonschema.Draft202012Validator(
                _rebase(schema),
                registry=self.registry,
                format_checker=jsonschema.FormatChecker(),
            )
            self._validators[key] = validator
        return [
            f"{'/'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    def request_errors(self, op: dict[str, Any], query: dict[str, str], body: Any) -> list[str]:
        found = []
        declared = {}
        for p in op["_p"]:
            p = self.deref(p)
            if p["in"] == "query":
                declared[p["name"]] = p
        for name, raw in query.items():
            if name not in declared:
                found.append(f"query parameter {name!r} is not in the document")
                continue
            schema = self.deref(declared[name]["schema"])
            found += [f"query {name}: {e}" for e in self.errors(schema, _query_value(raw, schema))]
        for name, p in declared.items():
            if p.get("required") and name not in query:
                found.append(f"query parameter {name!r} is required")
        rb = op.get("requestBody")
        if rb:
            rb = self.deref(rb)
            if body is _NO_BODY:
                if rb.get("required"):
                    found.append("the request body is required")
            else:
                schema = rb["content"]["application/json"]["schema"]
                found += self.errors(schema, body)
        elif body is not _NO_BODY:
            found.append("this operation takes no request body")
        return found

    def response_errors(self, op: dict[str, Any], status: int, ctype: str, body: Any) -> list[str]:
        responses = op["responses"]
        spec = responses.get(str(status)) or responses.get("default")
        if spec is None:
            return [f"status {status} is not documented for {op['operationId']}"]
        spec = self.deref(spec)
        content = spec.get("content")
        if not content:
            return [] if body is _NO_BODY else [f"status {status} has no body in the document"]
        if ctype not in content:
            return [f"content type {ctype} is not documented for status {status}"]
        return self.errors(content[ctype]["schema"], body)


@functools.cache
def openapi() -> OpenApi:
    """The document, parsed once per test session (its validators are cached too).
    Without it the fake cannot check anything, so the tests that need it fail: a
    suite that silently skipped them would prove nothing."""
    if not OPENAPI.is_file():
        pytest.fail(f"RunPod's OpenAPI document ({OPENAPI}) is missing")
    return OpenApi(OPENAPI)


def _rebase(schema: dict[str, Any]) -> dict[str, Any]:
    """Point a schema's local ``$ref`` s into the document (validated from outside it)."""
    text = json.dumps(schema).replace('"#/components/', f'"{DOC_URI}#/components/')
    return json.loads(text)


def _query_value(raw: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "array":
        return raw.split(",")
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


_NO_BODY = object()


class FakeRunPod:
    """The fake's state and HTTP server. Use as a context manager or ``start``/``stop``."""

    def __init__(
        self, api_key: str = "rpa_fake_key", machine_factory: MachineFactory | None = None
    ) -> None:
        self.api = openapi()
        self.api_key = api_key
        self.machine_factory = machine_factory or self._no_machine
        self.knobs = Knobs()
        self.pods: dict[str, FakePod] = {}
        #: cluster id -> the cluster's fixed fields (its view is built on each read)
        self.clusters: dict[str, dict[str, Any]] = {}
        self.made_clusters: list[str] = []  # cluster ids, in creation order
        self.ssh_keys: list[str] = []
        self.violations: list[str] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        #: (method, path, status, key): key is "user", "pod:<pod id>" or "other"
        #: (an unknown key, a pod key of a deleted pod, or none)
        self.key_log: list[tuple[str, str, int, str]] = []
        self.pod_keys: dict[str, str] = {}  # pod key -> its pod's id, deleted pods too
        self.created: list[str] = []  # pod ids, in creation order
        self.lock = threading.RLock()
        self._ports = iter(range(40022, 50000))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # --- lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def graphql_url(self) -> str:
        return self.url + "/graphql"

    def start(self) -> FakeRunPod:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for pod in self.pods.values():
            if pod.machine:
                pod.machine.destroy()

    def __enter__(self) -> FakeRunPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test helpers ---------------------------------------------------------

    def fail_next(self, operation: str, *faults: int | str) -> None:
        """Answer the next calls of ``operation`` (an operationId, or
        ``podRentInterruptable``) with these faults, in order: an HTTP status, or
        ``"drop"`` (connection closed, request not processed), ``"lose"`` (request
        processed, then the connection closed before the response) or ``"act-STATUS"``
        (request processed, then answered with that error status instead) or
        ``"bad-KIND"`` (request processed, then a 200 that cannot be used; see the
        module's docstring)."""
        with self.lock:
            self.knobs.faults.setdefault(operation, []).extend(faults)

    def add_foreign_pod(self, name: str = "someone-elses-pod") -> str:
        """A pod trainctl did not create (its name lacks the prefix)."""
        body = {"name": name, "image": "ubuntu", "gpu": {"id": GPUS[0]["id"], "count": 1}}
        return self._new_pod(body, spot=False, cost=0.69).data["id"]

    def live_pods(self) -> list[dict[str, Any]]:
        return [p.data for p in self.pods.values()]

    def pod_key(self, pod_id: str) -> str:
        """The pod-scoped key RunPod puts in the pod's ``RUNPOD_API_KEY``."""
        return self.pods[pod_id].key

    def env_file(self, pod: FakePod) -> str:
        """The ``export`` lines of the pod's ``rp_environment``."""
        values = {"RUNPOD_POD_ID": pod.data["id"], "RUNPOD_API_KEY": pod.key}
        return "".join(f'export {name}="{value}"\n' for name, value in values.items())

    def key_kind(self, authorization: str | None) -> str:
        """Who an ``Authorization`` header speaks for (``key_log``'s last field)."""
        if authorization == f"Bearer {self.api_key}":
            return "user"
        token = (authorization or "").removeprefix("Bearer ")
        pod_id = self.pod_keys.get(token)
        if pod_id is not None and pod_id in self.pods:
            return f"pod:{pod_id}"
        return "other"

    # --- pods -------------------------------------------------------------------

    def _no_machine(self, pod_id: str) -> Machine:
        return NoMachine("127.0.0.1", next(self._ports))

    def _new_pod(self, body: dict[str, Any], *, spot: bool, cost: float) -> FakePod:
        pod_id = secrets.token_hex(7)
        env = dict(body.get("env") or {})
        keys = [k for k in env.get("PUBLIC_KEY", "").splitlines() if k.strip()]
        if body.get("startSsh") and "PUBLIC_KEY" not in env and self.ssh_keys:
            env["PUBLIC_KEY"] = "\n".join(self.ssh_keys)
            keys = list(self.ssh_keys)
        gpu = body["gpu"]
        data = {
            "id": pod_id,
            "name": body["name"],
            "image": body["image"],
            "args": body.get("args", ""),
            "disk": body.get("disk", 50),
            "ports": body.get("ports", []),
            "env": env,
            "registry": None,
            "status": "PROVISIONING",
            "actions": ACTIONS["PROVISIONING"],
            "mounts": body.get("mounts", {}),
            "gpu": {"id": gpu["id"], "count": gpu.get("count", 1)},
            "cloud": body.get("cloud", "SECURE"),
            "dataCenterId": (body.get("dataCenterIds") or ["US-KS-2"])[0],
            "cudaVersion": "12.8",
            "ssh": {"proxy": None, "direct": None},
            "template": None,
            "cost": cost,
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": None,
            "createdAt": _now(),
            "startedAt": None,
        }
        pod = FakePod(data, keys, POD_KEY_PREFIX + secrets.token_hex(16), spot=spot)
        self.pods[pod_id] = pod
        self.pod_keys[pod.key] = pod_id
        self.created.append(pod_id)
        return pod

    def _advance(self, pod: FakePod) -> None:
        """One read of a pod moves it along its lifecycle."""
        d = pod.data
        pod.reads += 1
        k = self.knobs
        if d["status"] == "PROVISIONING" and not k.stuck and pod.reads > k.provisioning_reads:
            self._set_status(pod, "STARTING")
            pod.reads = 0
            if "cluster" in d:
                self._place(pod)
        elif d["status"] == "STARTING" and pod.reads > k.starting_reads:
            failing = "cluster" in d and d["cluster"].get("rank") == k.member_error_rank
            self._set_status(pod, "ERROR" if k.error_on_start or failing else "RUNNING")
        elif d["status"] == "RUNNING" and pod.reads > k.sshd_late_reads:
            self._install_keys(pod)

    def _install_keys(self, pod: FakePod) -> None:
        """What RunPod's images do at start: PUBLIC_KEY into authorized_keys."""
        if pod.machine is not None and not pod.keys_installed:
            for key in pod.public_keys:
                pod.machine.authorize(key)
            pod.keys_installed = True

    def _set_status(self, pod: FakePod, status: str) -> None:
        d = pod.data
        d["status"] = status
        d["actions"] = ACTIONS[status]
        if status == "RUNNING":
            if pod.machine is None:
                pod.machine = self.machine_factory(d["id"])
            # what the image does at each start, before sshd: the RUNPOD_ variables
            # into a file for SSH sessions, readable by the pod's user only
            pod.machine.write(ENV_FILE, self.env_file(pod), 0o600)
            pod.reads = 0
            if not self.knobs.sshd_late_reads:
                self._install_keys(pod)
            m = pod.machine
            d["startedAt"] = _now()
            d["ssh"] = {
                "proxy": {
                    "host": "ssh.runpod.io",
                    "port": 22,
                    "username": f"{d['id']}-64411eb2",
                    "command": f"ssh {d['id']}-64411eb2@ssh.runpod.io",
                },
                "direct": {
                    "host": m.host,
                    "port": m.port,
                    "username": m.user,
                    "command": f"ssh {m.user}@{m.host} -p {m.port}",
                }
                if "22/tcp" in d["ports"] and not self.knobs.no_direct_ssh
                else None,
            }
            d["runtime"] = {
                "uptime": 0,
                "ports": [{"private": 22, "public": m.port, "type": "tcp", "ip": m.host}]
                if "22/tcp" in d["ports"]
                else [],
            }
        else:
            d["ssh"] = {"proxy": d["ssh"]["proxy"], "direct": None}
            d["runtime"] = None
        if status in ("EXITED", "ERROR"):
            d["cost"] = 0.0

    def preempt(self, pod_id: str, *, halt: bool = True) -> None:
        """RunPod reclaims a running spot pod's GPU: it is EXITED (as ``stop`` leaves
        it), with nothing running on it any more; ``halt=False`` leaves the machine
        running and its connections open (a pod whose end the network has not seen
        yet: only the API says it)."""
        pod = self.pods[pod_id]
        assert pod.spot and pod.data["status"] == "RUNNING", pod.data["status"]
        self._set_status(pod, "EXITED")
        if halt and pod.machine is not None:
            pod.machine.halt()

    def _delete(self, pod_id: str) -> None:
        pod = self.pods.pop(pod_id)
        if pod.machine:
            pod.machine.destroy()

    # --- clusters ---------------------------------------------------------------

    def members(self, cluster_id: str) -> list[FakePod]:
        return [p for p in self.pods.values() if p.data.get("cluster", {}).get("id") == cluster_id]

    def _place(self, pod: FakePod) -> None:
        """RunPod assigns a member its rank and overlay address while provisioning:
        here the last-made pod is rank 0, then the others in order."""
        cluster = pod.data["cluster"]
        order = [p.data["id"] for p in self.members(cluster["id"])]
        index = order.index(pod.data["id"])
        rank = (index + 1) % len(order)
        cluster.update(rank=rank, ip=f"10.65.0.{rank + 2}")

    def _cluster_view(self, cluster_id: str) -> dict[str, Any]:
        view = dict(self.clusters[cluster_id])
        members = self.members(cluster_id)
        by_status: dict[str, int] = {}
        for pod in members:
            by_status[pod.data["status"]] = by_status.get(pod.data["status"], 0) + 1
        view["pods"] = {"total": len(members), "byStatus": by_status}
        view["dataCenterId"] = members[0].data["dataCenterId"] if members else "US-KS-2"
        view["network"] = {"cidr": "10.65.0.0/16"}
        primary = next((p for p in members if p.data["cluster"].get("rank") == 0), None)
        if primary is not None:
            direct = (primary.data["ssh"] or {}).get("direct")
            view["primary"] = {"podId": primary.data["id"], "status": primary.data["status"]}
            if direct:
                view["primary"]["sshEndpoint"] = f"{direct['host']}:{direct['port']}"
        return view

    def createCluster(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        compute = body["compute"]
        gpu = _gpu(compute["gpuTypeId"])
        if gpu is None:
            return _problem(400, f"unknown GPU type {compute['gpuTypeId']!r}")
        count = compute["gpuCountPerPod"]
        if not gpu["secure"] or count > gpu["maxCount"]["secure"]:
            return _problem(400, f"{gpu['id']} x{count} is not offered for clusters")
        if self.knobs.no_capacity or gpu["id"] in self.knobs.no_capacity_gpus:
            return _problem(400, NO_CAPACITY)
        cluster_id = "cluster_" + secrets.token_hex(6)
        self.clusters[cluster_id] = {
            "id": cluster_id,
            "name": body["name"],
            "type": body["type"],
            "compute": dict(compute),
            "createdAt": _now(),
        }
        self.made_clusters.append(cluster_id)
        for index in range(compute["podCount"]):
            pod_body = {
                **{k: body[k] for k in ("image", "env", "ports", "disk", "startSsh") if k in body},
                "name": f"{cluster_id}-node-{index}",
                "gpu": {"id": gpu["id"], "count": count},
                "cloud": "SECURE",
            }
            if body.get("dataCenterIds"):
                pod_body["dataCenterIds"] = body["dataCenterIds"]
            if body.get("mounts"):
                pod_body["mounts"] = body["mounts"]
            pod = self._new_pod(pod_body, spot=False, cost=round(gpu["price"]["secure"] * count, 4))
            pod.data["cluster"] = {"id": cluster_id, "rank": None}
        return 201, self._cluster_view(cluster_id)

    def listClusters(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"clusters": [self._cluster_view(c) for c in self.clusters]}

    def getCluster(self, cluster_id: str) -> tuple[int, Any]:
        if cluster_id not in self.clusters:
            return _problem(404, "cluster not found")
        return 200, self._cluster_view(cluster_id)

    def listClusterPods(self, cluster_id: str) -> tuple[int, Any]:
        if cluster_id not in self.clusters:
            return _problem(404, "cluster not found")
        members = self.members(cluster_id)
        for pod in members:
            self._advance(pod)
        return 200, {"pods": [p.data for p in members]}

    def deleteCluster(self, cluster_id: str) -> tuple[int, Any]:
        if cluster_id not in self.clusters:
            return _problem(404, "cluster not found")
        for pod in self.members(cluster_id):
            self._delete(pod.data["id"])
        del self.clusters[cluster_id]
        return 204, _NO_BODY

    def pod_key_allows(self, operation: str, args: list[str], key: str) -> bool:
        """What a pod-scoped key may do (see the module's docstring)."""
        if operation in POD_KEY_OPERATIONS:
            return key == f"pod:{args[0]}"
        if operation in ("getCluster", "deleteCluster"):
            own = self.pods.get(key.removeprefix("pod:"))
            return own is not None and own.data.get("cluster", {}).get("id") == args[0]
        return False

    # --- REST handlers: (status, body) ------------------------------------------

    def listPods(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        shown = [
            p
            for p in self.pods.values()
            if "cluster" not in p.data or query.get("includeClusterPods") == "true"
        ]
        for pod in shown:
            self._advance(pod)
        return 200, {"pods": [p.data for p in shown]}

    def createPod(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        gpu = _gpu(body["gpu"]["id"]) if "gpu" in body else None
        if gpu is None:
            return _problem(400, f"unknown GPU type {body.get('gpu', {}).get('id')!r}")
        cloud = body.get("cloud", "SECURE").lower()
        count = body["gpu"].get("count", 1)
        if not gpu[cloud] or count > gpu["maxCount"][cloud]:
            return _problem(400, f"{gpu['id']} x{count} is not offered on {cloud.upper()}")
        if cloud.upper() in self.knobs.forbidden_clouds:
            return _problem(403, "access denied")
        if self.knobs.no_capacity or gpu["id"] in self.knobs.no_capacity_gpus:
            return _problem(400, NO_CAPACITY)
        pod = self._new_pod(body, spot=False, cost=round(gpu["price"][cloud] * count, 4))
        return 201, pod.data

    def getPod(self, pod_id: str) -> tuple[int, Any]:
        pod = self.pods.get(pod_id)
        if pod is None:
            return _problem(404, "pod not found")
        self._advance(pod)
        return 200, pod.data

    def deletePod(self, pod_id: str) -> tuple[int, Any]:
        if pod_id not in self.pods:
            return _problem(404, "pod not found")
        if "cluster" in self.pods[pod_id].data:
            return _problem(409, "the pod belongs to a cluster: delete the cluster")
        self._delete(pod_id)
        return 204, _NO_BODY

    def podAction(self, pod_id: str, body: Any) -> tuple[int, Any]:
        pod = self.pods.get(pod_id)
        if pod is None:
            return _problem(404, "pod not found")
        action = body["action"]
        if "cluster" in pod.data:
            return _problem(409, "the pod belongs to a cluster: manage it through the cluster")
        if action not in pod.data["actions"]:
            return _problem(409, f"cannot {action} a pod that is {pod.data['status']}")
        if action == "terminate":
            self._delete(pod_id)
            return 204, _NO_BODY
        if action == "stop":
            self._set_status(pod, "EXITED")
            if pod.machine is not None:
                pod.machine.halt()
        elif action == "start":
            self._set_status(pod, "PROVISIONING")
            pod.reads = 0
            gpu = _gpu(pod.data["gpu"]["id"]) or GPUS[0]
            pod.data["cost"] = gpu["price"][pod.data["cloud"].lower()] * pod.data["gpu"]["count"]
        return 200, pod.data

    def listGpuTypes(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"gpus": GPUS}

    def getSshKeys(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"keys": self.ssh_keys}

    def updateSshKeys(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.ssh_keys = list(body["keys"])
        return 200, {"keys": self.ssh_keys}

    # --- GraphQL --------------------------------------------------------------

    def graphql(self, body: Any) -> tuple[int, Any, list[str]]:
        """Returns (status, body, violations)."""
        problems = self.api.errors(GRAPHQL_BODY, body) if isinstance(body, dict) else ["not JSON"]
        if problems:
            return 400, {"errors": [{"message": "; ".join(problems)}]}, problems
        query, variables = body["query"], body.get("variables") or {}
        mutations = {
            "podRentInterruptable": ("PodRentInterruptableInput", RENT_INPUT, self._rent_spot),
            "podBidResume": ("PodBidResumeInput", BID_RESUME_INPUT, self._bid_resume),
        }
        for name, (type_name, schema, handler) in mutations.items():
            if not re.search(rf"\b{name}\s*\(\s*input\s*:\s*\$input\s*\)", query):
                continue
            if name == "podRentInterruptable" and self.knobs.spot_removed:
                return 200, _spot_removed(), []
            if not re.search(rf"\$input\s*:\s*{type_name}!", query):
                bad = [f"{name} must take $input: {type_name}!"]
                return 200, _gql_error(name, bad[0]), bad
            problems = self.api.errors(schema, variables.get("input"))
            if problems:
                return 200, _gql_error(name, "; ".join(problems)), problems
            return 200, handler(variables["input"]), []
        if re.search(r"\bgpuTypes\s*\(", query) and self.knobs.spot_removed:
            return 200, _spot_removed("secureSpotPrice", "GpuType"), []
        if re.search(r"\bgpuTypes\s*\(", query):
            problems = self.api.errors(SPOT_PRICE_VARIABLES, variables)
            if problems:
                return 200, _gql_error("gpuTypes", "; ".join(problems)), problems
            gpu = _gpu(variables["id"])
            return (
                200,
                {"data": {"gpuTypes": [_spot_prices(gpu, variables["gpuCount"])] if gpu else []}},
                [],
            )
        bad = [f"the fake does not serve this GraphQL operation: {query[:80]!r}"]
        return 200, _gql_error("?", bad[0]), bad

    def _rent_spot(self, spec: dict[str, Any]) -> dict[str, Any]:
        gpu = _gpu(spec["gpuTypeId"])
        if gpu is None:
            return _gql_error("podRentInterruptable", f"GPU type {spec['gpuTypeId']} not found")
        if self.knobs.no_capacity or self.knobs.no_spot_capacity:
            return _gql_error("podRentInterruptable", NO_CAPACITY)
        if gpu["id"] in self.knobs.no_capacity_gpus:
            return _gql_error("podRentInterruptable", NO_CAPACITY)
        minimum = _spot_prices(gpu, spec["gpuCount"])["lowestPrice"]["minimumBidPrice"]
        if spec["bidPerGpu"] < minimum:
            return _gql_error("podRentInterruptable", _bid_too_low(minimum))
        body = {
            "name": spec["name"],
            "image": spec["imageName"],
            "gpu": {"id": gpu["id"], "count": spec["gpuCount"]},
            "cloud": "COMMUNITY" if spec.get("cloudType") == "COMMUNITY" else "SECURE",
            "disk": spec.get("containerDiskInGb", 50),
            "ports": [p for p in spec.get("ports", "").split(",") if p],
            "env": {e["key"]: e["value"] for e in spec.get("env", [])},
            "startSsh": spec.get("startSsh", False),
        }
        if spec.get("dataCenterId"):
            body["dataCenterIds"] = [spec["dataCenterId"]]
        if spec.get("volumeInGb"):
            body["mounts"] = {
                "persistent": {
                    "size": spec["volumeInGb"],
                    "path": spec.get("volumeMountPath", "/workspace"),
                }
            }
        cost = round(spec["bidPerGpu"] * spec["gpuCount"], 4)
        pod = self._new_pod(body, spot=True, cost=cost)
        return {
            "data": {
                "podRentInterruptable": {
                    "id": pod.data["id"],
                    "desiredStatus": "RUNNING",
                    "costPerHr": cost,
                    "machine": {"podHostId": f"{pod.data['id']}-64411eb2"},
                }
            }
        }

    def _bid_resume(self, spec: dict[str, Any]) -> dict[str, Any]:
        pod = self.pods.get(spec["podId"])
        if pod is None or not pod.spot:
            return _gql_error("podBidResume", f"pod {spec['podId']} is not an interruptible pod")
        if pod.data["status"] != "EXITED":
            return _gql_error("podBidResume", f"pod is {pod.data['status']}, not EXITED")
        gpu = _gpu(pod.data["gpu"]["id"]) or GPUS[0]
        minimum = _spot_prices(gpu, spec["gpuCount"])["lowestPrice"]["minimumBidPrice"]
        if spec["bidPerGpu"] < minimum:
            return _gql_error("podBidResume", _bid_too_low(minimum))
        if self.knobs.no_capacity:
            return _gql_error("podBidResume", NO_CAPACITY)
        self._set_status(pod, "PROVISIONING")
        pod.reads = 0
        pod.data["cost"] = round(spec["bidPerGpu"] * spec["gpuCount"], 4)
        return {"data": {"podBidResume": {"id": pod.data["id"], "desiredStatus": "RUNNING"}}}


ACTIONS = {
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
}


def _gpu(gpu_id: str) -> dict[str, Any] | None:
    return next((g for g in GPUS if g["id"] == gpu_id), None)


def _acts_first(fault: int | str) -> bool:
    """Whether a fault of ``fail_next`` lets the request be processed first."""
    return fault in ("lose", "ok") or str(fault).startswith(("act-", "bad-"))


def _spot_prices(gpu: dict[str, Any], count: int) -> dict[str, Any]:
    secure = round(gpu["price"]["secure"] * 0.5, 2)
    community = round(gpu["price"]["community"] * 0.5, 2) if gpu["community"] else None
    return {
        "id": gpu["id"],
        "secureSpotPrice": secure,
        "communitySpotPrice": community,
        "lowestPrice": {
            "minimumBidPrice": min(p for p in (secure, community) if p),
            "uninterruptablePrice": gpu["price"]["community"] or gpu["price"]["secure"],
        },
    }


def _bid_too_low(minimum: float) -> str:
    return f"Your bid price is below the minimum bid of ${minimum}/GPU/hr."


def _spot_removed(field: str = "podRentInterruptable", on: str = "Mutation") -> dict[str, Any]:
    """What a GraphQL server answers to a field (and the mutation's input type) its
    schema lost: validation errors, with locations and no ``data``."""
    errors = [
        {
            "message": f'Cannot query field "{field}" on type "{on}".',
            "locations": [{"line": 3, "column": 3}],
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
        }
    ]
    if on == "Mutation":
        errors.insert(
            0,
            {
                "message": 'Unknown type "PodRentInterruptableInput".',
                "locations": [{"line": 2, "column": 25}],
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            },
        )
    return {"errors": errors}


def _mistype(value: Any) -> Any:
    """The same shape with every leaf of the wrong type (lists and objects swapped)."""
    if isinstance(value, dict):
        return {k: _mistype_leaf(v) for k, v in value.items()}
    return _mistype_leaf(value)


def _mistype_leaf(value: Any) -> Any:
    if isinstance(value, list):
        return {"not": "a list"}
    if isinstance(value, dict):
        return ["not", "an", "object"]
    if isinstance(value, bool) or value is None:
        return "yes"
    if isinstance(value, str):
        return 12345
    return "not a number"


def _bad_body(kind: str, body: Any) -> tuple[bytes, str]:
    """(bytes, content type) of a 200 that cannot be used."""
    real = b"" if body is _NO_BODY else json.dumps(body).encode()
    if kind == "html":
        page = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
        return page, "text/html"
    if kind == "cut":
        return real[: max(1, len(real) // 2)], "application/json"
    if kind == "empty":
        return b"", "application/json"
    if kind == "nothing":
        emptied = {k: [] if isinstance(v, list) else v for k, v in body.items()}
        return json.dumps(emptied).encode(), "application/json"
    if kind == "null":
        return b"null", "application/json"
    if kind == "types":
        return json.dumps(_mistype(body if body is not _NO_BODY else {})).encode(), (
            "application/json"
        )
    raise ValueError(f"unknown bad- fault {kind!r}")


def _gql_error(operation: str, message: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "path": [operation]}]}


def _problem(status: int, detail: str, errors: list[str] | None = None) -> tuple[int, Any]:
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        422: "Unprocessable Entity",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    body: dict[str, Any] = {
        "title": titles.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return status, body


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _handler(fake: FakeRunPod) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave as separate writes
        key = "other"  # who the request's Authorization header speaks for

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with fake.lock:
                self._dispatch(method, url.path, query, raw)

        def _dispatch(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
            self.key = fake.key_kind(self.headers.get("Authorization"))
            if self.key == "other":
                detail = (
                    "missing bearer token"
                    if "Authorization" not in self.headers
                    else "invalid API key"
                )
                return self._reply(method, path, None, *_problem(401, detail))
            body: Any = _NO_BODY
            if raw:
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    fake.violations.append(
                        f"{method} {path}: body sent without a JSON content type"
                    )
                try:
                    body = json.loads(raw)
                except ValueError:
                    fake.violations.append(f"{method} {path}: body is not JSON")
                    return self._reply(method, path, None, *_problem(400, "body is not JSON"))

            if path == "/graphql" and method == "POST":
                if self.key != "user":
                    return self._reply(method, path, None, *_problem(403, "access denied"))
                return self._graphql(body)

            found = fake.api.route(method, path)
            if found is None:
                fake.violations.append(f"{method} {path}: not an operation of the document")
                return self._reply(method, path, None, *_problem(404, "no such route"))
            op, args = found
            name = op["operationId"]
            if self.key != "user" and not fake.pod_key_allows(name, args, self.key):
                return self._reply(method, path, op, *_problem(403, "access denied"))
            if self._fault(name, method, path, op):
                return
            problems = fake.api.request_errors(op, query, body)
            if problems:
                fake.violations += [f"{name} request: {p}" for p in problems]
                return self._reply(
                    method, path, op, *_problem(422, "Request validation failed.", problems)
                )
            handler = getattr(fake, name, None)
            if handler is None:
                fake.violations.append(f"{name}: the fake does not serve this operation")
                return self._reply(method, path, op, *_problem(404, "not served by the fake"))
            if args:
                status, out = handler(*args) if body is _NO_BODY else handler(*args, body)
            else:
                status, out = handler(query, body)
            if self._after_acting(name, method, path, op, out):
                return
            self._reply(method, path, op, status, out)

        def _graphql(self, body: Any) -> None:
            query = body.get("query", "") if isinstance(body, dict) else ""
            ops = ("podRentInterruptable", "podBidResume")
            name = next((op for op in ops if op in query), "gpuTypes")
            if self._fault(name, "POST", "/graphql", None):
                return
            status, out, problems = fake.graphql(body)
            fake.violations += [f"graphql {name}: {p}" for p in problems]
            if self._after_acting(name, "POST", "/graphql", None, out):
                return
            self._reply("POST", "/graphql", None, status, out)

        def _fault(self, name: str, method: str, path: str, op: dict[str, Any] | None) -> bool:
            faults = fake.knobs.faults.get(name)
            if not faults or _acts_first(faults[0]):
                return False
            fault = faults.pop(0)
            if fault == "drop":
                self._drop(method, path)
            elif fault == 429:
                status, out = _problem(429, "rate limit exceeded for the minute window")
                self._reply(
                    method, path, op, status, out, {"Retry-After": str(fake.knobs.retry_after)}
                )
            else:
                self._reply(method, path, op, *_problem(int(fault), "upstream failure"))
            return True

        def _after_acting(
            self, name: str, method: str, path: str, op: dict[str, Any] | None, out: Any
        ) -> bool:
            """Apply a fault that comes after the request was processed, if one is next."""
            faults = fake.knobs.faults.get(name)
            if not faults or not _acts_first(faults[0]):
                return False
            fault = str(faults.pop(0))
            if fault == "ok":
                return False
            if fault == "lose":
                self._drop(method, path)
            elif fault.startswith("bad-"):
                data, ctype = _bad_body(fault.removeprefix("bad-"), out)
                self._record(method, path, 200)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                status = int(fault.removeprefix("act-"))
                self._reply(method, path, op, *_problem(status, "upstream failure"))
            return True

        def _drop(self, method: str, path: str) -> None:
            self._record(method, path, 0)
            self.close_connection = True

        def _record(self, method: str, path: str, status: int) -> None:
            fake.log.append((method, path, status))
            fake.key_log.append((method, path, status, self.key))

        def _reply(
            self,
            method: str,
            path: str,
            op: dict[str, Any] | None,
            status: int,
            body: Any,
            headers: dict[str, str] | None = None,
        ) -> None:
            ctype = "application/json" if status < 400 else "application/problem+json"
            if path == "/graphql":
                ctype = "application/json"
            if op is not None:
                problems = fake.api.response_errors(op, status, ctype, body)
                fake.violations += [f"{op['operationId']} response {status}: {p}" for p in problems]
            self._record(method, path, status)
            data = b"" if body is _NO_BODY else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # the caller is gone: a pod's guard, ended by the stop it asked for
                self.close_connection = True

    return Handler


# -- pytest plugin --------------------------------------------------------------------


@pytest.fixture
def fake_runpod(sshd: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A running fake whose pods are machines of the test SSH server, with the
    environment pointing trainctl at it. Fails the test if a request or a response
    broke the OpenAPI document."""

    def machine(_pod_id: str) -> Machine:
        return sshd.new_machine(authorize_client_key=False)

    with FakeRunPod(machine_factory=machine) as server:
        monkeypatch.setenv("RUNPOD_API_KEY", server.api_key)
        monkeypatch.setenv("TRAINCTL_RUNPOD_API_URL", server.url)
        monkeypatch.setenv("TRAINCTL_RUNPOD_GRAPHQL_URL", server.graphql_url)
        # where a pod's guard finds the pod's own key on these machines
        monkeypatch.setenv("TRAINCTL_RUNPOD_POD_ENV_FILES", "~/" + ENV_FILE)
        yield server
        assert server.violations == []


@pytest.fixture
def runpod_guarded(fake_runpod: Any, trainctl_home: Any) -> Any:
    """``fake_runpod`` with short polls, a guard that looks every 0.2 s (grace 2 s),
    and a recovering run that asks for its pod's state every 0.5 s."""
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text(
        "[providers.runpod]\npoll_interval = 0.01\nready_timeout = 30\n"
        "[guard]\ninterval = 0.2\ngrace = 2\n[recover]\nwatch_interval = 0.5\n"
    )
    return fake_runpod


@pytest.fixture
def runpod_cli(fake_runpod: Any, trainctl_home: Any) -> Any:
    """``fake_runpod`` for tests that run the CLI in subprocesses: short polls,
    through the provider's config table."""
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text(
        "[providers.runpod]\npoll_interval = 0.01\nready_timeout = 30\n"
    )
    return fake_runpod


@pytest.fixture
def runpod_api(monkeypatch):
    """The RunPod fake (no machines: price refresh needs none), with the environment
    pointing the runpod provider at it. Fails the test on any OpenAPI violation."""
    with FakeRunPod() as server:
        monkeypatch.setenv("RUNPOD_API_KEY", server.api_key)
        monkeypatch.setenv("TRAINCTL_RUNPOD_API_URL", server.url)
        monkeypatch.setenv("TRAINCTL_RUNPOD_GRAPHQL_URL", server.graphql_url)
        yield server
        assert server.violations == []

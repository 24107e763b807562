"""The ``runpod`` provider: GPU pods through RunPod's REST API v2, training over SSH.

- Pods are created with ``POST /v2/pods``; spot (interruptible) pods, which v2
  lacks, with the GraphQL mutation ``podRentInterruptable``. Every pod trainctl
  makes is named ``trainctl-<name>``: that prefix is how its pods are told apart
  (pods have no tags), and a name is used by one live pod at a time, so a create
  whose response was lost is found again by name instead of being repeated.
- The pod publishes ``22/tcp`` and gets trainctl's public key (and the account's
  registered keys) in ``PUBLIC_KEY``, which RunPod's images install for sshd;
  trainctl then reaches it over the direct SSH mapping, the only one that carries
  rsync.
- ``create_resource`` waits for RUNNING and a direct SSH endpoint; on a timeout,
  ERROR or Ctrl-C it terminates the pod and says why. A pod that runs without a
  direct endpoint (no public IP) for ``direct_ssh_grace`` seconds never gets one:
  it is released at once.
- A create answer that cannot be read (not JSON, ``null``, no pod id) is an unknown
  outcome: the pod is looked up by name, and when it is not found the record is
  kept (``ResourceLeft``). Every other answer is checked too: a list, a pod or a GPU
  catalog of the wrong shape is an error, never "nothing exists".

The API key comes from ``RUNPOD_API_KEY``, else from ``~/.runpod/config.toml`` as
RunPod's tools write it. ``TRAINCTL_RUNPOD_API_URL`` and
``TRAINCTL_RUNPOD_GRAPHQL_URL`` point the provider elsewhere (the tests' fake).
Settings in the ``[providers.runpod]`` config table: ``gpu``, ``cloud``,
``image``, ``disk_gb``, ``ready_timeout``, ``poll_interval``, ``direct_ssh_grace``,
``profile``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .. import sshkeys
from ..capabilities import Capability
from ..errors import (
    BadInput,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    RemoteError,
    ResourceLeft,
    TrainctlError,
)
from ..home import provider_config
from ..provider import NAME_PREFIX, TAG_MANAGED, TAG_NAME, CheckResult, TrainingProvider
from ..remote.base import Progress
from ..remote.ssh import Endpoint, SSHRemote
from ..states import normalize_state
from ..types import CostEstimate, CreateResourceOptions, GpuSpec, ResourceState, ResourceStatus
from ..waiting import Seen, wait_ready
from . import runpod_gpus

DEFAULT_API_URL = "https://api.runpod.io"
DEFAULT_GRAPHQL_URL = "https://api.runpod.io/graphql"
DEFAULT_IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
DEFAULT_DISK_GB = 50
VOLUME_PATH = "/workspace"
MIN_VOLUME_GB = 10  # RunPod's floor for a persistent volume
SPOT_MARK = "TRAINCTL_SPOT"  # pod env var: v2 does not say whether a pod is interruptible
SSH_PROBE_TIMEOUT = 15.0
DIRECT_SSH_GRACE = 60.0  # seconds a RUNNING pod may lack its direct SSH endpoint
#: runpodctl hides its ``config`` command ("deprecated: use 'runpodctl doctor'");
#: ``doctor`` asks for the key and saves it in ~/.runpod/config.toml
CREDENTIALS_HINT = (
    "set RUNPOD_API_KEY (create a key under API Keys at "
    "https://www.runpod.io/console/user/settings), or run `runpodctl doctor` or "
    "`runpod config`, which ask for one and save it in ~/.runpod/config.toml"
)
SPOT_GONE = "RunPod no longer offers spot pods through its API"
CLOUDS = ("secure", "community")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: GraphQL validation errors for a mutation or input type the schema no longer has
_SPOT_GONE = re.compile(
    r'Cannot query field "(podRentInterruptable|podBidResume|secureSpotPrice|'
    r'communitySpotPrice)"|Unknown type "(PodRentInterruptableInput|PodBidResumeInput)"'
)
_CAPACITY_WORDS = ("no longer any instances", "not enough", "capacity", "unavailable", "no gpu")

RENT_SPOT = """
mutation RentSpot($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) { id desiredStatus costPerHr machine { podHostId } }
}"""
BID_RESUME = """
mutation ResumeSpot($input: PodBidResumeInput!) {
  podBidResume(input: $input) { id desiredStatus }
}"""
SPOT_PRICES = """
query SpotPrices($id: String!, $gpuCount: Int!) {
  gpuTypes(input: {id: $id}) {
    id secureSpotPrice communitySpotPrice
    lowestPrice(input: {gpuCount: $gpuCount}) { minimumBidPrice uninterruptablePrice }
  }
}"""


# --- credentials ---------------------------------------------------------------------


def config_file() -> Path:
    """Where RunPod's own tools keep the key."""
    return Path.home() / ".runpod" / "config.toml"


def read_config_key(path: Path, profile: str = "default") -> str | None:
    """The API key in a RunPod config file, or None.

    RunPod's command-line tool (runpodctl, through viper, which lower-cases keys)
    writes a top-level ``apikey = "..."`` (``apiKey`` in older files); RunPod's
    Python library writes ``api_key = "..."`` under a profile table, ``[default]``
    unless another profile was chosen. Raises ``OSError`` / ``TOMLDecodeError``."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    section = data.get(profile)
    if profile != "default" and isinstance(section, dict):
        return _text(section.get("api_key"))
    for k, v in data.items():
        if k.lower() == "apikey" and _text(v):
            return _text(v)
    return _text(section.get("api_key")) if isinstance(section, dict) else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def find_api_key(profile: str = "default") -> tuple[str, str] | None:
    """``(key, where it came from)``, or None when there is none."""
    env = _text(os.environ.get("RUNPOD_API_KEY"))
    if env:
        return env, "RUNPOD_API_KEY"
    path = config_file()
    try:
        key = read_config_key(path, profile)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{path} could not be read: {e}", hint=CREDENTIALS_HINT) from None
    return (key, str(path)) if key else None


# --- the provider --------------------------------------------------------------------


@dataclass
class PodPlan:
    """Everything a create needs, checked before any side effect."""

    pod_name: str
    gpu: GpuSpec
    cloud: str  # secure | community
    image: str
    disk_gb: int
    volume_gb: int
    region: str | None
    spot: bool
    spot_fallback: bool
    max_price: float | None
    env: dict[str, str] = field(default_factory=dict)


class RunPodProvider(TrainingProvider):
    name = "runpod"
    capabilities = frozenset(
        {
            Capability.CREATE,
            Capability.SPOT,
            Capability.STOP_START,
            Capability.REGIONS,
            Capability.CUSTOM_IMAGE,
            Capability.GPU_SELECTION,
            Capability.DOWNLOAD,
            Capability.DISK_SIZE,
        }
    )
    extra_options = frozenset({"cloud", "volume_gb", "env"})

    @classmethod
    def options_for_offer(
        cls, options: CreateResourceOptions, *, offer_id: str, gpu: GpuSpec, cloud: str = ""
    ) -> CreateResourceOptions:
        """A RunPod offer is a GPU type id on one cloud; the count goes with it."""
        extra = {**options.extra, "cloud": cloud} if cloud else options.extra
        return replace(options, instance_type=None, gpu=GpuSpec(offer_id, gpu.count), extra=extra)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_url: str | None = None,
        graphql_url: str | None = None,
        ready_timeout: float | None = None,
        poll_interval: float | None = None,
        public_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        http_options: dict[str, Any] | None = None,
    ) -> None:
        """``sleep`` paces polls and retries; ``http_options`` go to ``JsonApi``
        (tests pass a short backoff)."""
        self.config = provider_config(self.name)
        url = api_url or os.environ.get("TRAINCTL_RUNPOD_API_URL") or DEFAULT_API_URL
        self.api_url = url.rstrip("/").removesuffix("/v2")
        self.graphql_url = (
            graphql_url or os.environ.get("TRAINCTL_RUNPOD_GRAPHQL_URL") or DEFAULT_GRAPHQL_URL
        )
        self.ready_timeout = float(_first(ready_timeout, self.config.get("ready_timeout"), 900))
        self.poll_interval = float(_first(poll_interval, self.config.get("poll_interval"), 5))
        self.direct_ssh_grace = float(_first(self.config.get("direct_ssh_grace"), DIRECT_SSH_GRACE))
        self._api_key = api_key
        self._public_key = public_key
        self._sleep = sleep
        self._http_options = http_options or {}
        self._rest: Any = None
        self._graphql: Any = None

    # --- clients ------------------------------------------------------------------

    @classmethod
    def credentials_present(cls) -> bool:
        try:
            return (
                find_api_key(str(provider_config(cls.name).get("profile", "default"))) is not None
            )
        except BadInput:
            return False

    def _key(self) -> tuple[str, str]:
        if self._api_key:
            return self._api_key, "the caller"
        found = find_api_key(str(self.config.get("profile", "default")))
        if not found:
            raise CredentialsError("no RunPod API key found", hint=CREDENTIALS_HINT)
        return found

    def _client(self, base_url: str) -> Any:
        from ..httpapi import JsonApi

        return JsonApi(
            base_url,
            self._key()[0],
            service="RunPod",
            credentials_hint=CREDENTIALS_HINT,
            sleep=self._sleep,
            **self._http_options,
        )

    @property
    def rest(self) -> Any:
        if self._rest is None:
            self._rest = self._client(self.api_url)
        return self._rest

    def _gql(
        self, query: str, variables: dict[str, Any], *, mutation: bool, recover: Any = None
    ) -> dict[str, Any]:
        if self._graphql is None:
            u = urlsplit(self.graphql_url)
            self._graphql = (self._client(f"{u.scheme}://{u.netloc}"), u.path or "/")
        client, path = self._graphql
        body = client.post(
            path,
            {"query": query, "variables": variables},
            idempotent=not mutation,
            recover=recover,
        )
        if not isinstance(body, dict):
            if mutation:  # it may have acted: the caller settles the missing result
                return {}
            raise OperationFailed(f"RunPod GraphQL answered {_shape(body)}, not a response")
        errors = body.get("errors")
        if errors:
            raise _graphql_error(errors if isinstance(errors, list) else [errors])
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    # --- pods through REST ----------------------------------------------------------

    def _pod_path(self, pod_id: str) -> str:
        return "/v2/pods/" + quote(pod_id, safe="")

    def _get_pod(self, pod_id: str) -> dict[str, Any]:
        from ..httpapi import ApiError

        try:
            body = self.rest.get(self._pod_path(pod_id))
        except ApiError as e:
            if e.status == 404:
                raise NotFound(f"no RunPod pod {pod_id}") from None
            raise
        return _checked_pod(body, f"GET /v2/pods/{pod_id}")

    def _list_pods(self) -> list[dict[str, Any]]:
        """Every pod of the account. An answer that is not a list of pods is an
        error: read as "none", it would mark every live pod terminated. ``[]`` is
        RunPod saying there are none."""
        body = self.rest.get("/v2/pods")
        pods = body.get("pods") if isinstance(body, dict) else None
        if not isinstance(pods, list):
            raise OperationFailed(
                f"RunPod GET /v2/pods answered {_shape(body)}, not a list of pods; "
                "nothing was concluded from it"
            )
        return [_checked_pod(p, "GET /v2/pods") for p in pods]

    def _find_by_name(self, pod_name: str) -> dict[str, Any] | None:
        for pod in self._list_pods():
            if pod.get("name") == pod_name and pod.get("status") != "TERMINATED":
                return pod
        return None

    def _own_pod(self, pod_id: str) -> dict[str, Any]:
        return _require_ours(self._get_pod(pod_id))

    def _delete(self, pod_id: str) -> None:
        from ..httpapi import ApiError

        try:
            self.rest.delete(self._pod_path(pod_id))
        except ApiError as e:
            if e.status != 404:
                raise

    def _action(self, pod_id: str, action: str, done: tuple[str, ...]) -> dict[str, Any]:
        """Apply a pod action; a 409 is fine when the pod is already in a ``done`` state
        (a repeated request, or a retry of one that took effect)."""
        from ..httpapi import ApiError

        try:
            answer = self.rest.post(
                self._pod_path(pod_id) + "/action", {"action": action}, idempotent=True
            )
            return _checked_pod(answer, f"POST /v2/pods/{pod_id}/action")
        except ApiError as e:
            if e.status != 409:
                raise
            pod = self._get_pod(pod_id)
            if pod.get("status") in done:
                return pod
            raise BadInput(f"cannot {action} pod {pod_id} now: {e.detail}") from None

    # --- control plane ------------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            _key, source = self._key()
            pods = self._list_pods()
        except (CredentialsError, BadInput) as e:
            return CheckResult(self.name, False, str(e))
        except OperationFailed as e:
            return CheckResult(self.name, False, f"RunPod API at {self.api_url}: {e}")
        ours = [p for p in pods if str(p.get("name", "")).startswith(NAME_PREFIX)]
        return CheckResult(
            self.name,
            True,
            f"API key from {source} works; {len(ours)} trainctl pod(s) of {len(pods)}",
        )

    def create_resource(
        self, options: CreateResourceOptions, *, progress: Progress | None = None
    ) -> ResourceStatus:
        say = progress or (lambda _line: None)
        plan = self._plan(options)
        gpu = self._resolve(plan)
        if not plan.spot:
            self._check_price(plan, gpu)
        existing = self._find_by_name(plan.pod_name)
        if existing:
            raise BadInput(
                f"a RunPod pod named {plan.pod_name} already exists ({existing['id']}, "
                f"{existing.get('status')})",
                hint="choose another --name, or terminate that pod first",
            )
        say(f"renting {plan.gpu.count}x {gpu['id']} on RunPod's {plan.cloud} cloud")
        env = {**plan.env, "PUBLIC_KEY": "\n".join(self._authorized_keys())}
        pod_id = None
        if plan.spot:
            try:
                pod_id = self._rent_spot(plan, gpu, env)
            except NoCapacity as e:
                if not plan.spot_fallback:
                    raise
                self._check_price(plan, gpu, why=f"no spot pod ({e.message}); ")
                say(f"no spot pod ({e.message}); falling back to on-demand")
        if pod_id is None:
            pod_id = self._create_pod(plan, gpu, env)["id"]
        say(f"pod {pod_id} ({plan.pod_name}) created; waiting for it to run")
        pod = self._wait_usable(pod_id, progress, release=lambda: self._delete(pod_id))
        status = self._status(pod)
        say(f"ready: ssh {status.ssh_user}@{status.ssh_host} -p {status.ssh_port}")
        return status

    @staticmethod
    def _check_price(plan: PodPlan, gpu: dict[str, Any], why: str = "") -> None:
        """``--max-price`` is the most the user pays per hour: an on-demand pod above
        it is refused, the fallback from spot included."""
        hourly = gpu["price"][plan.cloud] * plan.gpu.count
        if plan.max_price is not None and hourly > plan.max_price:
            fallback = "the on-demand fallback: " if why else ""
            raise NoCapacity(
                f"{why}{fallback}{plan.gpu.count}x {gpu['id']} costs ${hourly:.2f}/h on "
                f"RunPod's {plan.cloud} cloud, above --max-price ${plan.max_price:.2f}/h",
                hint=f"--max-price {hourly:.2f} or more allows it" if why else None,
            )

    def _plan(self, options: CreateResourceOptions) -> PodPlan:
        self.validate_options(options)
        cfg = self.config
        if options.tags:
            raise BadInput(
                "RunPod pods have no tags (trainctl tells its pods apart by their name)",
                hint="leave out --tag",
            )
        gpu = options.gpu or (GpuSpec.parse(str(cfg["gpu"])) if cfg.get("gpu") else None)
        if gpu is None:
            raise BadInput(
                "RunPod needs a GPU: give --gpu NAME[:COUNT]",
                hint="e.g. --gpu RTX4090, --gpu H100 or --gpu A100-80GB:2",
            )
        extra = options.extra
        cloud = str(extra.get("cloud") or cfg.get("cloud") or "secure").lower()
        if cloud not in CLOUDS:
            raise BadInput(f"unknown RunPod cloud {cloud!r}: expected secure or community")
        disk = _int(_first(options.disk_gb, cfg.get("disk_gb"), DEFAULT_DISK_GB), "disk size")
        volume = _int(extra.get("volume_gb") or 0, "volume size")
        if disk < 1:
            raise BadInput(f"bad disk size {disk} GB: it must be at least 1")
        if 0 < volume < MIN_VOLUME_GB or volume < 0:
            raise BadInput(f"bad volume size {volume} GB: RunPod volumes are at least 10 GB")
        if options.max_price is not None and options.max_price <= 0:
            raise BadInput(f"bad --max-price {options.max_price}: it must be above 0")
        env = extra.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) for k in env
        ):
            raise BadInput("pod environment variables need names like NAME=value")
        short = options.name or secrets.token_hex(3)
        if not _NAME.match(short):
            raise BadInput(
                f"bad name {short!r}: use letters, digits, '.', '_' and '-' (at most 63)"
            )
        return PodPlan(
            pod_name=NAME_PREFIX + short,
            gpu=gpu,
            cloud=cloud,
            image=options.image or str(cfg.get("image") or DEFAULT_IMAGE),
            disk_gb=disk,
            volume_gb=volume,
            region=options.region,
            spot=options.spot,
            spot_fallback=options.spot_fallback,
            max_price=options.max_price,
            env={str(k): str(v) for k, v in env.items()},
        )

    def gpu_catalog(self) -> list[dict[str, Any]]:
        """RunPod's GPU types with their prices (cached under the trainctl home)."""
        return runpod_gpus.load_catalog(self.fetch_gpu_catalog, self.api_url)

    def fetch_gpu_catalog(self) -> list[dict[str, Any]]:
        """``GET /v2/catalog/gpus``, checked (``runpod_gpus.checked``)."""
        return runpod_gpus.checked(self.rest.get("/v2/catalog/gpus"))

    def _resolve(self, plan: PodPlan) -> dict[str, Any]:
        return runpod_gpus.resolve(self.gpu_catalog(), plan.gpu, plan.cloud)

    def _authorized_keys(self) -> list[str]:
        """trainctl's own public key, then the account's registered ones, so the user
        can also ssh in with their usual key."""
        from ..httpapi import ApiError

        keys = [self._public_key or sshkeys.public_key()]
        try:
            body = self.rest.get("/v2/account/ssh-keys")
        except (ApiError, CredentialsError):  # a key scoped to pods only may not read them
            body = None
        registered = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(registered, list):
            registered = []
        texts = [k for k in [*keys, *registered] if isinstance(k, str)]
        return list(dict.fromkeys(k.strip() for k in texts if k.strip()))

    def _create_pod(self, plan: PodPlan, gpu: dict[str, Any], env: dict[str, str]) -> dict:
        from ..httpapi import ApiError

        body: dict[str, Any] = {
            "name": plan.pod_name,
            "image": plan.image,
            "gpu": {"id": gpu["id"], "count": plan.gpu.count},
            "cloud": plan.cloud.upper(),
            "disk": plan.disk_gb,
            "ports": ["22/tcp"],
            "env": env,
            "startSsh": True,
        }
        if plan.region:
            body["dataCenterIds"] = [plan.region]
        if plan.volume_gb:
            body["mounts"] = {"persistent": {"size": plan.volume_gb, "path": VOLUME_PATH}}
        try:
            answer = self.rest.post(
                "/v2/pods",
                body,
                recover=lambda: self._find_by_name(plan.pod_name),
                not_credentials=frozenset({403}),
            )
        except ApiError as e:
            raise _create_error(e, f"{plan.gpu.count}x {gpu['id']} ({plan.cloud})") from None
        if isinstance(answer, dict) and isinstance(answer.get("id"), str) and answer["id"]:
            return answer
        return self._settle_unreadable(plan.pod_name, f"RunPod answered {_shape(answer)}")

    def _settle_unreadable(self, pod_name: str, why: str) -> dict[str, Any]:
        """A create that may have acted but whose answer names no pod: the pod it
        made, found by name, or ``ResourceLeft`` so that its record is kept."""
        try:
            found = self._find_by_name(pod_name)
        except TrainctlError as e:
            raise ResourceLeft(
                f"{why} to the create of {pod_name}, and looking it up failed too "
                f"({e.message}); it may exist and bill"
            ) from None
        if found is not None:
            return found
        raise ResourceLeft(
            f"{why} to the create of {pod_name}, and no pod of that name is listed yet; "
            "it may still appear and bill"
        )

    def _spot_quote(self, gpu_id: str, count: int, cloud: str) -> float:
        """RunPod's current lowest spot bid per GPU for this cloud."""
        data = self._gql(SPOT_PRICES, {"id": gpu_id, "gpuCount": count}, mutation=False)
        types = data.get("gpuTypes") or []
        if not isinstance(types, list) or not types:
            raise NoCapacity(f"RunPod offers no spot {gpu_id}")
        price = spot_price(types[0], cloud)
        if price is None:
            raise NoCapacity(f"RunPod offers no spot {gpu_id} on its {cloud} cloud")
        return price

    def _bid(self, plan: PodPlan, gpu_id: str) -> float:
        if plan.max_price is not None:
            return round(plan.max_price / plan.gpu.count, 4)
        return self._spot_quote(gpu_id, plan.gpu.count, plan.cloud)

    def _rent_spot(self, plan: PodPlan, gpu: dict[str, Any], env: dict[str, str]) -> str:
        spec: dict[str, Any] = {
            "name": plan.pod_name,
            "imageName": plan.image,
            "gpuTypeId": gpu["id"],
            "gpuCount": plan.gpu.count,
            "cloudType": plan.cloud.upper(),
            "containerDiskInGb": plan.disk_gb,
            "ports": "22/tcp",
            "env": [{"key": k, "value": v} for k, v in {**env, SPOT_MARK: "1"}.items()],
            "startSsh": True,
            "supportPublicIp": True,
            "bidPerGpu": self._bid(plan, gpu["id"]),
        }
        if plan.region:
            spec["dataCenterId"] = plan.region
        if plan.volume_gb:
            spec["volumeInGb"] = plan.volume_gb
            spec["volumeMountPath"] = VOLUME_PATH

        def recover() -> dict[str, Any] | None:
            found = self._find_by_name(plan.pod_name)
            return {"data": {"podRentInterruptable": found}} if found else None

        data = self._gql(RENT_SPOT, {"input": spec}, mutation=True, recover=recover)
        pod = data.get("podRentInterruptable")
        if isinstance(pod, dict) and isinstance(pod.get("id"), str) and pod["id"]:
            return pod["id"]
        why = f"RunPod answered podRentInterruptable with {_shape(pod)}"
        return str(self._settle_unreadable(plan.pod_name, why)["id"])

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._status(self._own_pod(resource_id))

    def list_resources(self) -> list[ResourceStatus]:
        return [
            self._status(p)
            for p in self._list_pods()
            if str(p.get("name", "")).startswith(NAME_PREFIX)
        ]

    def terminate(self, resource_id: str) -> ResourceStatus:
        try:
            pod = self._get_pod(resource_id)
        except NotFound:
            return ResourceStatus(
                resource_id, self.name, ResourceState.TERMINATED, reason="already gone"
            )
        _require_ours(pod)
        self._delete(resource_id)
        if _look(pod).ready:
            remote = _remote(pod)
            # tidying up: the pod is gone whether or not this works
            with contextlib.suppress(OperationFailed, OSError, subprocess.SubprocessError):
                remote.close()
                remote.forget_host_key()
        status = self._status(pod)
        status.state = ResourceState.TERMINATED
        status.raw_state = "TERMINATED"
        status.cost_per_hour = 0.0
        status.ssh_host = status.ssh_port = status.ssh_user = status.public_ip = None
        return status

    def stop(self, resource_id: str) -> ResourceStatus:
        pod = self._own_pod(resource_id)
        if pod.get("status") != "EXITED":
            pod = self._action(resource_id, "stop", ("EXITED",))
        return self._status(pod)

    def start(self, resource_id: str, *, progress: Progress | None = None) -> ResourceStatus:
        pod = self._own_pod(resource_id)
        if pod.get("status") == "EXITED" and (pod.get("env") or {}).get(SPOT_MARK) == "1":
            self._resume_spot(pod)
        elif pod.get("status") in ("EXITED", "ERROR"):
            self._action(resource_id, "start", ("PROVISIONING", "STARTING", "RUNNING"))
        return self._status(self._wait_usable(resource_id, progress))

    def _resume_spot(self, pod: dict[str, Any]) -> None:
        """A stopped spot pod runs again only with a new bid (GraphQL podBidResume),
        at the current spot price."""
        gpu = pod.get("gpu") or {}
        count = int(gpu.get("count", 1))
        bid = self._spot_quote(str(gpu.get("id")), count, str(pod.get("cloud", "SECURE")).lower())

        def recover() -> dict[str, Any] | None:
            again = self._get_pod(pod["id"])
            return {"data": {"podBidResume": again}} if again.get("status") != "EXITED" else None

        spec = {"podId": pod["id"], "bidPerGpu": bid, "gpuCount": count}
        self._gql(BID_RESUME, {"input": spec}, mutation=True, recover=recover)

    def _wait_usable(
        self,
        pod_id: str,
        progress: Progress | None,
        *,
        release: Callable[[], object] | None = None,
    ) -> dict[str, Any]:
        """Wait until the pod runs and its sshd lets trainctl in. ``release`` (on a new
        pod) terminates it when that does not happen; without it the pod is left be."""
        probed: set[str] = set()
        undirected_since: list[float] = []  # when it was first seen RUNNING without one

        def poll() -> Probe:
            pod = self._get_pod(pod_id)
            if not _look(pod).ready:
                if pod.get("status") != "RUNNING":
                    return Probe(pod)
                undirected_since[:1] = undirected_since[:1] or [time.monotonic()]
                if time.monotonic() - undirected_since[0] < self.direct_ssh_grace:
                    return Probe(pod)
                return Probe(pod, failure=_no_direct_ssh(pod, self.direct_ssh_grace))
            # a new pod on an address an earlier one had: its host key is new too
            error = _remote(pod).probe_login(probed, timeout=SSH_PROBE_TIMEOUT)
            return Probe(pod, ssh_ok=error is None, ssh_error=error)

        return wait_ready(
            f"RunPod pod {pod_id}",
            poll,
            Probe.seen,
            release=release,
            resource_id=pod_id,
            timeout=self.ready_timeout,
            interval=self.poll_interval,
            progress=progress,
            sleep=self._sleep,
        ).pod

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        """The live catalog's price (or, for spot, the current spot price or your bid);
        without an API key, the bundled price catalog's."""
        plan = self._plan(options)
        if not self._api_key and not find_api_key(str(self.config.get("profile", "default"))):
            from .. import catalog

            return catalog.estimate(self.name, options, hours)
        gpu = self._resolve(plan)
        count = plan.gpu.count
        if plan.spot:
            bid = self._bid(plan, gpu["id"])
            source = (
                f"your bid (--max-price) for {count}x {gpu['id']} spot"
                if plan.max_price is not None
                else f"RunPod's current {plan.cloud} spot price for {count}x {gpu['id']}"
            )
            return CostEstimate(self.name, round(bid * count, 4), hours, source, spot=True)
        hourly = round(gpu["price"][plan.cloud] * count, 4)
        source = f"RunPod catalog, {plan.cloud} cloud on-demand, {count}x {gpu['id']}"
        return CostEstimate(self.name, hourly, hours, source)

    def connect(self, resource_id: str) -> SSHRemote:
        """The pod over its direct SSH mapping; a pod still starting is waited for."""
        pod = self._own_pod(resource_id)
        raw = pod.get("status")
        if raw == "EXITED":
            raise RemoteError(
                f"RunPod pod {resource_id} is stopped",
                hint=f"start it with `trainctl start {resource_id}`",
            )
        if raw == "ERROR":
            raise RemoteError(f"RunPod pod {resource_id} is in ERROR and cannot be reached")
        if not _look(pod).ready:
            pod = self._wait_usable(resource_id, None)
        return _remote(pod)

    def connect_to(self, status: ResourceStatus) -> SSHRemote:
        """A running pod is reached at the SSH endpoint its status holds."""
        if status.state is ResourceState.RUNNING and status.ssh_host and status.ssh_port:
            return SSHRemote(Endpoint(status.ssh_host, status.ssh_port, status.ssh_user))
        return self.connect(status.id)

    # --- conversion -----------------------------------------------------------------

    def _status(self, pod: dict[str, Any]) -> ResourceStatus:
        raw = pod.get("status")
        gpu = pod.get("gpu") or {}
        direct = (pod.get("ssh") or {}).get("direct") or {}
        short = str(pod.get("name", "")).removeprefix(NAME_PREFIX)
        persistent = (pod.get("mounts") or {}).get("persistent") or {}
        spot = (pod.get("env") or {}).get(SPOT_MARK) == "1"
        reason = None
        if raw == "EXITED" and spot:
            reason = "a spot pod stops when RunPod reclaims its GPU; start it to bid again"
        elif raw == "ERROR":
            reason = "RunPod reports the pod in ERROR"
        elif raw == "RUNNING" and not direct:
            reason = "no direct SSH endpoint yet"
        created = pod.get("createdAt")
        return ResourceStatus(
            id=str(pod["id"]),
            provider=self.name,
            state=normalize_state(self.name, raw),
            name=short,
            reason=reason,
            instance_type=f"{gpu.get('count', 1)}x {gpu['id']}" if gpu.get("id") else None,
            gpu=gpu.get("id"),
            gpu_count=int(gpu.get("count", 1)) if gpu else 0,
            launch_time=datetime.fromisoformat(created) if created else None,
            cost_per_hour=pod.get("cost"),
            spot=spot,
            region=pod.get("dataCenterId"),
            public_ip=direct.get("host"),
            ssh_host=direct.get("host"),
            ssh_port=direct.get("port"),
            ssh_user=direct.get("username"),
            tags={TAG_MANAGED: "true", TAG_NAME: short},
            raw_state=raw,
            details={
                "pod_name": pod.get("name"),
                "cloud": pod.get("cloud"),
                "image": pod.get("image"),
                "disk_gb": pod.get("disk"),
                "volume_gb": persistent.get("size"),
            },
        )


def _require_ours(pod: dict[str, Any]) -> dict[str, Any]:
    if not str(pod.get("name", "")).startswith(NAME_PREFIX):
        raise NotFound(
            f"RunPod pod {pod.get('id')} ({pod.get('name')}) was not created by trainctl; "
            "trainctl leaves it alone"
        )
    return pod


def _look(pod: dict[str, Any]) -> Seen:
    raw = str(pod.get("status") or "unknown")
    if raw == "RUNNING":
        if (pod.get("ssh") or {}).get("direct"):
            return Seen(raw, ready=True)
        return Seen("RUNNING, waiting for its 22/tcp mapping")
    if raw == "ERROR":
        return Seen(raw, failure="RunPod reports it in ERROR (its image or its host failed)")
    if raw in ("EXITED", "TERMINATED"):
        return Seen(raw, failure=f"it is {raw} and will not run")
    return Seen(raw)


@dataclass
class Probe:
    """One poll of a new pod: what the API says, and whether sshd let trainctl in."""

    pod: dict[str, Any]
    ssh_ok: bool = False
    ssh_error: str | None = None
    failure: str | None = None

    def seen(self) -> Seen:
        if self.failure:
            return Seen(str(self.pod.get("status")), failure=self.failure)
        seen = _look(self.pod)
        if not seen.ready or self.ssh_ok:
            return seen
        return Seen(f"RUNNING, waiting for sshd ({self.ssh_error})")


def spot_price(gpu_type: Any, cloud: str, *, lowest: bool = True) -> float | None:
    """The spot $/hour per GPU a GraphQL ``gpuTypes`` entry gives for ``cloud`` (or,
    with ``lowest``, its minimum bid), None when it gives no usable number."""
    if not isinstance(gpu_type, dict):
        return None
    lowest_price = gpu_type.get("lowestPrice") if lowest else None
    candidates = [
        gpu_type.get(f"{cloud}SpotPrice"),
        lowest_price.get("minimumBidPrice") if isinstance(lowest_price, dict) else None,
    ]
    for value in candidates:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _no_direct_ssh(pod: dict[str, Any], grace: float) -> str:
    cloud = str(pod.get("cloud") or "").lower()
    advice = (
        "try --cloud secure, whose pods have public IPs"
        if cloud != "secure"
        else "try another --gpu or --region"
    )
    return (
        f"it has run {grace:g} s without a direct SSH endpoint (no public IP on its host), "
        f"which rsync and trainctl need; {advice}"
    )


#: the fields of a pod trainctl reads, with the types they may have (None: absent/null)
_POD_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "status": (str,),
    "gpu": (dict,),
    "ssh": (dict,),
    "env": (dict,),
    "mounts": (dict,),
    "cost": (int, float),
    "cloud": (str,),
    "image": (str,),
    "disk": (int,),
    "dataCenterId": (str,),
    "createdAt": (str,),
}


def _checked_pod(pod: Any, what: str) -> dict[str, Any]:
    """``pod`` if it is a pod as RunPod's document describes the fields trainctl
    reads; ``OperationFailed`` (one line) otherwise."""
    problems = []
    if not isinstance(pod, dict) or not isinstance(pod.get("id"), str) or not pod["id"]:
        problems.append(f"a pod without an id ({_shape(pod)})")
    else:
        for key, types in _POD_FIELDS.items():
            value = pod.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                problems.append(f"{key} is {_shape(value)}")
        ssh = pod.get("ssh")
        direct = ssh.get("direct") if isinstance(ssh, dict) else None
        if direct is not None and not (
            isinstance(direct, dict)
            and isinstance(direct.get("host"), str)
            and isinstance(direct.get("port"), int)
            and isinstance(direct.get("username"), str)
        ):
            problems.append(f"ssh.direct is {_shape(direct)}")
        gpu = pod.get("gpu")
        if isinstance(gpu, dict) and not (
            isinstance(gpu.get("id", ""), str) and isinstance(gpu.get("count", 1), int)
        ):
            problems.append(f"gpu is {_shape(gpu)}")
        created = pod.get("createdAt")
        if isinstance(created, str):
            try:
                datetime.fromisoformat(created)
            except ValueError:
                problems.append(f"createdAt is {created[:40]!r}")
    if problems:
        raise OperationFailed(f"RunPod {what} answered an unreadable pod: {'; '.join(problems)}")
    return pod


def _shape(value: Any) -> str:
    """A short description of an unexpected value, for one-line errors."""
    if value is None:
        return "nothing (null or empty)"
    if isinstance(value, dict):
        keys = ", ".join(repr(k)[:24] for k in list(value)[:4])
        return "an object" + (f" with {keys}" if value else " (empty)")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {str(value)[:40]!r}"


def _remote(pod: dict[str, Any]) -> SSHRemote:
    d = pod["ssh"]["direct"]
    return SSHRemote(Endpoint(str(d["host"]), int(d["port"]), str(d["username"])))


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadInput(f"bad {what} {value!r}: expected a whole number of GB") from None


def _is_capacity(text: str) -> bool:
    lower = text.lower()
    return any(w in lower for w in _CAPACITY_WORDS)


def _create_error(e: Any, what: str) -> Exception:
    """What a refused create means to the user (see createPod in RunPod's document)."""
    if e.status == 400 and _is_capacity(e.detail):
        return NoCapacity(f"RunPod has no {what} available now: {e.detail}")
    if e.status == 400:
        return BadInput(f"RunPod refused the pod: {e.detail}")
    if e.status == 402:
        return OperationFailed(
            f"RunPod refused the pod: {e.detail or 'insufficient balance'}",
            hint="add credit to the RunPod account",
        )
    if e.status == 403:
        # createPod's 403: "your account cannot access the requested pool" (skip it)
        return NoCapacity(
            f"RunPod's {what} is not available to this account (403: it cannot use that "
            f"GPU pool{': ' + e.detail if e.detail else ''})",
            hint="pick another --gpu or --cloud, or use --provider cheapest",
        )
    if e.status == 404:
        return BadInput(f"RunPod refused the pod: {e.detail}")
    return e


def _graphql_error(errors: list[Any]) -> Exception:
    text = "; ".join(
        str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors[:5]
    )
    lower = text.lower()
    if _SPOT_GONE.search(text):
        return NoCapacity(
            f"{SPOT_GONE} (its GraphQL API no longer knows spot rentals or prices)",
            hint="drop --spot, or add --spot-fallback to rent on-demand instead",
        )
    if "unauthorized" in lower or "api key" in lower:
        return CredentialsError(f"RunPod rejected the API key: {text}", hint=CREDENTIALS_HINT)
    if "bid" in lower:
        return NoCapacity(f"RunPod refused the spot bid: {text}", hint="raise --max-price")
    if _is_capacity(text):
        return NoCapacity(f"RunPod has no spot capacity: {text}")
    return OperationFailed(f"RunPod GraphQL error: {text}")

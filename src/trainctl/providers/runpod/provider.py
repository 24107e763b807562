"""The ``runpod`` provider: GPU pods through RunPod's REST API v2, training over SSH.

- Pods are created with ``POST /v2/pods``; spot (interruptible) pods, which v2
  lacks, with the GraphQL mutation ``podRentInterruptable`` (see ``client``). Every
  pod trainctl makes is named ``trainctl-<name>``: that prefix is how its pods are
  told apart (pods have no tags), and a name is used by one live pod at a time, so a
  create whose response was lost is found again by name instead of being repeated.
- The pod publishes ``22/tcp`` and gets trainctl's public key (and the account's
  registered keys) in ``PUBLIC_KEY``, which RunPod's images install for sshd;
  trainctl then reaches it over the direct SSH mapping, the only one that carries
  rsync.
- ``launch`` waits for RUNNING and a direct SSH endpoint; on a timeout, ERROR or
  Ctrl-C it terminates the pod and says why. A pod that runs without a direct
  endpoint (no public IP) for ``direct_ssh_grace`` seconds never gets one: it is
  released at once.
- ``--nodes N`` rents an Instant Cluster: N pods in one call, on a private network
  (``clusters``); its pods are released together.
- A spot pod bids ``--max-price`` (split per GPU) when given, else RunPod's current
  spot price; so the cap needs no separate check (``spot_bids_max_price``).

The API key comes from ``RUNPOD_API_KEY``, else from ``~/.runpod/config.toml`` as
RunPod's tools write it (``credentials``). Settings: ``settings.RunPodSettings``.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import catalog, sshkeys
from ...capabilities import Capability
from ...errors import BadInput, CredentialsError, NoCapacity, NotFound, OperationFailed, RemoteError
from ...provider import (
    NAME_PREFIX,
    TAG_MANAGED,
    TAG_NAME,
    VOLUME_FLAG,
    CheckResult,
    GroupNetwork,
    ProviderFlag,
    Quote,
    Release,
    SelfRelease,
    StopStart,
    TrainingProvider,
)
from ...remote.base import Progress
from ...remote.ssh import Endpoint, SSHRemote
from ...types import (
    CostEstimate,
    CreateResourceOptions,
    GpuSpec,
    GroupPlacement,
    ResourceState,
    ResourceStatus,
)
from ...waiting import Seen, wait_ready
from . import clusters, settings
from . import gpus as runpod_gpus
from .client import RunPodClient
from .credentials import CREDENTIALS_HINT, find_api_key
from .settings import DEFAULT_IMAGE
from .states import STATES

VOLUME_PATH = "/workspace"
MIN_VOLUME_GB = 10  # RunPod's floor for a persistent volume
SPOT_MARK = "TRAINCTL_SPOT"  # pod env var: v2 does not say whether a pod is interruptible
SSH_PROBE_TIMEOUT = 15.0
CLOUDS = ("secure", "community")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = ["DEFAULT_IMAGE", "RunPodProvider", "find_api_key"]


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
    max_price: float | None
    env: dict[str, str] = field(default_factory=dict)
    #: the GPU type of RunPod's catalog that ``gpu`` resolved to
    gpu_type: dict[str, Any] = field(default_factory=dict)
    #: a node of a group: its pod is a member of the group's cluster, not rented alone
    group: GroupPlacement | None = None

    @property
    def what(self) -> str:
        gpu_id = self.gpu_type.get("id", self.gpu.name)
        return f"{self.gpu.count}x {gpu_id} on RunPod's {self.cloud} cloud"


class RunPodProvider(StopStart, SelfRelease, GroupNetwork, TrainingProvider):
    name = "runpod"
    capabilities = frozenset(
        {
            Capability.CREATE,
            Capability.SPOT,
            Capability.REGIONS,
            Capability.CUSTOM_IMAGE,
            Capability.GPU_SELECTION,
            Capability.DOWNLOAD,
            Capability.DISK_SIZE,
        }
    )
    states = STATES
    offers = "trainctl.providers.runpod.offers:fetch"
    bundled_offers = Path(__file__).with_name("offers.csv")
    flags = (
        ProviderFlag("cloud", "Secure or community cloud.", choices=CLOUDS),
        VOLUME_FLAG,
        ProviderFlag("env", "Environment variables of the pod.", kind=dict),
    )
    spot_bids_max_price = True
    #: a cluster's pods are deleted with it (see ``clusters``)
    nodes_released_together = True
    #: a pod is a container already: ``--image`` is the pod's image (no docker inside)
    job_images = False
    machine_image_note = "a pod runs in its own image: give --image to create or run"

    @classmethod
    def unsupported_reason(
        cls, capability: Capability, request: CreateResourceOptions | None = None
    ) -> str | None:
        """A cluster's pods cannot be stopped (only released, with their cluster)."""
        if capability is Capability.STOP_START and request is not None and request.group:
            return "RunPod cannot stop a cluster's pods; terminating the group releases them"
        return super().unsupported_reason(capability, request)

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
        self.settings = settings.load(
            api_url=api_url,
            graphql_url=graphql_url,
            ready_timeout=ready_timeout,
            poll_interval=poll_interval,
        )
        self.api_url = self.settings.rest_base
        self.ready_timeout = self.settings.ready_timeout
        self.poll_interval = self.settings.poll_interval
        self.direct_ssh_grace = self.settings.direct_ssh_grace
        self._api_key = api_key
        self._public_key = public_key
        self._sleep = sleep
        self.client = RunPodClient(
            self.api_url,
            self.settings.graphql_url,
            lambda: self._key()[0],
            sleep=sleep,
            http_options=http_options,
        )

    # --- credentials ----------------------------------------------------------------

    @classmethod
    def credentials_present(cls) -> bool:
        try:
            return find_api_key(settings.load().profile) is not None
        except BadInput:
            return False

    def _key(self) -> tuple[str, str]:
        if self._api_key:
            return self._api_key, "the caller"
        found = find_api_key(self.settings.profile)
        if not found:
            raise CredentialsError("no RunPod API key found", hint=CREDENTIALS_HINT)
        return found

    def _own_pod(self, pod_id: str) -> dict[str, Any]:
        return _require_ours(self.client.get_pod(pod_id))

    # --- control plane ------------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            _key, source = self._key()
            pods = self.client.list_pods()
        except (CredentialsError, BadInput) as e:
            return CheckResult(self.name, False, str(e))
        except OperationFailed as e:
            return CheckResult(self.name, False, f"RunPod API at {self.api_url}: {e}")
        ours = [p for p in pods if _ours(p)]
        return CheckResult(
            self.name,
            True,
            f"API key from {source} works; {len(ours)} trainctl pod(s) of {len(pods)}",
        )

    def _checked(self, options: CreateResourceOptions) -> PodPlan:
        """The plan from the options alone (no request): every refusal that needs none."""
        cfg = self.settings
        gpu = options.gpu or (GpuSpec.parse(cfg.gpu) if cfg.gpu else None)
        if gpu is None:
            raise BadInput(
                "RunPod needs a GPU: give --gpu NAME[:COUNT]",
                hint="e.g. --gpu RTX4090, --gpu H100 or --gpu A100-80GB:2",
            )
        extra = options.extra
        cloud = str(extra.get("cloud") or cfg.cloud).lower()
        if cloud not in CLOUDS:
            raise BadInput(f"unknown RunPod cloud {cloud!r}: expected secure or community")
        disk = options.disk_gb if options.disk_gb is not None else cfg.disk_gb
        volume = int(extra.get("volume_gb") or 0)
        if disk < 1:
            raise BadInput(f"bad disk size {disk} GB: it must be at least 1")
        if 0 < volume < MIN_VOLUME_GB:
            raise BadInput(f"bad volume size {volume} GB: RunPod volumes are at least 10 GB")
        env = extra.get("env") or {}
        if not all(isinstance(k, str) and _ENV_NAME.match(k) for k in env):
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
            image=options.image or cfg.image,
            disk_gb=disk,
            volume_gb=volume,
            region=options.region,
            max_price=options.max_price,
            env={str(k): str(v) for k, v in env.items()},
            group=options.group,
        )

    def plan(self, options: CreateResourceOptions) -> PodPlan:
        plan = self._checked(options)
        plan.gpu_type = runpod_gpus.resolve(self.gpu_catalog(), plan.gpu, plan.cloud)
        return plan

    def quote(self, plan: PodPlan, *, spot: bool) -> Quote:
        """On-demand from the GPU catalog; spot is the bid: ``--max-price``, else
        RunPod's current spot price."""
        if spot:
            return Quote(round(self._bid(plan) * plan.gpu.count, 4), plan.what + " (spot)")
        return Quote(plan.gpu_type["price"][plan.cloud] * plan.gpu.count, plan.what)

    def launch(
        self, plan: PodPlan, *, spot: bool, progress: Progress | None = None
    ) -> ResourceStatus:
        say = progress or (lambda _line: None)
        if plan.group is not None:
            return self._join_cluster(plan.group, progress)
        existing = self.client.find_by_name(plan.pod_name)
        if existing:
            raise BadInput(
                f"a RunPod pod named {plan.pod_name} already exists ({existing['id']}, "
                f"{existing.get('status')})",
                hint="choose another --name, or terminate that pod first",
            )
        say(f"renting {plan.what}" + (" (spot)" if spot else ""))
        env = {**plan.env, "PUBLIC_KEY": "\n".join(self._authorized_keys())}
        if spot:
            pod_id = self.client.rent_spot(self._spot_spec(plan, env))
        else:
            pod_id = self.client.create_pod(self._pod_body(plan, env), plan.what)["id"]
        say(f"pod {pod_id} ({plan.pod_name}) created; waiting for it to run")
        pod = self._wait_usable(pod_id, progress, release=lambda: self.client.delete_pod(pod_id))
        status = self._status(pod)
        say(f"ready: ssh {status.ssh_user}@{status.ssh_host} -p {status.ssh_port}")
        return status

    # --- Instant Clusters (--nodes) ------------------------------------------------

    def make_group_network(
        self, group: str, options: CreateResourceOptions, size: int
    ) -> dict[str, Any]:
        """Rent the group's cluster: every pod of it, in one call (see ``clusters``).
        Everything is checked first (the GPU, the price cap per pod, the name), so
        that a cluster that cannot be made costs nothing."""
        clusters.check_size(size)
        self.validate_options(options)
        if options.spot:
            raise BadInput(
                "RunPod clusters have no spot pods",
                hint="drop --spot to rent the group on-demand",
            )
        if options.extra.get("cloud") not in (None, "secure"):
            raise BadInput(
                "a RunPod cluster cannot be asked for on the community cloud",
                hint="drop --cloud",
            )
        plan = self.plan(replace(options, name=group, group=None))
        self._within_cap(plan, options.max_price, spot=False)
        existing = self.client.find_cluster(plan.pod_name)
        if existing:
            raise BadInput(
                f"a RunPod cluster named {plan.pod_name} already exists ({existing['id']})",
                hint="choose another --name, or terminate that group first",
            )
        volume = {"size": plan.volume_gb, "path": VOLUME_PATH} if plan.volume_gb else None
        request = clusters.body(
            plan.pod_name,
            group,
            size,
            gpu_id=plan.gpu_type["id"],
            gpu_count=plan.gpu.count,
            image=plan.image,
            disk_gb=plan.disk_gb,
            env={**plan.env, "PUBLIC_KEY": "\n".join(self._authorized_keys())},
            region=plan.region,
            volume=volume,
        )
        made = self.client.create_cluster(request, f"cluster of {size}x {plan.what}")
        return {"cluster": made["id"], "name": plan.pod_name}

    def group_job_env(self, status: ResourceStatus) -> dict[str, str]:
        """A cluster's pods talk to each other over ``ens1``, its private
        interface (``eth0`` is for the internet): NCCL and gloo are told so."""
        return clusters.INTERFACE_ENV if status.details.get("cluster") else {}

    def release_group_network(self, group: str, network: dict[str, Any]) -> None:
        """Delete the group's cluster (and so every pod still in it); without its id
        (the create's answer never came), the cluster of the group's name, if any."""
        cluster_id = network.get("cluster")
        if not cluster_id:
            found = self.client.find_cluster(NAME_PREFIX + group)
            cluster_id = found["id"] if found else None
        if cluster_id:
            self.client.delete_cluster(str(cluster_id))

    def _join_cluster(self, group: GroupPlacement, progress: Progress | None) -> ResourceStatus:
        """A node's create: wait for the cluster's member of its rank to run and let
        trainctl in. When it does not, the whole cluster is released."""
        cluster_id = str(group.network["cluster"])
        say = progress or (lambda _line: None)
        say(f"waiting for node {group.rank} of RunPod cluster {cluster_id}")

        def fetch() -> dict[str, Any]:
            found = clusters.member(self.client.cluster_pods(cluster_id), group.rank)
            # not placed yet: RunPod assigns ranks while it provisions
            return found or {"id": f"{cluster_id}/{group.rank}", "status": "PROVISIONING"}

        pod = self._wait_usable(
            cluster_id,
            progress,
            release=lambda: self.client.delete_cluster(cluster_id),
            fetch=fetch,
            what=f"node {group.rank} of RunPod cluster {cluster_id}",
        )
        status = self._status(pod)
        say(f"ready: ssh {status.ssh_user}@{status.ssh_host} -p {status.ssh_port}")
        return status

    def gpu_catalog(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """RunPod's GPU types with their prices, cached under the trainctl home for a
        few hours (``refresh`` reads them again and replaces the cache)."""
        if refresh:
            found = self.client.gpu_types()
            runpod_gpus.store_catalog(found, self.api_url)
            return found
        return runpod_gpus.load_catalog(self.client.gpu_types, self.api_url)

    def _authorized_keys(self) -> list[str]:
        """trainctl's own public key, then the account's registered ones, so the user
        can also ssh in with their usual key."""
        keys = [self._public_key or sshkeys.public_key(), *self.client.account_ssh_keys()]
        return list(dict.fromkeys(k.strip() for k in keys if k.strip()))

    @staticmethod
    def _pod_body(plan: PodPlan, env: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": plan.pod_name,
            "image": plan.image,
            "gpu": {"id": plan.gpu_type["id"], "count": plan.gpu.count},
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
        return body

    def _spot_spec(self, plan: PodPlan, env: dict[str, str]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": plan.pod_name,
            "imageName": plan.image,
            "gpuTypeId": plan.gpu_type["id"],
            "gpuCount": plan.gpu.count,
            "cloudType": plan.cloud.upper(),
            "containerDiskInGb": plan.disk_gb,
            "ports": "22/tcp",
            "env": [{"key": k, "value": v} for k, v in {**env, SPOT_MARK: "1"}.items()],
            "startSsh": True,
            "supportPublicIp": True,
            "bidPerGpu": self._bid(plan),
        }
        if plan.region:
            spec["dataCenterId"] = plan.region
        if plan.volume_gb:
            spec["volumeInGb"] = plan.volume_gb
            spec["volumeMountPath"] = VOLUME_PATH
        return spec

    def _spot_quote(self, gpu_id: str, count: int, cloud: str) -> float:
        """RunPod's current lowest spot bid per GPU for this cloud."""
        prices = self.client.spot_prices(gpu_id, count)
        if prices is None:
            raise NoCapacity(f"RunPod offers no spot {gpu_id}")
        price = prices.bid(cloud)
        if price is None:
            raise NoCapacity(f"RunPod offers no spot {gpu_id} on its {cloud} cloud")
        return price

    def _bid(self, plan: PodPlan) -> float:
        if plan.max_price is not None:
            return round(plan.max_price / plan.gpu.count, 4)
        return self._spot_quote(plan.gpu_type["id"], plan.gpu.count, plan.cloud)

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._status(self._own_pod(resource_id))

    def list_resources(self) -> list[ResourceStatus]:
        return [self._status(p) for p in self.client.list_pods() if _ours(p)]

    def terminate(self, resource_id: str) -> ResourceStatus:
        try:
            pod = self.client.get_pod(resource_id)
        except NotFound:
            return ResourceStatus(
                resource_id, self.name, ResourceState.TERMINATED, reason="already gone"
            )
        _require_ours(pod)
        cluster = clusters.membership(pod)
        if cluster is not None:
            self.client.delete_cluster(str(cluster["id"]))
        else:
            self.client.delete_pod(resource_id)
        if _look(pod).ready:
            remote = _remote(pod)
            # tidying up: the pod is gone whether or not this works
            with contextlib.suppress(OperationFailed, OSError, subprocess.SubprocessError):
                remote.close()
                remote.forget_host_key()
        status = self._status(pod)
        status.state = ResourceState.TERMINATED
        if cluster is not None:
            status.reason = f"released with its RunPod cluster {cluster['id']}"
        status.raw_state = "TERMINATED"
        status.cost_per_hour = 0.0
        status.ssh_host = status.ssh_port = status.ssh_user = status.public_ip = None
        return status

    def guard_release(self, status: ResourceStatus, action: str, *, until: float | None) -> Release:
        """The pod releases itself with its own key: RunPod gives every pod a
        pod-scoped API key (``RUNPOD_API_KEY`` in the pod's environment, which its
        images also write to /etc/rp_environment), so the user's key never goes on
        the pod. ``stop`` keeps the pod's volume; ``terminate`` deletes the pod. A
        cluster's pod can only go with its cluster: it deletes the cluster (which a
        pod's own key is taken to be allowed to do; see ``clusters``)."""
        base = f"{self.api_url}/v2/pods/{quote(status.id, safe='')}"
        cluster = status.details.get("cluster")
        request: dict[str, Any] = {
            "kind": "http",
            "gone": [404],
            "secret_from": {
                "files": list(self.settings.pod_env_files),
                "name": "RUNPOD_API_KEY",
                "match": {"RUNPOD_POD_ID": status.id},
            },
        }
        if cluster:
            url = f"{self.api_url}/v2/clusters/{quote(str(cluster), safe='')}"
            request.update(method="DELETE", url=url, body=None)
            return Release("terminate", request)
        if action == "stop":
            request.update(method="POST", url=base + "/action", body={"action": "stop"})
        else:
            request.update(method="DELETE", url=base, body=None)
        return Release(action, request)

    def stop(self, resource_id: str) -> ResourceStatus:
        pod = self._alone(self._own_pod(resource_id), "stopped")
        if pod.get("status") != "EXITED":
            pod = self.client.pod_action(resource_id, "stop", ("EXITED",))
        return self._status(pod)

    def start(self, resource_id: str, *, progress: Progress | None = None) -> ResourceStatus:
        pod = self._alone(self._own_pod(resource_id), "started")
        if pod.get("status") == "EXITED" and (pod.get("env") or {}).get(SPOT_MARK) == "1":
            self._resume_spot(pod)
        elif pod.get("status") in ("EXITED", "ERROR"):
            self.client.pod_action(resource_id, "start", ("PROVISIONING", "STARTING", "RUNNING"))
        return self._status(self._wait_usable(resource_id, progress))

    @staticmethod
    def _alone(pod: dict[str, Any], done: str) -> dict[str, Any]:
        """``pod``, unless it is a cluster's (whose pods RunPod keeps together)."""
        if clusters.membership(pod) is not None:
            name = clusters.member_name(pod) or pod["id"]
            raise BadInput(
                f"{name} is a pod of a RunPod cluster, which cannot be {done} on its own",
                hint="`trainctl terminate GROUP` releases the whole group",
            )
        return pod

    def _resume_spot(self, pod: dict[str, Any]) -> None:
        """A stopped spot pod runs again only with a new bid (GraphQL podBidResume),
        at the current spot price."""
        gpu = pod.get("gpu") or {}
        count = int(gpu.get("count", 1))
        bid = self._spot_quote(str(gpu.get("id")), count, str(pod.get("cloud", "SECURE")).lower())
        self.client.bid_resume(pod["id"], bid, count)

    def _wait_usable(
        self,
        pod_id: str,
        progress: Progress | None,
        *,
        release: Callable[[], object] | None = None,
        fetch: Callable[[], dict[str, Any]] | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        """Wait until the pod runs and its sshd lets trainctl in. ``release`` (on a new
        pod) terminates it when that does not happen; without it the pod is left be.
        ``fetch`` reads the pod (default: by its id); ``what`` names it."""
        probed: set[str] = set()
        undirected_since: list[float] = []  # when it was first seen RUNNING without one
        read = fetch or (lambda: self.client.get_pod(pod_id))

        def poll() -> Probe:
            pod = read()
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
            what or f"RunPod pod {pod_id}",
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
        """The live catalog's price (or, for spot, your bid or the current spot price);
        without an API key, the bundled price catalog's."""
        if self._api_key or find_api_key(self.settings.profile):
            return super().estimate_cost(options, hours)
        self.validate_options(options)
        self._checked(options)
        return catalog.estimate(self.name, options, hours)

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
        cluster = clusters.membership(pod) or {}
        short = clusters.member_name(pod) or str(pod.get("name", "")).removeprefix(NAME_PREFIX)
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
            state=self.state_of(raw),
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
            private_ip=cluster.get("ip"),
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
                **({"cluster": cluster["id"]} if cluster else {}),
            },
        )


def _ours(pod: dict[str, Any]) -> bool:
    """A pod trainctl made: named with its prefix, or a member of a group's cluster."""
    return str(pod.get("name", "")).startswith(NAME_PREFIX) or bool(clusters.group_of(pod))


def _require_ours(pod: dict[str, Any]) -> dict[str, Any]:
    if not _ours(pod):
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


def _remote(pod: dict[str, Any]) -> SSHRemote:
    d = pod["ssh"]["direct"]
    return SSHRemote(Endpoint(str(d["host"]), int(d["port"]), str(d["username"])))

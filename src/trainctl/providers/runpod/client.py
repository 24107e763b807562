"""RunPod's API as trainctl uses it: the only module that speaks to RunPod.

REST v2 (``/v2/pods``, ``/v2/clusters``, ``/v2/catalog/gpus``,
``/v2/account/ssh-keys``) for pods, Instant Clusters and the GPU list; GraphQL for
what v2 lacks (spot rentals ``podRentInterruptable``, spot resumes ``podBidResume``
and spot prices ``gpuTypes``). Every answer is checked
against the shape RunPod's document gives for the fields trainctl reads: a list, a
pod or a GPU catalog of the wrong shape is an error, never "nothing exists". Refusals
become trainctl's errors here (``create_error``, ``graphql_error``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from ...errors import (
    BadInput,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    ResourceLeft,
    TrainctlError,
)
from ...httpapi import ApiError, JsonApi
from . import gpus
from .credentials import CREDENTIALS_HINT

SPOT_GONE = "RunPod no longer offers spot pods through its API"
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

Recover = Callable[[], Any]


class RunPodClient:
    """One account's RunPod API. ``key`` is called for the API key when the first
    request is made (so that a client exists, and fails clearly, without one)."""

    def __init__(
        self,
        api_url: str,
        graphql_url: str,
        key: Callable[[], str],
        *,
        sleep: Callable[[float], None],
        http_options: dict[str, Any] | None = None,
    ) -> None:
        self.api_url = api_url
        self.graphql_url = graphql_url
        self._key = key
        self._sleep = sleep
        self._http_options = http_options or {}
        self._rest: JsonApi | None = None
        self._graphql: tuple[JsonApi, str] | None = None

    def _client(self, base_url: str) -> JsonApi:
        return JsonApi(
            base_url,
            self._key(),
            service="RunPod",
            credentials_hint=CREDENTIALS_HINT,
            sleep=self._sleep,
            **self._http_options,
        )

    @property
    def rest(self) -> JsonApi:
        if self._rest is None:
            self._rest = self._client(self.api_url)
        return self._rest

    def graphql(
        self,
        query: str,
        variables: dict[str, Any],
        *,
        mutation: bool,
        recover: Recover | None = None,
    ) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; its ``errors`` as trainctl's errors. A
        mutation whose answer cannot be read gives ``{}``: it may have acted, and the
        caller settles the missing result."""
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
            if mutation:
                return {}
            raise OperationFailed(f"RunPod GraphQL answered {shape(body)}, not a response")
        errors = body.get("errors")
        if errors:
            raise graphql_error(errors if isinstance(errors, list) else [errors])
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    # --- pods ---------------------------------------------------------------------

    @staticmethod
    def _pod_path(pod_id: str) -> str:
        return "/v2/pods/" + quote(pod_id, safe="")

    def get_pod(self, pod_id: str) -> dict[str, Any]:
        """``NotFound`` when RunPod has no such pod."""
        try:
            body = self.rest.get(self._pod_path(pod_id))
        except ApiError as e:
            if e.status == 404:
                raise NotFound(f"no RunPod pod {pod_id}") from None
            raise
        return checked_pod(body, f"GET /v2/pods/{pod_id}")

    def list_pods(self) -> list[dict[str, Any]]:
        """Every pod of the account. An answer that is not a list of pods is an
        error: read as "none", it would mark every live pod terminated. ``[]`` is
        RunPod saying there are none."""
        return self._pods("/v2/pods", {"includeClusterPods": "true"})

    def _pods(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        body = self.rest.get(path, params=params)
        pods = body.get("pods") if isinstance(body, dict) else None
        if not isinstance(pods, list):
            raise OperationFailed(
                f"RunPod GET {path} answered {shape(body)}, not a list of pods; "
                "nothing was concluded from it"
            )
        return [checked_pod(p, f"GET {path}") for p in pods]

    def find_by_name(self, pod_name: str) -> dict[str, Any] | None:
        for pod in self.list_pods():
            if pod.get("cluster"):
                continue  # a cluster's pods are named by RunPod, not after a create
            if pod.get("name") == pod_name and pod.get("status") != "TERMINATED":
                return pod
        return None

    def delete_pod(self, pod_id: str) -> None:
        """Idempotent: a pod already gone is not an error."""
        try:
            self.rest.delete(self._pod_path(pod_id))
        except ApiError as e:
            if e.status != 404:
                raise

    def pod_action(self, pod_id: str, action: str, done: tuple[str, ...]) -> dict[str, Any]:
        """Apply a pod action; a 409 is fine when the pod is already in a ``done`` state
        (a repeated request, or a retry of one that took effect)."""
        try:
            answer = self.rest.post(
                self._pod_path(pod_id) + "/action", {"action": action}, idempotent=True
            )
            return checked_pod(answer, f"POST /v2/pods/{pod_id}/action")
        except ApiError as e:
            if e.status != 409:
                raise
            pod = self.get_pod(pod_id)
            if pod.get("status") in done:
                return pod
            raise BadInput(f"cannot {action} pod {pod_id} now: {e.detail}") from None

    def create_pod(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        """``POST /v2/pods``; a lost or unreadable answer is settled by the pod's name."""
        return self._create("/v2/pods", body, what, "pod", self.find_by_name)

    def _create(
        self,
        path: str,
        body: dict[str, Any],
        what: str,
        kind: str,
        find: Callable[[str], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """POST a create whose answer, lost or unreadable, is settled by the name of
        what it makes (``find``)."""
        name = str(body["name"])
        try:
            answer = self.rest.post(
                path, body, recover=lambda: find(name), not_credentials=frozenset({403})
            )
        except ApiError as e:
            raise create_error(e, what, kind) from None
        if isinstance(answer, dict) and isinstance(answer.get("id"), str) and answer["id"]:
            return answer
        return self.settle_unreadable(name, f"RunPod answered {shape(answer)}", kind, find)

    def rent_spot(self, spec: dict[str, Any]) -> str:
        """``podRentInterruptable``: the new spot pod's id."""
        name = str(spec["name"])

        def recover() -> dict[str, Any] | None:
            found = self.find_by_name(name)
            return {"data": {"podRentInterruptable": found}} if found else None

        data = self.graphql(RENT_SPOT, {"input": spec}, mutation=True, recover=recover)
        pod = data.get("podRentInterruptable")
        if isinstance(pod, dict) and isinstance(pod.get("id"), str) and pod["id"]:
            return pod["id"]
        why = f"RunPod answered podRentInterruptable with {shape(pod)}"
        return str(self.settle_unreadable(name, why)["id"])

    def bid_resume(self, pod_id: str, bid_per_gpu: float, count: int) -> None:
        """``podBidResume``: a stopped spot pod runs again with a new bid."""

        def recover() -> dict[str, Any] | None:
            again = self.get_pod(pod_id)
            return {"data": {"podBidResume": again}} if again.get("status") != "EXITED" else None

        spec = {"podId": pod_id, "bidPerGpu": bid_per_gpu, "gpuCount": count}
        self.graphql(BID_RESUME, {"input": spec}, mutation=True, recover=recover)

    def settle_unreadable(
        self,
        name: str,
        why: str,
        kind: str = "pod",
        find: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """A create that may have acted but whose answer names nothing: what it made
        (a pod, or a ``kind`` found by ``find``), found by name, or ``ResourceLeft`` so
        that its record is kept."""
        try:
            found = (find or self.find_by_name)(name)
        except TrainctlError as e:
            raise ResourceLeft(
                f"{why} to the create of {name}, and looking it up failed too "
                f"({e.message}); it may exist and bill"
            ) from None
        if found is not None:
            return found
        raise ResourceLeft(
            f"{why} to the create of {name}, and no {kind} of that name is listed yet; "
            "it may still appear and bill"
        )

    # --- Instant Clusters ------------------------------------------------------------

    @staticmethod
    def _cluster_path(cluster_id: str) -> str:
        return "/v2/clusters/" + quote(cluster_id, safe="")

    def create_cluster(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        """``POST /v2/clusters``: every pod of the cluster in one call; a lost or
        unreadable answer is settled by the cluster's name."""
        return self._create("/v2/clusters", body, what, "cluster", self.find_cluster)

    def find_cluster(self, name: str) -> dict[str, Any] | None:
        body = self.rest.get("/v2/clusters")
        clusters = body.get("clusters") if isinstance(body, dict) else None
        if not isinstance(clusters, list):
            raise OperationFailed(
                f"RunPod GET /v2/clusters answered {shape(body)}, not a list of clusters"
            )
        return next((c for c in clusters if isinstance(c, dict) and c.get("name") == name), None)

    def cluster_pods(self, cluster_id: str) -> list[dict[str, Any]]:
        """The cluster's member pods (``NotFound`` once the cluster is gone)."""
        try:
            return self._pods(self._cluster_path(cluster_id) + "/pods")
        except ApiError as e:
            if e.status == 404:
                raise NotFound(f"no RunPod cluster {cluster_id}") from None
            raise

    def delete_cluster(self, cluster_id: str) -> None:
        """Delete a cluster and every pod in it; idempotent (gone is no error)."""
        try:
            self.rest.delete(self._cluster_path(cluster_id))
        except ApiError as e:
            if e.status != 404:
                raise

    # --- prices and keys ----------------------------------------------------------

    def gpu_types(self) -> list[dict[str, Any]]:
        """``GET /v2/catalog/gpus``, checked (``gpus.checked``)."""
        return gpus.checked(self.rest.get("/v2/catalog/gpus"))

    def spot_prices(self, gpu_id: str, count: int) -> SpotPrice | None:
        """RunPod's spot prices per GPU for ``count`` GPUs of ``gpu_id``, or None when
        it lists no spot offer of that type."""
        data = self.graphql(SPOT_PRICES, {"id": gpu_id, "gpuCount": count}, mutation=False)
        types = data.get("gpuTypes")
        if not isinstance(types, list) or not types:
            return None
        return SpotPrice.read(types[0])

    def account_ssh_keys(self) -> list[str]:
        """The public keys registered with the account ([] when the key may not read
        them: a key scoped to pods only)."""
        try:
            body = self.rest.get("/v2/account/ssh-keys")
        except (ApiError, CredentialsError):
            return []
        keys = body.get("keys") if isinstance(body, dict) else None
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


class SpotPrice:
    """One GraphQL ``gpuTypes`` entry's spot prices per GPU: each cloud's current
    price, and the lowest bid RunPod takes (``lowestPrice.minimumBidPrice``)."""

    def __init__(self, clouds: dict[str, float], minimum_bid: float | None) -> None:
        self.clouds = clouds
        self.minimum_bid = minimum_bid

    @classmethod
    def read(cls, entry: Any) -> SpotPrice | None:
        if not isinstance(entry, dict):
            return None
        clouds = {}
        for cloud in ("secure", "community"):
            value = _price(entry.get(f"{cloud}SpotPrice"))
            if value is not None:
                clouds[cloud] = value
        lowest = entry.get("lowestPrice")
        bid = _price(lowest.get("minimumBidPrice")) if isinstance(lowest, dict) else None
        return cls(clouds, bid)

    def bid(self, cloud: str) -> float | None:
        """What a spot pod on ``cloud`` costs per GPU now: the cloud's spot price,
        else the minimum bid."""
        return self.clouds.get(cloud, self.minimum_bid)


def _price(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


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
    "cluster": (dict,),
}


def checked_pod(pod: Any, what: str) -> dict[str, Any]:
    """``pod`` if it is a pod as RunPod's document describes the fields trainctl
    reads; ``OperationFailed`` (one line) otherwise."""
    problems = []
    if not isinstance(pod, dict) or not isinstance(pod.get("id"), str) or not pod["id"]:
        problems.append(f"a pod without an id ({shape(pod)})")
    else:
        for key, types in _POD_FIELDS.items():
            value = pod.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                problems.append(f"{key} is {shape(value)}")
        ssh = pod.get("ssh")
        direct = ssh.get("direct") if isinstance(ssh, dict) else None
        if direct is not None and not (
            isinstance(direct, dict)
            and isinstance(direct.get("host"), str)
            and isinstance(direct.get("port"), int)
            and isinstance(direct.get("username"), str)
        ):
            problems.append(f"ssh.direct is {shape(direct)}")
        gpu = pod.get("gpu")
        if isinstance(gpu, dict) and not (
            isinstance(gpu.get("id", ""), str) and isinstance(gpu.get("count", 1), int)
        ):
            problems.append(f"gpu is {shape(gpu)}")
        created = pod.get("createdAt")
        if isinstance(created, str):
            try:
                datetime.fromisoformat(created)
            except ValueError:
                problems.append(f"createdAt is {created[:40]!r}")
    if problems:
        raise OperationFailed(f"RunPod {what} answered an unreadable pod: {'; '.join(problems)}")
    return pod


def shape(value: Any) -> str:
    """A short description of an unexpected value, for one-line errors."""
    if value is None:
        return "nothing (null or empty)"
    if isinstance(value, dict):
        keys = ", ".join(repr(k)[:24] for k in list(value)[:4])
        return "an object" + (f" with {keys}" if value else " (empty)")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {str(value)[:40]!r}"


def _is_capacity(text: str) -> bool:
    lower = text.lower()
    return any(w in lower for w in _CAPACITY_WORDS)


def create_error(e: ApiError, what: str, kind: str = "pod") -> Exception:
    """What a refused create (of a pod or a ``kind="cluster"``) means to the user (see
    createPod and createCluster in RunPod's document)."""
    if e.status == 400 and _is_capacity(e.detail):
        return NoCapacity(f"RunPod has no {what} available now: {e.detail}")
    if e.status in (400, 404):
        return BadInput(f"RunPod refused the {kind}: {e.detail}")
    if e.status == 402:
        return OperationFailed(
            f"RunPod refused the {kind}: {e.detail or 'insufficient balance'}",
            hint="add credit to the RunPod account",
        )
    if e.status == 403:
        # createPod's 403: "your account cannot access the requested pool" (skip it)
        return NoCapacity(
            f"RunPod's {what} is not available to this account (403: it cannot use that "
            f"GPU pool{': ' + e.detail if e.detail else ''})",
            hint="pick another --gpu or --cloud, or use --provider cheapest",
        )
    return e


def graphql_error(errors: list[Any]) -> Exception:
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

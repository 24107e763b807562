"""RunPod Instant Clusters: the pods of a multi-node group (``--nodes N``).

One ``POST /v2/clusters`` makes every pod of a group at once (the provider's
``make_group_network``): RunPod places them in one data center on a private overlay
network, each pod with its ``cluster.rank`` (NODE_RANK) and ``cluster.ip`` (its address
on that network). Each node's create then waits for the member of its rank instead of
renting a pod of its own.

RunPod names a cluster's pods itself, so a member is known as trainctl's by the
``TRAINCTL_GROUP`` variable every member gets in its environment (the cluster is named
``trainctl-<group>``), and is shown as ``<group>-<rank>``, the name trainctl gives a
group's nodes everywhere.

A member cannot be stopped, started or deleted on its own (the pod endpoints answer 409
for it): releasing any node, from here or by its guard, deletes the whole cluster.
Clusters have no spot pods, no choice of cloud and no private registries.
"""

from __future__ import annotations

from typing import Any

from ...errors import BadInput
from ...types import node_name

#: the pod environment variable naming the trainctl group a cluster member belongs to
GROUP_MARK = "TRAINCTL_GROUP"
#: RunPod's only cluster type without a managed Slurm or Ray topology on top
CLUSTER_TYPE = "TRAINING"
#: RunPod's Instant Clusters docs: the nodes reach each other over ens1 (where
#: PRIMARY_ADDR is), and eth0, the management interface, is not for that traffic
INTERFACE_ENV = {"NCCL_SOCKET_IFNAME": "ens1", "GLOO_SOCKET_IFNAME": "ens1"}
MIN_PODS = 2  # ClusterCompute.podCount in RunPod's document
MAX_PODS = 250


def membership(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's ``cluster`` object, or None for a pod of its own."""
    cluster = pod.get("cluster")
    return cluster if isinstance(cluster, dict) and cluster.get("id") else None


def group_of(pod: dict[str, Any]) -> str | None:
    """The trainctl group a cluster member was made for (None: not one of ours)."""
    if membership(pod) is None:
        return None
    group = (pod.get("env") or {}).get(GROUP_MARK)
    return str(group) if group else None


def member_name(pod: dict[str, Any]) -> str | None:
    """``<group>-<rank>`` for one of trainctl's cluster members whose rank is known."""
    group, cluster = group_of(pod), membership(pod)
    if group is None or cluster is None or not isinstance(cluster.get("rank"), int):
        return None
    return node_name(group, cluster["rank"])


def member(pods: list[dict[str, Any]], rank: int) -> dict[str, Any] | None:
    """The member of ``rank`` among a cluster's pods (None until RunPod assigns it)."""
    for pod in pods:
        cluster = membership(pod)
        if cluster is not None and cluster.get("rank") == rank:
            return pod
    return None


def check_size(size: int) -> None:
    if not MIN_PODS <= size <= MAX_PODS:
        raise BadInput(f"a RunPod cluster has from {MIN_PODS} to {MAX_PODS} pods, not {size}")


def body(
    cluster_name: str,
    group: str,
    size: int,
    *,
    gpu_id: str,
    gpu_count: int,
    image: str,
    disk_gb: int,
    env: dict[str, str],
    region: str | None,
    volume: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``CreateClusterRequest`` of a group: ``size`` identical pods publishing
    ``22/tcp``, with trainctl's public key in ``PUBLIC_KEY`` (in ``env``)."""
    request: dict[str, Any] = {
        "name": cluster_name,
        "type": CLUSTER_TYPE,
        "compute": {"gpuTypeId": gpu_id, "gpuCountPerPod": gpu_count, "podCount": size},
        "image": image,
        "disk": disk_gb,
        "ports": ["22/tcp"],
        "env": {**env, GROUP_MARK: group},
        "startSsh": True,
    }
    if region:
        request["dataCenterIds"] = [region]
    if volume:
        request["mounts"] = {"persistent": volume}
    return request

"""SkyPilot's job variables, for jobs read from a SkyPilot task file.

A task written for `sky launch` reads its place in the cluster from these (SkyPilot's
``sky/skylet/constants.py`` and its "Environment variables" page), with the same
meaning here:

- ``SKYPILOT_NODE_RANK``: the node's rank, 0 to ``SKYPILOT_NUM_NODES - 1``;
- ``SKYPILOT_NODE_IPS``: every node's address, one per line, node 0 first (the address
  the nodes reach each other at, as MASTER_ADDR; a lone machine with no address known,
  the local one, is ``127.0.0.1``);
- ``SKYPILOT_NUM_NODES``;
- ``SKYPILOT_NUM_GPUS_PER_NODE``: the node's GPU count, 0 without GPUs (SkyPilot's is
  the count asked for, which is what the machine has);
- ``SKYPILOT_TASK_ID``: trainctl's job id (the same on every node and every recovery
  attempt, as a managed job's id is), not SkyPilot's ``sky-<timestamp>_<cluster>_<n>``;
- ``SKYPILOT_SETUP_NODE_RANK``, ``SKYPILOT_SETUP_NODE_IPS``: the same as the two above
  (the setup runs in the job, on the same nodes);
- ``SKYPILOT_CLUSTER_INFO``: JSON with ``cluster_name`` (the group's name, or the
  machine's), ``cloud`` (trainctl's provider name, ``aws`` or ``runpod`` where SkyPilot
  writes ``AWS`` or ``RunPod``: compare it without case, as SkyPilot's own tests do) and
  ``region`` (null where the provider names none). ``zone`` is always null: trainctl
  does not record a machine's zone.

Left out: ``SKYPILOT_SERVE_REPLICA_ID`` (no services) and ``SKYPILOT_USER`` (no API
server).
"""

from __future__ import annotations

import json

from .groups import node_addresses
from .types import ResourceStatus


def variables(statuses: list[ResourceStatus], task_id: str) -> list[dict[str, str]]:
    """Each node's SKYPILOT_* variables, node 0 first."""
    if len(statuses) == 1 and not (
        statuses[0].private_ip or statuses[0].ssh_host or statuses[0].public_ip
    ):
        addresses = ["127.0.0.1"]
    else:
        addresses = node_addresses(statuses)
    first = statuses[0]
    # a group's machines are named <group>-<rank> (groups.node_name)
    cluster = first.name or first.id
    if len(statuses) > 1:
        cluster = cluster.rsplit("-", 1)[0]
    info = {
        "cluster_name": cluster,
        "cloud": first.provider,
        "region": first.region,
        "zone": None,
    }
    ips = "\n".join(addresses)
    found = []
    for rank, status in enumerate(statuses):
        found.append(
            {
                "SKYPILOT_NODE_RANK": str(rank),
                "SKYPILOT_NODE_IPS": ips,
                "SKYPILOT_NUM_NODES": str(len(statuses)),
                "SKYPILOT_NUM_GPUS_PER_NODE": str(status.gpu_count),
                "SKYPILOT_TASK_ID": task_id,
                "SKYPILOT_SETUP_NODE_RANK": str(rank),
                "SKYPILOT_SETUP_NODE_IPS": ips,
                "SKYPILOT_CLUSTER_INFO": json.dumps(info),
            }
        )
    return found

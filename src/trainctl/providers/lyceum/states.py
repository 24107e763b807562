"""Lyceum's VM states as trainctl's.

Lyceum reports ``running`` while a VM may still be being set up and ``ready`` once
it is fully operational (see its API description); both count as running: the VM
bills from ``running`` on, lyceum-cli's own wait accepts it, and some VMs never say
``ready``. Whether such a VM can be used yet is settled by its address and an SSH
login (see the provider), not by its state.
"""

from __future__ import annotations

from ...types import ResourceState as S

STATES: dict[str, S] = {
    "pending": S.STARTING,
    "provisioning": S.STARTING,
    "running": S.RUNNING,
    "ready": S.RUNNING,
    "failed": S.ERROR,
    "error": S.ERROR,
    "terminated": S.TERMINATED,
    "stopped": S.STOPPED,
}

"""Every provider's raw machine states mapped onto ``ResourceState``.

Lookups are case-insensitive; a string no table knows maps to ``unknown``.
Lyceum reports ``running`` while a VM may still be being set up and ``ready`` once
it is fully operational (see its API description); both count as running: the VM
bills from ``running`` on, lyceum-cli's own wait accepts it, and some VMs never say
``ready``. Whether such a VM can be used yet is settled by its address and an SSH
login (see the Lyceum provider), not by its state.
"""

from __future__ import annotations

from .types import ResourceState as S

STATE_TABLES: dict[str, dict[str, S]] = {
    "aws": {
        "pending": S.STARTING,
        "running": S.RUNNING,
        "stopping": S.STOPPED,
        "stopped": S.STOPPED,
        "shutting-down": S.TERMINATING,
        "terminated": S.TERMINATED,
    },
    "runpod": {
        "provisioning": S.STARTING,
        "starting": S.STARTING,
        "created": S.STARTING,
        "running": S.RUNNING,
        "exited": S.STOPPED,
        "error": S.ERROR,
        "terminated": S.TERMINATED,
    },
    "lyceum": {
        "pending": S.STARTING,
        "provisioning": S.STARTING,
        "running": S.RUNNING,
        "ready": S.RUNNING,
        "failed": S.ERROR,
        "error": S.ERROR,
        "terminated": S.TERMINATED,
        "stopped": S.STOPPED,
    },
    "local": {
        "running": S.RUNNING,
        "terminated": S.TERMINATED,
    },
    "ssh": {
        "reachable": S.RUNNING,
        "unreachable": S.UNKNOWN,
        "forgotten": S.TERMINATED,
    },
}


def normalize_state(provider: str, raw: str | None) -> S:
    """Map ``raw`` as reported by ``provider`` to a ``ResourceState``; never raises."""
    if not isinstance(raw, str):
        return S.UNKNOWN
    table = STATE_TABLES.get(str(provider).lower(), {})
    return table.get(raw.strip().lower(), S.UNKNOWN)

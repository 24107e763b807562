"""Every provider's raw machine states mapped onto ``ResourceState``.

Lookups are case-insensitive; a string no table knows maps to ``unknown``.
Lyceum reports ``running`` while a VM is still being set up and ``ready`` once it
can be used (see its API description), so ``running`` counts as starting there.
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
        "running": S.STARTING,
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

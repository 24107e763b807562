"""RunPod's pod states (``desiredStatus`` in REST v2) as trainctl's."""

from __future__ import annotations

from ...types import ResourceState as S

STATES: dict[str, S] = {
    "provisioning": S.STARTING,
    "starting": S.STARTING,
    "created": S.STARTING,
    "running": S.RUNNING,
    "exited": S.STOPPED,
    "error": S.ERROR,
    "terminated": S.TERMINATED,
}

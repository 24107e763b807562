"""EC2's instance states as trainctl's."""

from __future__ import annotations

from ...types import ResourceState as S

STATES: dict[str, S] = {
    "pending": S.STARTING,
    "running": S.RUNNING,
    "stopping": S.STOPPED,
    "stopped": S.STOPPED,
    "shutting-down": S.TERMINATING,
    "terminated": S.TERMINATED,
}

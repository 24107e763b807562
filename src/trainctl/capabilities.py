"""What a provider can do, declared up front so that the CLI refuses early."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .errors import CapabilityError

if TYPE_CHECKING:
    from .provider import TrainingProvider
    from .types import CreateResourceOptions


class Capability(enum.Enum):
    CREATE = "create"  # rents or registers machines
    SPOT = "spot"  # interruptible / spot capacity
    STOP_START = "stop-start"  # a machine can be stopped and started again
    REGIONS = "regions"  # the user can choose a region / data centre
    CUSTOM_IMAGE = "custom-image"
    GPU_SELECTION = "gpu-selection"  # `--gpu` picks the hardware
    INSTANCE_TYPE = "instance-type"  # `--instance-type` names the machine kind
    DOWNLOAD = "download"
    DISK_SIZE = "disk-size"
    TAGS = "tags"  # `--tag NAME=VALUE` is stored on the machine itself
    SELF_RELEASE = "self-release"  # the machine's guard can stop or terminate it
    MULTI_NODE = "multi-node"  # machines of one group reach each other privately

    def describe(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Capability.CREATE: "create machines",
    Capability.SPOT: "rent spot (interruptible) machines",
    Capability.STOP_START: "stop and start machines",
    Capability.REGIONS: "choose a region",
    Capability.CUSTOM_IMAGE: "choose the machine's image (a container image for the jobs "
    "goes to `train --image` or `run --image`)",
    Capability.GPU_SELECTION: "choose GPUs with --gpu",
    Capability.INSTANCE_TYPE: "choose an instance type",
    Capability.DOWNLOAD: "download files from a machine",
    Capability.DISK_SIZE: "set the disk size",
    Capability.TAGS: "tag machines (--tag)",
    Capability.SELF_RELEASE: "let a machine release itself (its guard ends jobs only)",
    Capability.MULTI_NODE: "rent several machines that reach each other for one job (--nodes)",
}


def require(
    provider: TrainingProvider | type[TrainingProvider],
    capability: Capability,
    request: CreateResourceOptions | None = None,
) -> None:
    """Raise a clear error, before any side effect, when the provider lacks
    ``capability`` (for ``request``, when what it can do depends on what is asked)."""
    why = provider.unsupported_reason(capability, request)
    if why:
        raise CapabilityError(why)

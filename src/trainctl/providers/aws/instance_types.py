"""GPU spec -> EC2 instance type, and on-demand prices: the one place that knows them.

For each GPU model and count, the cheapest instance type from the shared reference
list ``gpu-instances-us-east-1.csv`` (instances.vantage.sh data published
2026-01-21, us-east-1 Linux on-demand). Only NVIDIA training GPUs are listed; any
other type can still be named with ``instance_type``. The bundled price catalog is
meant to replace this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import BadInput
from ...types import GpuSpec

PRICE_SOURCE = "AWS us-east-1 on-demand list price, 2026-01-21 (instances.vantage.sh)"


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpu_count: int
    hourly: float


_TABLE = [
    InstanceType("g4dn.xlarge", "T4", 1, 0.526),
    InstanceType("g4dn.12xlarge", "T4", 4, 3.912),
    InstanceType("g4dn.metal", "T4", 8, 7.824),
    InstanceType("g5.xlarge", "A10G", 1, 1.006),
    InstanceType("g5.12xlarge", "A10G", 4, 5.672),
    InstanceType("g5.48xlarge", "A10G", 8, 16.288),
    InstanceType("g6.xlarge", "L4", 1, 0.8048),
    InstanceType("g6.12xlarge", "L4", 4, 4.6016),
    InstanceType("g6.48xlarge", "L4", 8, 13.3504),
    InstanceType("g6e.xlarge", "L40S", 1, 1.861),
    InstanceType("g6e.12xlarge", "L40S", 4, 10.49264),
    InstanceType("g6e.48xlarge", "L40S", 8, 30.13118),
    InstanceType("p3.2xlarge", "V100", 1, 3.06),
    InstanceType("p3.8xlarge", "V100", 4, 12.24),
    InstanceType("p3.16xlarge", "V100", 8, 24.48),
    InstanceType("p3dn.24xlarge", "V100-32GB", 8, 31.212),
    InstanceType("p4d.24xlarge", "A100-40GB", 8, 21.957642),
    InstanceType("p4de.24xlarge", "A100-80GB", 8, 27.44705),
    InstanceType("p5.4xlarge", "H100", 1, 6.88),
    InstanceType("p5.48xlarge", "H100", 8, 55.04),
    InstanceType("p5en.48xlarge", "H200", 8, 63.296),
    InstanceType("p6-b200.48xlarge", "B200", 8, 113.9328),
]
_BY_NAME = {t.name: t for t in _TABLE}


def lookup(instance_type: str) -> InstanceType | None:
    return _BY_NAME.get(instance_type)


def _normalise(gpu: str) -> str:
    name = gpu.strip().upper().replace("_", "-").replace(" ", "-")
    return name.removeprefix("NVIDIA-")


def _matches(model: str, wanted: str) -> bool:
    """``A100`` names both A100 models; ``A100-80GB`` only one."""
    return model == wanted or model.startswith(wanted + "-")


def candidates(gpu: GpuSpec) -> list[InstanceType]:
    """Instance types with exactly ``gpu.count`` GPUs of that model, cheapest first."""
    wanted = _normalise(gpu.name)
    models = [t for t in _TABLE if _matches(t.gpu, wanted)]
    if not models:
        known = ", ".join(sorted({t.gpu for t in _TABLE}))
        raise BadInput(f"unknown GPU {gpu.name!r} for AWS (known: {known})")
    found = [t for t in models if t.gpu_count == gpu.count]
    if not found:
        counts = ", ".join(str(c) for c in sorted({t.gpu_count for t in models}))
        raise BadInput(
            f"no AWS instance type has {gpu.count} x {gpu.name}",
            hint=f"AWS offers {gpu.name} in counts of {counts}",
        )
    return sorted(found, key=lambda t: t.hourly)

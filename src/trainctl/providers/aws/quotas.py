"""EC2 spot quotas: which Service Quotas entry limits an instance type's spot use.

``MaxSpotInstanceCountExceeded`` means the account's spot vCPU quota for the instance
family is used up, not that AWS has no capacity: waiting does not help, raising the
quota does. The quota names are those of the EC2 User Guide, "Spot Instance quotas"
(using-spot-limits.html), as listed in the Service Quotas console.
"""

from __future__ import annotations

import re

from ...errors import NoCapacity

SERVICE_QUOTAS_HINT = "the Service Quotas console (Amazon EC2, in the machine's region)"

#: instance family letters -> the quota covering their spot vCPUs
_SPECIAL = {
    "dl": "All DL Spot Instance Requests",
    "f": "All F Spot Instance Requests",
    "g": "All G and VT Spot Instance Requests",
    "vt": "All G and VT Spot Instance Requests",
    "inf": "All Inf Spot Instance Requests",
    "trn": "All Trn Spot Instance Requests",
    "x": "All X Spot Instance Requests",
}
_P = {
    "2": "All P4, P3 and P2 Spot Instance Requests",
    "3": "All P4, P3 and P2 Spot Instance Requests",
    "4": "All P4, P3 and P2 Spot Instance Requests",
    "5": "All P5 Spot Instance Requests",
}
_STANDARD = "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"
_FAMILY = re.compile(r"([a-z]+)(\d*)")


class SpotQuotaReached(NoCapacity):
    """The account's spot quota for the family is used up. A ``NoCapacity``, so that
    ``--spot-fallback`` still takes on-demand."""


def spot_quota(instance_type: str) -> str | None:
    """The Service Quotas name limiting ``instance_type``'s spot vCPUs (None: unknown)."""
    found = _FAMILY.match(instance_type.lower())
    if not found:
        return None
    letters, generation = found.groups()
    if letters in _SPECIAL:
        return _SPECIAL[letters]
    if letters == "p":
        return _P.get(generation)
    if letters[0] in "acdhimrtz":
        return _STANDARD
    return None


def spot_quota_reached(instance_type: str, message: str) -> SpotQuotaReached:
    """The error for a spot launch refused with ``MaxSpotInstanceCountExceeded``."""
    quota = spot_quota(instance_type)
    named = f'the "{quota}" quota' if quota else f"the spot quota of the {instance_type} family"
    return SpotQuotaReached(
        f"the account's spot quota for {instance_type} is used up (a quota, not a "
        f"capacity shortage; AWS said: {message})",
        hint=f"ask for a higher {named} (vCPUs) in {SERVICE_QUOTAS_HINT}, "
        "or add --spot-fallback to take on-demand instead",
    )

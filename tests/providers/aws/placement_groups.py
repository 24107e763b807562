"""Placement groups on the moto server, which has none.

moto 5.2 implements neither CreatePlacementGroup, DescribePlacementGroups nor
DeletePlacementGroup (the server answers them with a 500 page), and its RunInstances
ignores ``Placement.GroupName``. ``install`` adds the three actions to moto's EC2
responses (the server runs in this process), keeping each account and region's
groups, and makes RunInstances refuse an unknown group and record the group in the
instance's placement, which DescribeInstances then shows; DeletePlacementGroup is
refused while a machine that is not terminated is in the group. The error codes are
EC2's (``InvalidPlacementGroup.Duplicate``, ``.Unknown``, ``.InUse``).
"""

from __future__ import annotations

import secrets
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses import EC2Response

#: (account, region) -> group name -> the PlacementGroup as DescribePlacementGroups
#: answers it
GROUPS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def _groups(response: EC2Response) -> dict[str, dict[str, Any]]:
    return GROUPS.setdefault((response.current_account, response.region), {})


def _unknown(name: str) -> EC2ClientError:
    return EC2ClientError(
        "InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown."
    )


def create_placement_group(self: EC2Response) -> ActionResult:
    name = self._get_param("GroupName")
    groups = _groups(self)
    if name in groups:
        raise EC2ClientError(
            "InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists."
        )
    tags = self._parse_tag_specification("placement-group").get("placement-group", {})
    groups[name] = {
        "GroupName": name,
        "GroupId": f"pg-{secrets.token_hex(8)}",
        "State": "available",
        "Strategy": self._get_param("Strategy"),
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    return ActionResult({"PlacementGroup": groups[name]})


def describe_placement_groups(self: EC2Response) -> ActionResult:
    names = self._get_param("GroupNames", [])
    groups = _groups(self)
    for name in names:
        if name not in groups:
            raise _unknown(name)
    return ActionResult(
        {"PlacementGroups": [g for n, g in groups.items() if n in names or not names]}
    )


def delete_placement_group(self: EC2Response) -> ActionResult:
    name = self._get_param("GroupName")
    groups = _groups(self)
    if name not in groups:
        raise _unknown(name)
    if any(
        i.placement.group_name == name and i.state != "terminated"
        for i in self.ec2_backend.all_instances()
    ):
        raise EC2ClientError(
            "InvalidPlacementGroup.InUse", f"The Placement Group '{name}' is in use."
        )
    del groups[name]
    return EmptyResult()


def install(monkeypatch) -> None:
    """Placement groups on the server for the test calling it (``monkeypatch`` takes
    them away afterwards; the groups made stay in ``GROUPS``, by region)."""
    run_instances = EC2Response.run_instances

    def placed_run_instances(self: EC2Response) -> ActionResult:
        name = self._get_param("Placement.GroupName")
        if name and name not in _groups(self):
            raise _unknown(name)
        result = run_instances(self)
        for inst in result.result.instances:  # type: ignore[attr-defined]
            inst.placement.group_name = name or ""
        return result

    for action in (create_placement_group, describe_placement_groups, delete_placement_group):
        monkeypatch.setattr(EC2Response, action.__name__, action, raising=False)
    monkeypatch.setattr(EC2Response, "run_instances", placed_run_instances)

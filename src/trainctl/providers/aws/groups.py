"""What the machines of one multi-node group share on AWS.

Before the group's machines are launched, ``make`` creates, in the region's default
VPC (where trainctl launches every machine):

- a ``cluster`` placement group, which puts the machines close together in one
  availability zone, on the low-latency network that multi-node training wants;
- a security group of the group's own, whose only ingress rule lets members of that
  same security group reach each other on every protocol and port (torchrun's
  rendezvous and NCCL pick their ports freely); its egress is EC2's default (all);
- one subnet, chosen once for the whole group: the machines of a cluster placement
  group must be in one availability zone.

Each machine keeps the VPC's default security group, which it has when launched
alone (EC2 adds it only when a launch names no security group), and gets the
group's as well. ``release`` deletes both groups it made once the machines are gone:
EC2 refuses while an instance still uses them (``DependencyViolation``,
``InvalidPlacementGroup.InUse``), so it retries for a while.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...errors import BadInput, OperationFailed, ResourceLeft, TrainctlError
from ...provider import NAME_PREFIX, TAG_MANAGED, TAG_OWNER
from ...types import GroupPlacement
from .session import aws_errors, client_error, error_code

#: tags of a group's machines: the group's name and the machine's node rank
TAG_GROUP = "trainctl-group"
TAG_NODE_RANK = "trainctl-node-rank"
#: how long ``release`` waits for EC2 to let go of the groups (terminated machines
#: free their network interfaces within minutes)
RELEASE_TIMEOUT = 900.0
#: what ``make`` answers that each machine's launch needs
_NETWORK_KEYS = (
    "region",
    "placement_group",
    "security_group_id",
    "base_security_group_id",
    "subnet_id",
)
#: EC2's answers while a machine still uses a group
_IN_USE = {"DependencyViolation", "InvalidPlacementGroup.InUse"}
#: EC2's answers for a group that is already gone
_GONE = {"InvalidGroup.NotFound", "InvalidPlacementGroup.Unknown"}


def resource_name(group: str) -> str:
    """The name of the placement group and the security group of ``group``."""
    return group if group.startswith(NAME_PREFIX) else NAME_PREFIX + group


def make(ec2: Any, region: str, group: str, instance_type: str, owner: str) -> dict[str, Any]:
    """Make the group's placement group and security group (tagged as trainctl's, and
    ``owner``'s) and choose its subnet, in an availability zone that offers
    ``instance_type`` when EC2 says which do. On a failure, what was made is deleted
    before raising."""
    name = resource_name(group)
    tags = {"Name": name, TAG_MANAGED: "true", TAG_GROUP: group, TAG_OWNER: owner}
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    with aws_errors(f"prepare the network of group {group}"):
        vpc = _default_vpc(ec2, region)
        subnet = _subnet(ec2, vpc, instance_type)
        base = ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "group-name", "Values": ["default"]},
            ]
        )["SecurityGroups"][0]["GroupId"]
    made: dict[str, Any] = {}
    try:
        with aws_errors(f"create placement group {name}"):
            ec2.create_placement_group(
                GroupName=name,
                Strategy="cluster",
                TagSpecifications=[{"ResourceType": "placement-group", "Tags": tag_list}],
            )
        made["placement_group"] = name
        with aws_errors(f"create security group {name}"):
            sg = ec2.create_security_group(
                GroupName=name,
                Description=f"trainctl group {group}: its machines reach each other",
                VpcId=vpc,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list}],
            )["GroupId"]
            made["security_group_id"] = sg
            ec2.authorize_security_group_ingress(
                GroupId=sg,
                IpPermissions=[
                    {
                        "IpProtocol": "-1",
                        "UserIdGroupPairs": [
                            {"GroupId": sg, "Description": f"machines of trainctl group {group}"}
                        ],
                    }
                ],
            )
    except BaseException as e:
        _undo(ec2, made, e)
        raise
    return {
        "region": region,
        "placement_group": name,
        "security_group_id": sg,
        "base_security_group_id": base,
        "subnet_id": subnet["SubnetId"],
        "availability_zone": subnet["AvailabilityZone"],
    }


def _default_vpc(ec2: Any, region: str) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise OperationFailed(
            f"there is no default VPC in {region}: trainctl launches its machines there",
            hint=f"create one with `aws ec2 create-default-vpc --region {region}`",
        )
    return str(vpcs[0]["VpcId"])


def _subnet(ec2: Any, vpc: str, instance_type: str) -> dict[str, Any]:
    """The VPC's default subnet (the one EC2 picks for a machine launched alone, with
    a public IP) in the first availability zone offering ``instance_type``; in the
    first zone when EC2 lists no zone for it."""
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    if not subnets:
        raise OperationFailed(f"the default VPC {vpc} has no default subnet")
    offered = {
        o["Location"]
        for o in ec2.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )["InstanceTypeOfferings"]
    }
    fitting = [s for s in subnets if s["AvailabilityZone"] in offered]
    return min(fitting or subnets, key=lambda s: s["AvailabilityZone"])


def _undo(ec2: Any, made: dict[str, Any], error: BaseException) -> None:
    """Delete what a failed ``make`` made; what cannot be deleted ends the call in
    ``ResourceLeft``, naming it."""
    left = []
    sg, pg = made.get("security_group_id"), made.get("placement_group")
    deletes = []
    if sg:
        deletes.append((f"security group {sg}", lambda: ec2.delete_security_group(GroupId=sg)))
    if pg:
        deletes.append((f"placement group {pg}", lambda: ec2.delete_placement_group(GroupName=pg)))
    for what, delete in deletes:
        try:
            with aws_errors(f"delete {what}"):
                delete()
        except TrainctlError as e:
            left.append(f"{what} ({e})")
    if left:
        failed = error.message if isinstance(error, TrainctlError) else repr(error)
        raise ResourceLeft(
            f"{failed}; could not delete {' and '.join(left)}",
            hint="delete it in the EC2 console (it costs nothing)",
        ) from None


def launch_params(group: GroupPlacement, region: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The RunInstances parameters and the tags of one machine of ``group`` in
    ``region``."""
    network = group.network
    if any(not network.get(k) for k in _NETWORK_KEYS):
        raise BadInput(f"group {group.name} has no AWS network (make_group_network first)")
    if network["region"] != region:
        raise BadInput(
            f"group {group.name} is in {network['region']}, not {region}: "
            "all of its machines are in one region"
        )
    params = {
        "Placement": {"GroupName": network["placement_group"]},
        "SubnetId": network["subnet_id"],
        "SecurityGroupIds": [network["base_security_group_id"], network["security_group_id"]],
    }
    return params, {TAG_GROUP: group.name, TAG_NODE_RANK: str(group.rank)}


def release(
    ec2: Any,
    network: dict[str, Any],
    *,
    timeout: float,
    interval: float,
    say: Callable[[str], None],
) -> None:
    """Delete the group's security group, then its placement group, retrying while
    EC2 says a machine still uses one (for up to ``timeout`` seconds in all); one
    already gone is no error."""
    deadline = time.monotonic() + timeout
    sg, pg = network.get("security_group_id"), network.get("placement_group")
    if sg:
        _delete(
            lambda: ec2.delete_security_group(GroupId=sg),
            f"security group {sg}",
            deadline,
            interval,
            say,
        )
    if pg:
        _delete(
            lambda: ec2.delete_placement_group(GroupName=pg),
            f"placement group {pg}",
            deadline,
            interval,
            say,
        )


def _delete(
    call: Callable[[], Any],
    what: str,
    deadline: float,
    interval: float,
    say: Callable[[str], None],
) -> None:
    while True:
        with aws_errors(f"delete {what}"):
            try:
                call()
                return
            except client_error() as e:
                code = error_code(e)
                if code in _GONE:
                    return
                if code not in _IN_USE:
                    raise
        if time.monotonic() >= deadline:
            raise OperationFailed(
                f"{what} is still in use by a machine: not deleted",
                hint="terminate the group's machines (tagged "
                f"{TAG_GROUP}), then release the group again",
            )
        say(f"{what} is still in use (a machine is not gone yet); retrying")
        time.sleep(interval)

"""What the machines of one multi-node group share on AWS, against moto: the cluster
placement group (moto has none: ``placement_groups`` adds them to the server), the
group's own security group, one subnet, the machines' placement and tags, and the
release of it all."""

from __future__ import annotations

import boto3
import pytest

import placement_groups
from aws_support import ec2_error, set_up
from trainctl.capabilities import Capability
from trainctl.errors import BadInput, OperationFailed
from trainctl.provider import TAG_MANAGED
from trainctl.providers.aws import AwsProvider
from trainctl.providers.aws import groups as aws_groups
from trainctl.providers.aws.session import client
from trainctl.types import CreateResourceOptions, GroupPlacement, ResourceState

REGION = "us-west-1"
INSTANCE_TYPE = "t3.medium"


@pytest.fixture
def provider(monkeypatch):
    set_up(monkeypatch, REGION)
    placement_groups.install(monkeypatch)
    return AwsProvider(poll_interval=0.01)


def ec2_of(provider: AwsProvider):
    """The provider's own EC2 client (clients are cached per session)."""
    return client(provider.session(REGION)[0], "ec2", REGION)


def calls(provider: AwsProvider, operation: str) -> list[dict]:
    seen: list[dict] = []
    ec2_of(provider).meta.events.register(
        f"provide-client-params.ec2.{operation}", lambda params, **_: seen.append(dict(params))
    )
    return seen


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def opts(**kw) -> CreateResourceOptions:
    kw.setdefault("instance_type", INSTANCE_TYPE)
    return CreateResourceOptions(**kw)


def placement_group_names() -> set[str]:
    found = boto3.client("ec2", region_name=REGION).describe_placement_groups()
    return {g["GroupName"] for g in found["PlacementGroups"]}


def security_group(group_id: str) -> dict | None:
    ec2 = boto3.client("ec2", region_name=REGION)
    try:
        return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    except ec2.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidGroup.NotFound"
        return None


def test_aws_is_multi_node(provider):
    assert provider.supports(Capability.MULTI_NODE)


def test_make_group_network_makes_a_cluster_group_and_a_self_referencing_security_group(
    provider,
):
    network = provider.make_group_network("made", opts(), 2)
    assert network["region"] == REGION
    assert network["placement_group"] == "trainctl-made"

    ec2 = boto3.client("ec2", region_name=REGION)
    (pg,) = ec2.describe_placement_groups(GroupNames=["trainctl-made"])["PlacementGroups"]
    assert pg["Strategy"] == "cluster"
    assert tags_of(pg)[TAG_MANAGED] == "true"
    assert tags_of(pg)[aws_groups.TAG_GROUP] == "made"

    sg = security_group(network["security_group_id"])
    assert sg is not None and sg["GroupName"] == "trainctl-made"
    assert tags_of(sg)[TAG_MANAGED] == "true" and tags_of(sg)[aws_groups.TAG_GROUP] == "made"
    (rule,) = sg["IpPermissions"]
    assert rule["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [network["security_group_id"]]
    assert not rule["IpRanges"] and not rule["Ipv6Ranges"] and not rule["PrefixListIds"]

    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert sg["VpcId"] == vpc["VpcId"]
    (subnet,) = ec2.describe_subnets(SubnetIds=[network["subnet_id"]])["Subnets"]
    assert subnet["VpcId"] == vpc["VpcId"] and subnet["DefaultForAz"]
    (default_sg,) = ec2.describe_security_groups(GroupIds=[network["base_security_group_id"]])[
        "SecurityGroups"
    ]
    assert default_sg["GroupName"] == "default" and default_sg["VpcId"] == vpc["VpcId"]
    provider.release_group_network("made", network)


def test_the_subnet_is_in_a_zone_that_offers_the_instance_type(provider):
    ec2 = ec2_of(provider)
    zones = sorted(
        s["AvailabilityZone"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
            "Subnets"
        ]
    )
    assert len(zones) > 1
    only = zones[-1]

    def one_zone(params, **_):
        if params.get("LocationType") == "availability-zone":
            params["Filters"] = [*params["Filters"], {"Name": "location", "Values": [only]}]

    ec2.meta.events.register("provide-client-params.ec2.DescribeInstanceTypeOfferings", one_zone)
    network = provider.make_group_network("zoned", opts(), 2)
    assert network["availability_zone"] == only
    provider.release_group_network("zoned", network)


def test_group_machines_share_placement_subnet_and_security_group(provider):
    network = provider.make_group_network("pair", opts(), 2)
    launches = calls(provider, "RunInstances")
    made = [
        provider.create_resource(
            opts(name=f"pair-{rank}", group=GroupPlacement("pair", 2, rank, network))
        )
        for rank in (0, 1)
    ]
    assert all(p["Placement"] == {"GroupName": "trainctl-pair"} for p in launches)

    ec2 = boto3.client("ec2", region_name=REGION)
    found = {
        i["InstanceId"]: i
        for r in ec2.describe_instances(InstanceIds=[m.id for m in made])["Reservations"]
        for i in r["Instances"]
    }
    for rank, status in enumerate(made):
        inst = found[status.id]
        assert inst["Placement"]["GroupName"] == "trainctl-pair"
        assert inst["SubnetId"] == network["subnet_id"]
        assert inst["Placement"]["AvailabilityZone"] == network["availability_zone"]
        assert {g["GroupId"] for g in inst["SecurityGroups"]} == {
            network["security_group_id"],
            network["base_security_group_id"],
        }
        tags = tags_of(inst)
        assert tags[aws_groups.TAG_GROUP] == "pair"
        assert tags[aws_groups.TAG_NODE_RANK] == str(rank)
        assert status.private_ip and status.private_ip == inst["PrivateIpAddress"]
        assert provider.get_resource_status(status.id).private_ip == status.private_ip
    assert made[0].private_ip != made[1].private_ip

    for status in made:
        provider.terminate(status.id)
    provider.release_group_network("pair", network)
    assert security_group(network["security_group_id"]) is None
    assert "trainctl-pair" not in placement_group_names()
    provider.release_group_network("pair", network)  # already gone: fine


def test_a_spot_machine_may_be_in_a_cluster_placement_group(provider):
    network = provider.make_group_network("spot", opts(), 2)
    launches = calls(provider, "RunInstances")
    status = provider.create_resource(opts(spot=True, group=GroupPlacement("spot", 1, 0, network)))
    assert status.spot and status.state is ResourceState.RUNNING
    assert launches[0]["Placement"] == {"GroupName": "trainctl-spot"}
    assert launches[0]["InstanceMarketOptions"]["MarketType"] == "spot"
    provider.terminate(status.id)
    provider.release_group_network("spot", network)


def test_a_machine_of_a_group_goes_to_the_group_s_region_only(provider):
    network = provider.make_group_network("elsewhere", opts(), 2)
    group = GroupPlacement("elsewhere", 2, 0, network)
    launches = calls(provider, "RunInstances")
    with pytest.raises(BadInput, match=f"is in {REGION}, not eu-west-3"):
        provider.create_resource(opts(region="eu-west-3", group=group))
    with pytest.raises(BadInput, match="has no AWS network"):
        provider.create_resource(opts(group=GroupPlacement("elsewhere", 2, 0, {})))
    assert launches == []
    provider.release_group_network("elsewhere", network)


def test_release_waits_while_a_machine_still_uses_the_security_group(provider):
    network = provider.make_group_network("busy", opts(), 2)
    refused: list[str] = []

    def in_use(**_):
        if len(refused) < 2:
            refused.append("DeleteSecurityGroup")
            return ec2_error("DependencyViolation", "resource sg-... has a dependent object")
        return None

    ec2_of(provider).meta.events.register("before-send.ec2.DeleteSecurityGroup", in_use)
    lines: list[str] = []
    provider.progress = lines.append
    provider.release_group_network("busy", network)
    assert len(refused) == 2
    assert sum("still in use" in line for line in lines) == 2
    assert security_group(network["security_group_id"]) is None
    assert "trainctl-busy" not in placement_group_names()


def test_release_gives_up_after_its_timeout(provider, monkeypatch):
    network = provider.make_group_network("stuck", opts(), 2)

    def in_use(**_):
        return ec2_error("DependencyViolation", "resource sg-... has a dependent object")

    ec2_of(provider).meta.events.register("before-send.ec2.DeleteSecurityGroup", in_use)
    monkeypatch.setattr(aws_groups, "RELEASE_TIMEOUT", 0.05)
    with pytest.raises(OperationFailed, match="still in use by a machine") as e:
        provider.release_group_network("stuck", network)
    assert aws_groups.TAG_GROUP in (e.value.hint or "")
    ec2_of(provider).meta.events.unregister("before-send.ec2.DeleteSecurityGroup", in_use)
    provider.release_group_network("stuck", network)
    assert "trainctl-stuck" not in placement_group_names()


def test_the_placement_group_waits_for_its_machines_too(provider):
    network = provider.make_group_network("held", opts(), 2)
    status = provider.create_resource(opts(group=GroupPlacement("held", 1, 0, network)))
    ec2 = boto3.client("ec2", region_name=REGION)
    with pytest.raises(ec2.exceptions.ClientError, match="InvalidPlacementGroup.InUse"):
        ec2.delete_placement_group(GroupName="trainctl-held")
    provider.terminate(status.id)
    provider.release_group_network("held", network)
    assert "trainctl-held" not in placement_group_names()


@pytest.mark.parametrize("failing", ["CreateSecurityGroup", "AuthorizeSecurityGroupIngress"])
def test_a_failure_midway_leaves_nothing(provider, failing):
    group = f"broken-{failing.lower()}"

    def refuse(**_):
        return ec2_error("InvalidParameterValue", "injected refusal")

    ec2_of(provider).meta.events.register(f"before-send.ec2.{failing}", refuse)
    deleted = calls(provider, "DeleteSecurityGroup")
    with pytest.raises(OperationFailed, match="injected refusal"):
        provider.make_group_network(group, opts(), 2)
    assert f"trainctl-{group}" not in placement_group_names()
    found = boto3.client("ec2", region_name=REGION).describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"trainctl-{group}"]}]
    )["SecurityGroups"]
    assert found == []
    assert len(deleted) == (failing == "AuthorizeSecurityGroupIngress")


def test_an_instance_type_the_region_lacks_makes_nothing(provider):
    made = calls(provider, "CreatePlacementGroup")
    with pytest.raises(BadInput, match="unknown instance type"):
        provider.make_group_network("nothing", opts(instance_type="zz9.huge"), 2)
    assert made == []


def test_a_group_through_the_cli_meets_at_node_0_s_private_ip(provider):
    from cli_helpers import trainctl

    script = 'echo "rank=$NODE_RANK master=$MASTER_ADDR ips=$TRAINCTL_NODE_IPS"'
    args = ["--provider", "aws", "--instance-type", INSTANCE_TYPE, "--nodes", "2"]
    r = trainctl("run", *args, "-n", "cli", "--no-sync", "--", "sh", "-c", script, timeout=300)
    assert r.code == 0, r.err
    ec2 = boto3.client("ec2", region_name=REGION)
    nodes = {
        tags_of(i)[aws_groups.TAG_NODE_RANK]: i
        for res in ec2.describe_instances(
            Filters=[{"Name": f"tag:{aws_groups.TAG_GROUP}", "Values": ["cli"]}]
        )["Reservations"]
        for i in res["Instances"]
    }
    ips = [nodes["0"]["PrivateIpAddress"], nodes["1"]["PrivateIpAddress"]]
    lines = sorted(line for line in r.out.splitlines() if line.startswith("[node "))
    assert lines == [
        f"[node {rank}] rank={rank} master={ips[0]} ips={','.join(ips)}" for rank in (0, 1)
    ]
    assert all(n["Placement"]["GroupName"] == "trainctl-cli" for n in nodes.values())
    assert "terminated group" in r.err
    assert "trainctl-cli" not in placement_group_names()
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["trainctl-cli"]}]
    )["SecurityGroups"]
    assert found == []


def test_a_node_that_cannot_be_made_releases_the_group(provider):
    """Node 2 of 3 refused (capacity): nodes 0 and 1 are terminated, what they shared is
    removed, and nothing is left recorded as live."""
    from trainctl import groups
    from trainctl.api import Trainctl

    def third_refused(request, **_):
        body = request.body or b""
        if b"three-2" in (body if isinstance(body, bytes) else body.encode()):
            return ec2_error("InsufficientInstanceCapacity", "no capacity in the placement group")
        return None

    ec2_of(provider).meta.events.register("before-send.ec2.RunInstances", third_refused)

    def api() -> Trainctl:  # every node's create through this test's provider
        made = Trainctl()
        made._providers["aws"] = provider
        return made

    tc = api()
    with pytest.raises(OperationFailed) as e:
        groups.create_group(tc, "aws", opts(name="three"), 3, new_api=api)
    assert "node 2 of 3 (three-2) could not be made" in e.value.message
    assert "released the other nodes (three-0, three-1)" in e.value.message
    ec2 = boto3.client("ec2", region_name=REGION)
    states = [
        i["State"]["Name"]
        for res in ec2.describe_instances(
            Filters=[{"Name": f"tag:{aws_groups.TAG_GROUP}", "Values": ["three"]}]
        )["Reservations"]
        for i in res["Instances"]
    ]
    assert len(states) == 2 and set(states) <= {"shutting-down", "terminated"}
    assert "trainctl-three" not in placement_group_names()
    assert tc.store.resources() == [] and tc.store.group("three") is None

"""The aws provider's control plane against moto: launch parameters, spot rules,
idempotent launches, throttling, ownership, setup checks, images and ids."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import boto3
import pytest
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami

from aws_support import (
    ACCOUNT,
    ec2_answer,
    ec2_error,
    forward,
    instance,
    publish_dlami,
    record_backoff,
    s3_error,
    set_up,
    use_moto,
)
from trainctl.errors import (
    BadInput,
    CapabilityError,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    ResourceLeft,
)
from trainctl.provider import TAG_MANAGED, TAG_NAME, TAG_OWNER
from trainctl.providers.aws import AwsProvider
from trainctl.providers.aws import instance as aws_instance
from trainctl.providers.aws.images import DLAMI_NAME
from trainctl.providers.aws.session import client
from trainctl.providers.aws.settings import AwsSettings
from trainctl.types import CreateResourceOptions, GpuSpec, ResourceState

REGION = "us-west-2"


@pytest.fixture
def provider(monkeypatch):
    set_up(monkeypatch, REGION)
    return AwsProvider(poll_interval=0.05)


def ec2_of(provider: AwsProvider, region: str = REGION):
    """The provider's own EC2 client (clients are cached per session)."""
    return client(provider.session(region)[0], "ec2", region)


def calls(provider: AwsProvider, operation: str, region: str = REGION) -> list[dict]:
    """Parameters of every ``operation`` call the provider makes from now on, retries
    included."""
    seen: list[dict] = []
    ec2_of(provider, region).meta.events.register(
        f"provide-client-params.ec2.{operation}", lambda params, **_: seen.append(dict(params))
    )
    return seen


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def opts(**kw) -> CreateResourceOptions:
    kw.setdefault("gpu", GpuSpec("A10G", 1))
    return CreateResourceOptions(**kw)


# --- launch parameters ---------------------------------------------------------------


def test_launch_parameters_tags_imdsv2_disk_profile(provider):
    launches = calls(provider, "RunInstances")
    st = provider.create_resource(opts(name="exp-1", disk_gb=200, tags={"team": "ml"}))
    assert st.state is ResourceState.RUNNING  # and its SSM agent online
    assert (st.instance_type, st.gpu, st.gpu_count) == ("g5.xlarge", "A10G", 1)
    assert st.cost_per_hour == 1.006 and not st.spot

    (sent,) = launches
    assert len(sent["ClientToken"]) >= 32
    assert sent["MetadataOptions"]["HttpTokens"] == "required"
    assert sent["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert sent["IamInstanceProfile"] == {"Name": "trainctl-instance"}
    (root,) = sent["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeSize"] == 200 and root["Ebs"]["DeleteOnTermination"] is True
    kinds = {spec["ResourceType"] for spec in sent["TagSpecifications"]}
    assert kinds == {"instance", "volume"}

    ec2 = boto3.client("ec2", region_name=REGION)
    inst = ec2.describe_instances(InstanceIds=[st.id])["Reservations"][0]["Instances"][0]
    tags = tags_of(inst)
    assert tags[TAG_MANAGED] == "true" and tags[TAG_NAME] == "exp-1" and tags["team"] == "ml"
    assert "@" in tags[TAG_OWNER]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["IamInstanceProfile"]["Arn"].endswith("/trainctl-instance")
    shutdown = ec2.describe_instance_attribute(
        InstanceId=st.id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    (volume,) = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [st.id]}]
    )["Volumes"]
    assert volume["Size"] == 200 and tags_of(volume)[TAG_MANAGED] == "true"
    assert inst["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True
    provider.terminate(st.id)


def test_gpu_spec_takes_the_cheapest_type_offered(provider):
    launches = calls(provider, "RunInstances")
    st = provider.create_resource(opts(gpu=GpuSpec.parse("l4")))
    assert launches[0]["InstanceType"] == "g6.xlarge" and st.gpu == "L4"
    provider.terminate(st.id)
    with pytest.raises(BadInput, match=r"it has H100:1, H100:8"):
        provider.create_resource(opts(gpu=GpuSpec("H100", 2)))
    with pytest.raises(BadInput, match="known GPUs: .*A10G"):
        provider.create_resource(opts(gpu=GpuSpec("Z9000", 1)))
    assert len(launches) == 1


def test_unknown_instance_type_refused_before_launch(provider):
    launches = calls(provider, "RunInstances")
    with pytest.raises(BadInput, match="unknown instance type 'g9.nope'"):
        provider.create_resource(opts(gpu=None, instance_type="g9.nope"))
    assert launches == []


def test_region_without_that_type(provider):
    # moto's offering data: af-south-1 has no A100 machines
    launches = calls(provider, "RunInstances", "af-south-1")
    with pytest.raises(NoCapacity, match="not offered in af-south-1|offered in af-south-1"):
        provider.create_resource(opts(gpu=None, instance_type="p4d.24xlarge", region="af-south-1"))
    with pytest.raises(NoCapacity, match=r"looked for p4d\.24xlarge"):
        provider.create_resource(opts(gpu=GpuSpec("A100-40GB", 8), region="af-south-1"))
    assert launches == []


def test_bad_option_combinations(provider):
    with pytest.raises(BadInput, match="only makes sense with --spot"):
        provider.create_resource(opts(spot_fallback=True))
    with pytest.raises(BadInput, match="does not take --host"):
        provider.create_resource(opts(extra={"host": "x"}))
    with pytest.raises(BadInput, match="smaller than the image"):
        provider.create_resource(opts(disk_gb=1))
    with pytest.raises(BadInput, match="instance type or a GPU"):
        provider.create_resource(CreateResourceOptions())


# --- --max-price on-demand -----------------------------------------------------------


def test_max_price_caps_on_demand(provider):
    launches = calls(provider, "RunInstances")
    st = provider.create_resource(opts(max_price=1.5))  # g5.xlarge: $1.006/h
    assert not st.spot and st.state is ResourceState.RUNNING
    assert "InstanceMarketOptions" not in launches[0]
    provider.terminate(st.id)


def test_on_demand_above_max_price_is_refused_before_any_launch(provider):
    launches = calls(provider, "RunInstances")
    with pytest.raises(NoCapacity, match=r"g5\.xlarge costs \$1\.01/h on-demand") as e:
        provider.create_resource(opts(max_price=0.5))
    assert "above --max-price $0.50/h" in e.value.message
    assert "--max-price 1.01 or more" in (e.value.hint or "")
    assert launches == []


def test_on_demand_without_a_catalog_price_cannot_be_capped(provider):
    launches = calls(provider, "RunInstances")
    with pytest.raises(BadInput, match="price of t3.micro on aws is not known"):
        provider.create_resource(opts(gpu=None, instance_type="t3.micro", max_price=1.0))
    assert launches == []


# --- spot ----------------------------------------------------------------------------


def test_spot_launch_is_one_time_and_terminates_on_interruption(provider):
    launches = calls(provider, "RunInstances")
    st = provider.create_resource(opts(spot=True, max_price=0.7))
    market = launches[0]["InstanceMarketOptions"]
    assert market["MarketType"] == "spot"
    assert market["SpotOptions"] == {
        "SpotInstanceType": "one-time",
        "InstanceInterruptionBehavior": "terminate",
        "MaxPrice": "0.7000",
    }
    assert st.spot and st.cost_per_hour is None
    assert "spot-instances-request" in {s["ResourceType"] for s in launches[0]["TagSpecifications"]}
    with pytest.raises(CapabilityError, match="cannot stop a one-time spot machine"):
        provider.stop(st.id)
    provider.terminate(st.id)


def _no_spot_capacity(provider, left_open: list[str]):
    """Spot launches fail for capacity; like AWS at its worst, one leaves a request open."""
    ec2 = ec2_of(provider)

    def refuse_spot(request, **_):
        if "InstanceMarketOptions" in (request.body or ""):
            backend = ec2_backends[ACCOUNT][REGION]
            made = boto3.client("ec2", region_name=REGION).request_spot_instances(
                InstanceCount=1,
                LaunchSpecification={"ImageId": publish_dlami(REGION), "InstanceType": "g5.xlarge"},
                TagSpecifications=[
                    {"ResourceType": "spot-instances-request", "Tags": left_open_tags(request)}
                ],
            )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
            backend.spot_instance_requests[made].state = "open"
            left_open.append(made)
            return ec2_error("InsufficientInstanceCapacity", "no g5.xlarge spot capacity")
        return None

    ec2.meta.events.register("before-send.ec2.RunInstances", refuse_spot)


def left_open_tags(request) -> list[dict[str, str]]:
    """The launch's own tags, read back from the query string it sends."""
    from urllib.parse import parse_qs

    query = parse_qs(request.body)
    out, i = [], 1
    while f"TagSpecification.1.Tag.{i}.Key" in query:
        out.append(
            {
                "Key": query[f"TagSpecification.1.Tag.{i}.Key"][0],
                "Value": query[f"TagSpecification.1.Tag.{i}.Value"][0],
            }
        )
        i += 1
    return out


def _still_open(request_ids: list[str]) -> list[str]:
    """Which of these spot requests are open (moto forgets cancelled ones)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    requests = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    return [
        r["SpotInstanceRequestId"]
        for r in requests
        if r["State"] == "open" and r["SpotInstanceRequestId"] in request_ids
    ]


def test_spot_without_capacity_fails_and_leaves_no_request_open(provider):
    left_open: list[str] = []
    _no_spot_capacity(provider, left_open)
    launches = calls(provider, "RunInstances")
    lines: list[str] = []
    with pytest.raises(NoCapacity, match="--spot-fallback"):
        provider.create_resource(opts(spot=True, name="spot-none"), progress=lines.append)
    assert len(launches) == 1  # no on-demand machine without --spot-fallback
    assert len(left_open) == 1 and _still_open(left_open) == []
    assert f"cancelled open spot request {left_open[0]}" in lines
    assert not [r for r in provider.list_resources() if r.name == "spot-none"]


def test_spot_fallback_takes_on_demand(provider):
    left_open: list[str] = []
    _no_spot_capacity(provider, left_open)
    launches = calls(provider, "RunInstances")
    lines: list[str] = []
    st = provider.create_resource(opts(spot=True, spot_fallback=True), progress=lines.append)
    assert not st.spot and st.state is ResourceState.RUNNING
    spot, on_demand = launches
    assert "InstanceMarketOptions" in spot and "InstanceMarketOptions" not in on_demand
    assert spot["ClientToken"] != on_demand["ClientToken"]
    assert any("falling back to on-demand" in line for line in lines)
    (warning,) = st.warnings
    assert "no g5.xlarge spot capacity" in warning and "on-demand instead" in warning
    assert len(left_open) == 1 and _still_open(left_open) == []
    provider.terminate(st.id)


def _spot_quota_used_up(provider) -> None:
    """AWS refuses spot launches (and only those) as over the account's spot quota;
    moto never does."""

    def refuse_spot(request, **_):
        if "InstanceMarketOptions" in request.body:
            return ec2_error("MaxSpotInstanceCountExceeded", "Max spot instance count exceeded")
        return None

    ec2_of(provider).meta.events.register("before-send.ec2.RunInstances", refuse_spot)


def test_spot_quota_is_reported_as_a_quota_and_names_it(provider):
    _spot_quota_used_up(provider)
    launches = calls(provider, "RunInstances")
    with pytest.raises(NoCapacity) as e:
        provider.create_resource(opts(spot=True, name="spot-quota"))
    assert "quota, not a capacity shortage" in e.value.message
    assert '"All G and VT Spot Instance Requests"' in e.value.hint  # g5.xlarge
    assert "Service Quotas" in e.value.hint and "retry later" not in e.value.hint
    assert len(launches) == 1


def test_spot_quota_with_fallback_takes_on_demand(provider):
    _spot_quota_used_up(provider)
    launches = calls(provider, "RunInstances")
    lines: list[str] = []
    st = provider.create_resource(opts(spot=True, spot_fallback=True), progress=lines.append)
    assert not st.spot and st.state is ResourceState.RUNNING and len(launches) == 2
    assert any("spot quota" in line and "falling back to on-demand" in line for line in lines)
    provider.terminate(st.id)


@pytest.mark.parametrize(
    ("instance_type", "quota"),
    [
        ("g4dn.xlarge", "All G and VT Spot Instance Requests"),
        ("vt1.3xlarge", "All G and VT Spot Instance Requests"),
        ("p3.2xlarge", "All P4, P3 and P2 Spot Instance Requests"),
        ("p4d.24xlarge", "All P4, P3 and P2 Spot Instance Requests"),
        ("p5.48xlarge", "All P5 Spot Instance Requests"),
        ("inf2.xlarge", "All Inf Spot Instance Requests"),
        ("trn1.2xlarge", "All Trn Spot Instance Requests"),
        ("dl1.24xlarge", "All DL Spot Instance Requests"),
        ("c5.large", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
        ("x2idn.16xlarge", "All X Spot Instance Requests"),
        ("p9.xlarge", None),
    ],
)
def test_spot_quota_names_by_family(instance_type, quota):
    from trainctl.providers.aws.quotas import spot_quota

    assert spot_quota(instance_type) == quota


def test_spot_fallback_above_max_price_is_refused(provider):
    left_open: list[str] = []
    _no_spot_capacity(provider, left_open)
    launches = calls(provider, "RunInstances")
    opt = opts(spot=True, spot_fallback=True, max_price=0.01)
    with pytest.raises(NoCapacity, match="on-demand fallback: .* above --max-price") as e:
        provider.create_resource(opt)
    assert "--max-price 1.01 or more" in e.value.hint
    assert len(launches) == 1  # the spot try only: no on-demand machine
    assert _still_open(left_open) == []


def test_spot_request_that_cannot_be_checked_after_launch_is_a_warning(provider):
    def denied(**_):
        return ec2_error("UnauthorizedOperation", "not authorized", status=403)

    ec2_of(provider).meta.events.register("before-send.ec2.DescribeSpotInstanceRequests", denied)
    lines: list[str] = []
    st = provider.create_resource(opts(spot=True, name="spot-unchecked"), progress=lines.append)
    assert st.state is ResourceState.RUNNING and st.spot
    assert not [line for line in lines if "could not check" in line]  # not progress
    (warning,) = st.warnings
    assert st.id in warning and "could not check its spot request" in warning
    # moto's RunInstances names no request: the warning names its tag instead
    assert f"tagged {aws_instance.TAG_LAUNCH}=" in warning and "cancel it" in warning
    provider.terminate(st.id)


def test_spot_request_left_open_by_a_failed_launch_keeps_the_record(provider):
    left_open: list[str] = []
    _no_spot_capacity(provider, left_open)
    ec2_of(provider).meta.events.register(
        "before-send.ec2.DescribeSpotInstanceRequests",
        lambda **_: ec2_error("UnauthorizedOperation", "not authorized", status=403),
    )
    with pytest.raises(ResourceLeft, match="could not close the spot request") as e:
        provider.create_resource(opts(spot=True, spot_fallback=True))
    assert "no g5.xlarge spot capacity" in e.value.message
    boto3.client("ec2", region_name=REGION).cancel_spot_instance_requests(
        SpotInstanceRequestIds=left_open
    )


# --- retries -------------------------------------------------------------------------


def test_retried_launch_keeps_its_client_token_and_makes_one_machine(provider, monkeypatch):
    pauses = record_backoff(monkeypatch)
    launches = calls(provider, "RunInstances")
    tokens: list[str] = []

    def lost_answer(request, **_):
        # the first attempt reaches EC2 (the machine is made) but its answer is lost;
        # every retry fails too, so the outcome stays unknown to botocore
        tokens.append(next(p for p in request.body.split("&") if p.startswith("ClientToken")))
        if len(tokens) == 1:
            forward(request)
        return ec2_error("InternalError", "injected", status=500)

    ec2_of(provider).meta.events.register("before-send.ec2.RunInstances", lost_answer)
    st = provider.create_resource(opts(name="retried"))
    assert len(tokens) > 1 and len(set(tokens)) == 1
    assert len(launches) == 1  # one call, retried by botocore with the same token
    assert pauses and all(p > 0 for p in pauses)
    made = [r for r in provider.list_resources() if r.name == "retried"]
    assert [r.id for r in made] == [st.id]
    provider.terminate(st.id)


#: DescribeInstances as it may answer, eventually consistent, just after a launch
NOT_SEEN_YET = (
    b'<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    b"<requestId>injected</requestId><reservationSet/></DescribeInstancesResponse>"
)


def _lost_launch(provider, *, repeat_answers: bool) -> list[int]:
    """The first RunInstances makes its machine but every answer is lost; the launch
    tag lookup does not see the machine yet. With ``repeat_answers``, a RunInstances
    after that lookup gets the original reservation, as AWS answers a repeated
    ClientToken (moto does not). Returns the list of lookups made."""
    made: list[bytes] = []
    looked: list[int] = []

    def run(request, **_):
        if not made:
            made.append(forward(request))
        elif looked and repeat_answers:
            return ec2_answer(made[0])
        return ec2_error("InternalError", "injected", status=500)

    def describe(request, **_):
        if aws_instance.TAG_LAUNCH in request.body:
            looked.append(1)
            return ec2_answer(NOT_SEEN_YET)
        return None

    events = ec2_of(provider).meta.events
    events.register("before-send.ec2.RunInstances", run, unique_id="lost-run")
    events.register("before-send.ec2.DescribeInstances", describe, unique_id="lost-describe")
    return looked


def test_unclear_launch_not_yet_seen_is_asked_again_with_its_token(provider, monkeypatch):
    record_backoff(monkeypatch)
    launches = calls(provider, "RunInstances")
    looked = _lost_launch(provider, repeat_answers=True)
    st = provider.create_resource(opts(name="unseen"))
    assert looked and len(launches) == 2
    assert launches[0]["ClientToken"] == launches[1]["ClientToken"]
    assert [r.id for r in provider.list_resources() if r.name == "unseen"] == [st.id]
    provider.terminate(st.id)


def test_launch_whose_outcome_stays_unknown_keeps_its_record(provider, monkeypatch):
    from trainctl.api import Trainctl

    record_backoff(monkeypatch)
    _lost_launch(provider, repeat_answers=False)
    tc = Trainctl()
    tc._providers["aws"] = provider
    with pytest.raises(ResourceLeft, match="unknown outcome"):
        tc.create("aws", opts(name="maybe"))
    assert tc.store.resource("maybe").provider == "aws"  # the record is kept
    events = ec2_of(provider).meta.events
    events.unregister("before-send.ec2.RunInstances", unique_id="lost-run")
    events.unregister("before-send.ec2.DescribeInstances", unique_id="lost-describe")
    (view,) = [v for v in tc.list(refresh=True, provider="aws") if v.record]
    assert view.note and "adopted" in view.note  # the machine it made, found by name
    tc.terminate("maybe")


def test_throttling_is_retried_with_backoff(provider, monkeypatch):
    pauses = record_backoff(monkeypatch)
    throttled = []

    def throttle(**_):
        if len(throttled) < 3:
            throttled.append(1)
            return ec2_error("RequestLimitExceeded", "Request limit exceeded.", status=503)
        return None

    ec2_of(provider).meta.events.register("before-send.ec2.DescribeInstances", throttle)
    provider.list_resources()
    assert len(throttled) == 3 and len(pauses) == 3


def test_a_fresh_instance_profile_is_waited_for_and_quotas_explained(provider, monkeypatch):
    monkeypatch.setattr(aws_instance, "PROFILE_PROPAGATION_SECONDS", 0)
    answers = [
        ec2_error(
            "InvalidParameterValue",
            "Value (trainctl-instance) for parameter iamInstanceProfile.name is invalid. "
            "Invalid IAM Instance Profile name",
        )
    ]
    ec2_of(provider).meta.events.register(
        "before-send.ec2.RunInstances", lambda **_: answers.pop() if answers else None
    )
    lines: list[str] = []
    st = provider.create_resource(opts(), progress=lines.append)
    assert any("not visible to EC2 yet" in line for line in lines)
    provider.terminate(st.id)

    answers.append(ec2_error("VcpuLimitExceeded", "You have requested more vCPU capacity"))
    with pytest.raises(OperationFailed, match="quota reached") as e:
        provider.create_resource(opts())
    assert "Service Quotas" in (e.value.hint or "")


# --- ownership, listing, lifecycle ---------------------------------------------------


def test_list_is_one_call_per_page_and_only_owned(provider, monkeypatch):
    ec2 = boto3.client("ec2", region_name=REGION)
    foreign = ec2.run_instances(
        ImageId=publish_dlami(REGION), InstanceType="t3.micro", MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    made = [provider.create_resource(opts(name=f"many-{i}")).id for i in range(7)]
    pages = calls(provider, "DescribeInstances")
    listed = {r.id for r in provider.list_resources()}
    assert set(made) <= listed and foreign not in listed
    assert len(pages) == 1
    monkeypatch.setattr(aws_instance, "PAGE_SIZE", 5)
    pages.clear()
    assert {r.id for r in provider.list_resources()} == listed
    assert len(pages) == -(-len(listed) // 5)

    with pytest.raises(NotFound, match="not a trainctl machine"):
        provider.get_resource_status(foreign)
    for call in (provider.terminate, provider.connect, provider.stop, provider.start):
        with pytest.raises(NotFound, match="not a trainctl machine"):
            call(foreign)
    assert instance(REGION, foreign).state == "running"
    for rid in made:
        provider.terminate(rid)


def test_terminate_confirms_and_is_idempotent(provider):
    st = provider.create_resource(opts())
    first = provider.terminate(st.id)
    assert first.state in (ResourceState.TERMINATING, ResourceState.TERMINATED)
    assert provider.terminate(st.id).state is ResourceState.TERMINATED
    assert provider.terminate("i-0123456789abcdef0").state is ResourceState.TERMINATED
    assert st.id not in {r.id for r in provider.list_resources()}
    with pytest.raises(NotFound, match="ids look like"):
        provider.terminate("not-an-id")


def test_staging_cleanup_failure_after_terminate_is_a_warning(provider, trainctl_home):
    st = provider.create_resource(opts())
    manifest = trainctl_home / "aws" / "sync" / f"{st.id}.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("{}")

    s3 = client(provider.session(REGION)[0], "s3", REGION)
    s3.meta.events.register(
        "before-send.s3.ListObjectsV2", lambda **_: s3_error("AccessDenied", "Access Denied")
    )
    done = provider.terminate(st.id)
    assert done.state in (ResourceState.TERMINATING, ResourceState.TERMINATED)
    assert instance(REGION, st.id).state in ("shutting-down", "terminated")
    (warning,) = done.warnings
    assert st.id in warning and "Access Denied" in warning
    assert not manifest.exists()


def test_stop_and_start(provider):
    st = provider.create_resource(opts())
    assert provider.stop(st.id).state is ResourceState.STOPPED
    with pytest.raises(OperationFailed, match="trainctl start"):
        provider.connect(st.id)
    assert provider.start(st.id).state in (ResourceState.RUNNING, ResourceState.STARTING)
    provider.terminate(st.id)


def test_instance_in_another_region_has_a_region_prefixed_id(provider):
    publish_dlami("us-west-1")
    provider.setup(region="us-west-1")
    st = provider.create_resource(opts(gpu=GpuSpec("T4", 1), region="us-west-1"))
    assert st.id.startswith("us-west-1/i-") and st.region == "us-west-1"
    assert provider.get_resource_status(st.id).region == "us-west-1"
    provider.terminate(st.id)


def test_list_covers_every_region_launched_in(provider, trainctl_home):
    from trainctl.api import Trainctl

    publish_dlami("us-west-1")
    provider.setup(region="us-west-1")
    tc = Trainctl()
    tc._providers["aws"] = AwsProvider(poll_interval=0.05)  # what registry.get makes, faster
    record = tc.create("aws", opts(gpu=GpuSpec("T4", 1), region="us-west-1", name="far"))
    assert record.id.startswith("us-west-1/i-")
    assert aws_instance.regions.remembered() == ["us-west-1"]
    pages = {
        region: calls(provider, "DescribeInstances", region) for region in (REGION, "us-west-1")
    }
    assert record.id in {r.id for r in provider.list_resources()}
    assert [len(p) for p in pages.values()] == [1, 1]  # one call per region

    (view,) = [v for v in tc.list(refresh=True, provider="aws") if v.record]
    assert view.live.state is ResourceState.RUNNING  # not marked terminated
    tc.terminate(record.id)
    assert record.id not in {r.id for r in provider.list_resources()}


# --- setup checks, images ------------------------------------------------------------


def test_missing_setup_is_explained_before_launch(provider, monkeypatch, trainctl_home):
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text(
        '[providers.aws]\ninstance_profile = "absent-profile"\n'
    )
    fresh = AwsProvider()
    launches = calls(fresh, "RunInstances", "ca-central-1")
    with pytest.raises(OperationFailed) as e:
        fresh.create_resource(opts(region="ca-central-1"))
    assert "instance profile absent-profile" in e.value.message
    assert "staging bucket trainctl-staging-123456789012-ca-central-1" in e.value.message
    assert "trainctl aws setup --region ca-central-1" in (e.value.hint or "")
    assert launches == []
    check = fresh.check()
    assert not check.usable and "trainctl aws setup" in check.detail


def test_settings_are_read_once_and_bad_values_named(trainctl_home):
    trainctl_home.mkdir(parents=True, exist_ok=True)
    config = trainctl_home / "config.toml"
    config.write_text('[providers.aws]\nready_timeout = "soon"\n')
    with pytest.raises(BadInput, match=r"\[providers\.aws\] ready_timeout must be a number"):
        AwsProvider()
    config.write_text("[providers.aws]\nready_timeout = 0\n")
    with pytest.raises(BadInput, match="above 0, not 0"):
        AwsProvider()
    config.write_text("[providers.aws]\nregion = 3\n")
    with pytest.raises(BadInput, match=r"\[providers\.aws\] region must be a string"):
        AwsProvider()
    config.write_text('[providers.aws]\nregion = "eu-west-3"\nready_timeout = 90\nbucket = "b"\n')
    provider = AwsProvider()
    assert provider.settings == AwsSettings(region="eu-west-3", bucket="b", ready_timeout=90.0)
    assert provider.ready_timeout == 90.0
    assert AwsSettings.load({}) == AwsSettings(
        region=None, profile=None, bucket=None, instance_profile="trainctl-instance"
    )
    assert AwsSettings.load({}).ready_timeout == 600.0


def test_image_from_public_parameter_else_newest_dlami(provider):
    launches = calls(provider, "RunInstances")
    st = provider.create_resource(opts())
    assert launches[0]["ImageId"] == publish_dlami(REGION)
    provider.terminate(st.id)

    region = "eu-north-1"  # no parameter published here: DescribeImages decides
    provider.setup(region=region)
    backend = ec2_backends[ACCOUNT][region]
    for ami_id, day in (("ami-0000000000000d1a1", 1), ("ami-0000000000000d1a2", 2)):
        backend.amis[ami_id] = Ami(
            backend,
            ami_id,
            name=DLAMI_NAME.replace("*", f" 2026010{day}"),
            owner_alias="amazon",
            architecture="x86_64",
            creation_date=datetime(2026, 1, day, tzinfo=timezone.utc),
        )
    launches = calls(provider, "RunInstances", region)
    st = provider.create_resource(opts(region=region))
    assert launches[0]["ImageId"] == "ami-0000000000000d1a2"
    provider.terminate(st.id)
    with pytest.raises(BadInput, match="does not exist"):
        provider.create_resource(opts(image="ami-00000000000000bad"))


def test_check_reports_identity_and_region(provider):
    result = provider.check()
    assert result.usable
    assert "account 123456789012" in result.detail and REGION in result.detail


# --- credentials ---------------------------------------------------------------------


def test_missing_credentials(monkeypatch, tmp_path):
    use_moto(monkeypatch, REGION)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert not AwsProvider.credentials_present()
    provider = AwsProvider()
    with pytest.raises(CredentialsError) as e:
        provider.list_resources()
    assert e.value.exit_code == 4 and "aws configure" in (e.value.hint or "")
    assert not provider.check().usable


def test_credentials_present_reads_the_standard_sources(monkeypatch, tmp_path):
    for var in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    assert not AwsProvider.credentials_present()
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert AwsProvider.credentials_present()
    monkeypatch.delenv("AWS_PROFILE")
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert not AwsProvider.credentials_present()  # a region alone is no credential
    config.write_text("[profile sso]\nsso_session = corp\n")
    assert AwsProvider.credentials_present()
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIA\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    assert AwsProvider.credentials_present()


def test_estimate_cost_from_the_catalog():
    p = AwsProvider(region="us-east-1")
    est = p.estimate_cost(opts(gpu=GpuSpec("H100", 8)), hours=2)
    assert est.hourly == 55.04 and est.total == 110.08 and "p5.48xlarge" in est.source
    unknown = p.estimate_cost(opts(gpu=None, instance_type="t3.micro"))
    assert unknown.hourly is None


def test_importing_the_provider_does_not_import_boto3():
    code = (
        "import sys, trainctl.registry as r; cls = r.get_class('aws'); "
        "cls.credentials_present(); print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

"""The aws provider's control plane: EC2 instances owned by trainctl.

A resource id is the instance id (``i-...``) for the provider's region, and
``REGION/i-...`` for an instance in another region. Every instance is launched
with the ownership tags on the instance and its volumes, IMDSv2 required, a root
volume deleted with the instance, the trainctl instance profile (SSM and the
staging bucket), ``InstanceInitiatedShutdownBehavior=terminate`` (a machine that
powers itself off stops billing) and a ClientToken, so a retried launch never
makes a second machine.
"""

from __future__ import annotations

import getpass
import re
import secrets
import socket
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ... import catalog
from ...capabilities import Capability, require
from ...errors import (
    BadInput,
    NoCapacity,
    NotFound,
    OperationFailed,
    ResourceLeft,
    TrainctlError,
)
from ...home import home
from ...provider import (
    TAG_MANAGED,
    TAG_NAME,
    TAG_OWNER,
    CheckResult,
    GroupNetwork,
    OwnObjectStore,
    Quote,
    Release,
    SelfRelease,
    StopStart,
    TrainingProvider,
)
from ...remote.base import Progress
from ...types import CostEstimate, CreateResourceOptions, ResourceState, ResourceStatus
from ...waiting import Seen, wait_ready
from . import groups, images, quotas, regions, setup
from .session import (
    aws_errors,
    client,
    client_error,
    credentials_present,
    ec2_endpoint,
    error_code,
    error_message,
    launch_refusal,
    launch_unclear,
    new_session,
    no_region,
    sdk_errors,
    translate,
)
from .settings import AwsSettings
from .states import STATES

#: tag holding the launch's idempotency token, to find what a failed launch made
TAG_LAUNCH = "trainctl-launch"
#: tag holding the id of the machine's IAM role: its staging prefix is
#: ``<role id>:<instance id>`` (setup.prefix)
TAG_ROLE_ID = "trainctl-role-id"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
#: DescribeInstances page size for list (the API's maximum)
PAGE_SIZE = 1000
#: a freshly made instance profile takes a few seconds to be usable by EC2
PROFILE_PROPAGATION_TRIES = 6
PROFILE_PROPAGATION_SECONDS = 5.0
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


@dataclass(frozen=True)
class LaunchPlan:
    """A launch decided on: the region, the instance type and the RunInstances
    parameters (without the market options and the ClientToken, which depend on
    spot). ``token`` is the launch tag's value: the ClientToken of the on-demand
    launch, and, with ``-spot`` added, of the spot one."""

    region: str
    instance_type: str
    params: dict[str, Any]
    token: str
    max_price: float | None


class AwsProvider(StopStart, SelfRelease, OwnObjectStore, GroupNetwork, TrainingProvider):
    name = "aws"
    capabilities = frozenset(
        {
            Capability.CREATE,
            Capability.SPOT,
            Capability.REGIONS,
            Capability.CUSTOM_IMAGE,
            Capability.GPU_SELECTION,
            Capability.INSTANCE_TYPE,
            Capability.DOWNLOAD,
            Capability.DISK_SIZE,
            Capability.TAGS,
        }
    )
    states = STATES
    offers = "trainctl.providers.aws.offers:fetch"
    bundled_offers = Path(__file__).with_name("offers.csv")
    #: a spot launch bids --max-price itself (SpotOptions.MaxPrice)
    spot_bids_max_price = True
    #: a spot instance's guard reads IMDS spot/instance-action (two minutes' warning)
    spot_notice = True
    machine_image_note = "an AMI (ami-...) or an SSM parameter (/...) is the machine's image"

    def job_image(self, image: str | None) -> str | None:
        """``--image`` is the AMI when it is an AMI id or an SSM parameter path (as
        before), else the container image the jobs run in on the default AMI."""
        if image is None or image.startswith(("ami-", "/")):
            return None
        return image

    def __init__(
        self,
        region: str | None = None,
        *,
        profile: str | None = None,
        progress: Progress | None = None,
        ready_timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        """``region``, ``profile`` and ``ready_timeout`` override the settings
        (``AwsSettings``: ``[providers.aws]``); ``ready_timeout`` is how long a
        machine may take to run with its SSM agent online; ``poll_interval``: the
        longest pause between two polls of a command (waits for a machine poll half
        as often)."""
        self.settings = AwsSettings.load()
        self._region = region or self.settings.region
        self._profile = profile or self.settings.profile
        self.progress = progress
        self.ready_timeout = float(ready_timeout or self.settings.ready_timeout)
        self.poll_interval = poll_interval
        self._sessions: dict[str, Any] = {}

    # --- sessions, identity, names -------------------------------------------------

    @classmethod
    def credentials_present(cls) -> bool:
        return credentials_present()

    def session(self, region: str | None = None) -> tuple[Any, str]:
        """A boto3 session (one per region) and the region it works in: ``region``, or
        the provider's, or the standard chain's default."""
        region = region or self._region or self.default_region
        if region not in self._sessions:
            self._sessions[region] = new_session(region, self._profile)
        return self._sessions[region], region

    @cached_property
    def default_region(self) -> str:
        session = new_session(None, self._profile)
        if not session.region_name:
            raise no_region()
        self._sessions.setdefault(session.region_name, session)
        return session.region_name

    @property
    def region(self) -> str:
        return self.session()[1]

    @cached_property
    def identity(self) -> dict[str, str]:
        session, region = self.session()
        with aws_errors("identify the AWS caller"):
            found = client(session, "sts", region).get_caller_identity()
        return {"account": found["Account"], "arn": found["Arn"]}

    def names(self, region: str) -> setup.Names:
        return setup.Names.for_account(
            self.identity["account"],
            region,
            bucket=self.settings.bucket,
            profile=self.settings.instance_profile,
        )

    @property
    def partition(self) -> str:
        return self.identity["arn"].split(":")[1]

    def check(self) -> CheckResult:
        try:
            region = self.region
            ident = self.identity
            session, _ = self.session()
            absent = setup.missing(session, region, self.names(region))
        except TrainctlError as e:
            return CheckResult(self.name, False, str(e))
        detail = f"account {ident['account']} as {ident['arn']}, region {region}"
        if absent:
            return CheckResult(
                self.name,
                False,
                f"{detail}; not set up: missing {', '.join(absent)} (run `trainctl aws setup`)",
            )
        return CheckResult(self.name, True, f"{detail}; instance profile and staging bucket ready")

    def setup(
        self, region: str | None = None, progress: Progress | None = None
    ) -> setup.SetupReport:
        """Create what the provider needs (idempotent); the report says what was made."""
        session, region = self.session(region)
        return setup.run_setup(
            session, region, self.names(region), partition=self.partition, progress=progress
        )

    # --- ids and statuses ----------------------------------------------------------

    def _parse(self, resource_id: str) -> tuple[str, str]:
        region, _, instance_id = str(resource_id).rpartition("/")
        if not _INSTANCE_ID.fullmatch(instance_id) or (region and not _REGION.fullmatch(region)):
            raise NotFound(f"no AWS instance {resource_id!r} (ids look like i-0123456789abcdef0)")
        return region or self.region, instance_id

    def _id(self, region: str, instance_id: str) -> str:
        return instance_id if region == self.region else f"{region}/{instance_id}"

    def _status(
        self, inst: dict[str, Any], region: str, offers: dict[str, Any] | None = None
    ) -> ResourceStatus:
        """``offers`` (instance type -> catalog offer) gives GPUs and price."""
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        raw = inst["State"]["Name"]
        state = self.state_of(raw)
        offers = _catalog_offers() if offers is None else offers
        known = offers.get(inst.get("InstanceType", ""))
        spot = _is_spot(inst)
        reason = inst.get("StateReason", {}).get("Message")
        return ResourceStatus(
            id=self._id(region, inst["InstanceId"]),
            provider=self.name,
            state=state,
            name=tags.get(TAG_NAME),
            reason=reason if state is not ResourceState.RUNNING else None,
            instance_type=inst.get("InstanceType"),
            gpu=known.gpu if known else None,
            gpu_count=known.gpu_count if known else 0,
            launch_time=inst.get("LaunchTime"),
            cost_per_hour=known.hourly(spot) if known else None,
            spot=spot,
            region=region,
            public_ip=inst.get("PublicIpAddress"),
            private_ip=inst.get("PrivateIpAddress"),
            tags=tags,
            raw_state=raw,
            details={
                "image": inst.get("ImageId"),
                "availability_zone": inst.get("Placement", {}).get("AvailabilityZone"),
            },
        )

    @classmethod
    def unsupported_reason(
        cls, capability: Capability, request: CreateResourceOptions | None = None
    ) -> str | None:
        """EC2 cannot stop a one-time spot instance (it can only end it)."""
        if capability is Capability.STOP_START and request is not None and request.spot:
            return (
                "AWS cannot stop a one-time spot machine; terminate it instead "
                "(a machine made without --spot can be stopped and started)"
            )
        return super().unsupported_reason(capability, request)

    @staticmethod
    def _describe(ec2: Any, instance_id: str) -> dict[str, Any] | None:
        with aws_errors(f"describe {instance_id}"):
            try:
                reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            except client_error() as e:
                if error_code(e).startswith("InvalidInstanceID"):
                    return None
                raise
        found = [i for r in reservations for i in r["Instances"]]
        return found[0] if found else None

    def _owned(self, resource_id: str) -> tuple[Any, str, str, dict[str, Any] | None]:
        """(ec2 client, region, instance id, instance or None when AWS does not know
        it); an instance trainctl does not own is refused."""
        region, instance_id = self._parse(resource_id)
        session, region = self.session(region)
        ec2 = client(session, "ec2", region)
        inst = self._describe(ec2, instance_id)
        if inst is not None:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            if tags.get(TAG_MANAGED) != "true":
                raise NotFound(f"{instance_id} is not a trainctl machine; trainctl leaves it alone")
        return ec2, region, instance_id, inst

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        _, region, _, inst = self._owned(resource_id)
        if inst is None:
            raise NotFound(f"no AWS instance {resource_id}")
        return self._status(inst, region)

    def list_resources(self) -> list[ResourceStatus]:
        """trainctl's live instances in the provider's region and every region trainctl
        has launched in: one DescribeInstances per page of up to 1000, per region."""
        offers = _catalog_offers()
        found: list[ResourceStatus] = []
        for region in sorted({self.region, *regions.remembered()}):
            session, region = self.session(region)
            pages = (
                client(session, "ec2", region)
                .get_paginator("describe_instances")
                .paginate(
                    Filters=[
                        {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
                        {"Name": "instance-state-name", "Values": LIVE_STATES},
                    ],
                    PaginationConfig={"PageSize": PAGE_SIZE},
                )
            )
            with aws_errors(f"list instances in {region}"):
                found += [
                    self._status(inst, region, offers)
                    for page in pages
                    for reservation in page["Reservations"]
                    for inst in reservation["Instances"]
                ]
        return found

    # --- create --------------------------------------------------------------------

    def validate_options(self, options: CreateResourceOptions) -> None:
        super().validate_options(options)
        if options.disk_gb is not None and not 1 <= options.disk_gb <= 16384:
            raise BadInput(f"disk size {options.disk_gb} GB is out of range (1-16384)")
        if not options.instance_type and not options.gpu:
            raise BadInput("give an instance type or a GPU, e.g. --gpu A10G:1")
        if options.instance_type and options.gpu:
            raise BadInput("give either an instance type or a GPU, not both")

    def plan(self, options: CreateResourceOptions) -> LaunchPlan:
        """The instance type (checked against the region), the setup, the image and
        the launch parameters: AWS is only read here, nothing is made. A machine of a
        group goes to the group's region, subnet and placement group."""
        group_region = options.group.network.get("region") if options.group else None
        session, region = self.session(options.region or group_region)
        placed, group_tags = (
            groups.launch_params(options.group, region) if options.group else ({}, {})
        )
        ec2, ssm = client(session, "ec2", region), client(session, "ssm", region)
        instance_type, arch = self._instance_type(ec2, options, region)
        names = self.names(region)
        absent, role_id = setup.inspect(session, region, names)
        if absent:
            raise OperationFailed(
                f"AWS is not set up for trainctl in {region}: missing {' and '.join(absent)}",
                hint=f"run `trainctl aws setup --region {region}`",
            )
        machine_image = None if self.job_image(options.image) else options.image
        image = images.find_image(ec2, ssm, arch, machine_image)
        name = options.name or f"trainctl-{secrets.token_hex(3)}"
        token = secrets.token_hex(16)
        tags = {
            **options.tags,
            **group_tags,
            "Name": name,
            TAG_MANAGED: "true",
            TAG_NAME: name,
            TAG_OWNER: _owner(),
            TAG_LAUNCH: token,
            **({TAG_ROLE_ID: role_id} if role_id else {}),
        }
        tag_list = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
        params: dict[str, Any] = {
            "ImageId": image["ImageId"],
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "IamInstanceProfile": {"Name": names.profile},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 2,  # containers on the machine reach IMDS too
            },
            "BlockDeviceMappings": [_root_volume(image, options.disk_gb)],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
            **placed,
        }
        return LaunchPlan(region, instance_type, params, token, options.max_price)

    def quote(self, plan: LaunchPlan, *, spot: bool) -> Quote:
        """The catalog's price of the instance type (live prices when refreshed)."""
        return Quote(catalog.price(self.name, plan.instance_type, spot=spot), plan.instance_type)

    def launch(
        self, plan: LaunchPlan, *, spot: bool, progress: Progress | None = None
    ) -> ResourceStatus:
        """Launch, then wait until the machine runs with its SSM agent online. A spot
        launch bids ``plan.max_price`` (without it, AWS's default: the on-demand
        price)."""
        say = progress or (lambda _line: None)
        session, region = self.session(plan.region)
        ec2 = client(session, "ec2", region)
        regions.remember(region)  # before the launch: list looks wherever a machine may be
        say(f"launching {plan.instance_type} in {region} from {plan.params['ImageId']}")
        warnings: list[str] = []
        if spot:
            inst = self._launch_spot(ec2, plan, say, warnings)
        else:
            inst = self._launch(ec2, plan.params, plan.token, say)
        launched = "spot" if _is_spot(inst) else "on-demand"
        say(f"launched {inst['InstanceId']} ({plan.instance_type}, {launched})")
        status = self._status(self._wait_usable(ec2, session, region, inst, say), region)
        status.warnings.extend(warnings)
        return status

    # --- groups --------------------------------------------------------------------

    def make_group_network(
        self, group: str, options: CreateResourceOptions, size: int
    ) -> dict[str, Any]:
        """A cluster placement group, a security group letting the group's machines
        reach each other, and one subnet for all of them, in the region of
        ``options`` (see ``groups``); the instance type is checked against the
        region first, so that a group that cannot be launched makes nothing."""
        self.validate_options(options)
        session, region = self.session(options.region)
        ec2 = client(session, "ec2", region)
        instance_type, _ = self._instance_type(ec2, options, region)
        return groups.make(ec2, region, group, instance_type, _owner())

    def release_group_network(self, group: str, network: dict[str, Any]) -> None:
        """Delete the group's security group and placement group, waiting (up to
        ``groups.RELEASE_TIMEOUT``, polling ten times less often than commands) while
        EC2 says a machine still uses them. Without ``network`` there is nothing to
        find: ``groups.make`` removes what it made before it fails."""
        if not network:
            return
        session, region = self.session(network.get("region"))
        groups.release(
            client(session, "ec2", region),
            network,
            timeout=groups.RELEASE_TIMEOUT,
            interval=self.poll_interval * 10,
            say=self.progress or (lambda _line: None),
        )

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        """From the catalog alone: ``plan`` reads AWS, and an estimate needs neither
        credentials nor a network."""
        return catalog.estimate(self.name, options, hours)

    def _wait_usable(
        self, ec2: Any, session: Any, region: str, inst: dict[str, Any], say: Progress
    ) -> dict[str, Any]:
        """Wait until the machine runs with its SSM agent online; one that never gets
        there (or goes away) is terminated, since it would bill without being usable."""
        instance_id = inst["InstanceId"]
        ssm = client(session, "ssm", region)

        def poll() -> tuple[dict[str, Any], str | None]:
            with aws_errors(f"wait for {instance_id}"):
                current = self._describe(ec2, instance_id) or inst
                if current["State"]["Name"] != "running":
                    return current, None
                found = ssm.describe_instance_information(
                    Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
                )["InstanceInformationList"]
            return current, found[0].get("PingStatus") if found else None

        def look(seen: tuple[dict[str, Any], str | None]) -> Seen:
            current, ping = seen
            raw = current["State"]["Name"]
            if raw in ("shutting-down", "terminated", "stopping", "stopped"):
                reason = current.get("StateReason", {}).get("Message") or raw
                return Seen(raw, failure=f"it is {raw}: {reason}")
            if raw != "running":
                return Seen(raw)
            return Seen(f"running, SSM agent {ping or 'not registered yet'}", ping == "Online")

        def release() -> None:
            with aws_errors(f"terminate {instance_id}"):
                ec2.terminate_instances(InstanceIds=[instance_id])

        try:
            current, _ = wait_ready(
                f"instance {instance_id}",
                poll,
                look,
                release=release,
                resource_id=instance_id,
                timeout=self.ready_timeout,
                interval=self.poll_interval * 2,
                progress=say,
            )
        except OperationFailed as e:
            e.hint = e.hint or (
                "its SSM agent needs the trainctl instance profile and outbound HTTPS "
                "to the SSM endpoints (a default VPC subnet with a public IP has both)"
            )
            raise
        return current

    def _instance_type(
        self, ec2: Any, options: CreateResourceOptions, region: str
    ) -> tuple[str, str]:
        """The instance type to launch and its architecture, checked against the region."""
        if options.instance_type:
            wanted = [options.instance_type]
        else:
            assert options.gpu is not None
            catalog.resolve(self.name, options.gpu)  # says what AWS has when nothing fits
            wanted = [o.offer_id for o in catalog.offers(self.name, options.gpu)]
        with aws_errors("look up instance types"):
            if options.instance_type:
                try:
                    info = ec2.describe_instance_types(InstanceTypes=wanted)["InstanceTypes"]
                except client_error() as e:
                    if error_code(e) == "InvalidInstanceType":
                        raise BadInput(f"unknown instance type {options.instance_type!r}") from None
                    raise
            offered = {
                o["InstanceType"]
                for o in ec2.describe_instance_type_offerings(
                    LocationType="region",
                    Filters=[{"Name": "instance-type", "Values": wanted}],
                )["InstanceTypeOfferings"]
            }
            chosen = next((t for t in wanted if t in offered), None)
            if chosen is None:
                what = options.instance_type or f"instance type with {options.gpu}"
                raise NoCapacity(
                    f"no {what} is offered in {region}"
                    + ("" if options.instance_type else f" (looked for {', '.join(wanted)})"),
                    hint="choose another region with --region",
                )
            if not options.instance_type:
                info = ec2.describe_instance_types(InstanceTypes=[chosen])["InstanceTypes"]
        archs = info[0].get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
        return chosen, "x86_64" if "x86_64" in archs else archs[0]

    def _launch_spot(
        self, ec2: Any, plan: LaunchPlan, say: Progress, warnings: list[str]
    ) -> dict[str, Any]:
        """One-time spot, bidding ``plan.max_price`` when given. No spot request is left
        open: after a failed launch, a request that cannot be closed ends the create
        in ``ResourceLeft``; after a successful one, it is a warning (in
        ``warnings``) naming the request, since the machine runs and must keep its
        record."""
        spot_options: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        if plan.max_price is not None:
            spot_options["MaxPrice"] = f"{plan.max_price:.4f}"
        instance_tags = plan.params["TagSpecifications"][0]["Tags"]
        params = {
            **plan.params,
            "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": spot_options},
            "TagSpecifications": [
                *plan.params["TagSpecifications"],
                {"ResourceType": "spot-instances-request", "Tags": instance_tags},
            ],
        }
        try:
            inst = self._launch(ec2, params, f"{plan.token}-spot", say)
        except NoCapacity as e:
            self._close_after_failure(ec2, plan.token, say, e)
            if isinstance(e, quotas.SpotQuotaReached):
                raise
            raise NoCapacity(
                f"no spot capacity for {plan.instance_type}: {e.message}",
                hint="retry later, or add --spot-fallback to take on-demand instead",
            ) from None
        except BaseException as e:
            self._close_after_failure(ec2, plan.token, say, e)
            raise
        try:
            self._close_spot_requests(ec2, plan.token, say)
        except TrainctlError as e:
            # the machine runs: failing now would leave it without a record
            request = inst.get("SpotInstanceRequestId") or f"tagged {TAG_LAUNCH}={plan.token}"
            warnings.append(
                f"launched {inst['InstanceId']} but could not check its spot request "
                f"{request} ({e}); if that request is still open it may launch another "
                "machine later: cancel it in the EC2 console"
            )
        return inst

    def _close_after_failure(
        self, ec2: Any, token: str, say: Progress, error: BaseException
    ) -> None:
        """Close the spot request of a failed launch; if that fails, the request may
        still launch a machine, so the create ends in ``ResourceLeft`` (its record is
        kept, and found by its name if the request is fulfilled)."""
        try:
            self._close_spot_requests(ec2, token, say)
        except TrainctlError as e:
            failed = error.message if isinstance(error, TrainctlError) else repr(error)
            raise ResourceLeft(
                f"{failed}; could not close the spot request tagged {TAG_LAUNCH}={token} "
                f"({e}): it may still launch a machine",
                hint="cancel the request in the EC2 console; `trainctl list --refresh` "
                "finds a machine it launches",
            ) from None

    def _close_spot_requests(self, ec2: Any, token: str, say: Progress) -> None:
        with aws_errors("close the spot request"):
            requests = ec2.describe_spot_instance_requests(
                Filters=[
                    {"Name": f"tag:{TAG_LAUNCH}", "Values": [token]},
                    {"Name": "state", "Values": ["open"]},
                ]
            )["SpotInstanceRequests"]
            if requests:
                ids = [r["SpotInstanceRequestId"] for r in requests]
                ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=ids)
                say(f"cancelled open spot request {', '.join(ids)}")

    def _launch(
        self, ec2: Any, params: dict[str, Any], client_token: str, say: Progress
    ) -> dict[str, Any]:
        """RunInstances with ``client_token``. botocore retries throttled and failed
        calls with the same token; if the outcome stays unknown, ``_recover`` finds
        the machine the call may have made."""
        for attempt in range(PROFILE_PROPAGATION_TRIES):
            try:
                return ec2.run_instances(**params, ClientToken=client_token)["Instances"][0]
            except client_error() as e:
                code, message = error_code(e), error_message(e)
                if (
                    code == "InvalidParameterValue"
                    and "iamInstanceProfile" in message
                    and attempt + 1 < PROFILE_PROPAGATION_TRIES
                ):
                    say("the instance profile is not visible to EC2 yet; retrying")
                    time.sleep(PROFILE_PROPAGATION_SECONDS)
                    continue
                if launch_unclear(e):
                    return self._recover(ec2, params, client_token, e, say)
                raise launch_refusal(e, params["InstanceType"]) from None
            except sdk_errors() as e:  # no answer at all
                return self._recover(ec2, params, client_token, e, say)
        raise OperationFailed("the instance profile never became visible to EC2")

    def _recover(
        self,
        ec2: Any,
        params: dict[str, Any],
        client_token: str,
        error: Exception,
        say: Progress,
    ) -> dict[str, Any]:
        """After a launch whose outcome is unknown: the machine it made, if any.

        The launch tag is looked for first; DescribeInstances is eventually
        consistent, so finding nothing proves nothing, and RunInstances is then
        called once more with the same ClientToken (AWS answers a repeated token with
        the original reservation, or launches now if nothing was made). If that is
        unclear too, ``ResourceLeft`` says a machine may exist, so that the caller
        keeps its record (``trainctl list --refresh`` finds it by its name)."""
        token = next(
            t["Value"]
            for spec in params["TagSpecifications"]
            for t in spec["Tags"]
            if t["Key"] == TAG_LAUNCH
        )
        say(f"the launch's outcome is unknown ({translate(error, 'launch')}); looking for it")
        try:
            reservations = ec2.describe_instances(
                Filters=[
                    {"Name": f"tag:{TAG_LAUNCH}", "Values": [token]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )["Reservations"]
        except sdk_errors():
            reservations = []
        found = [i for r in reservations for i in r["Instances"]]
        if found:
            return found[0]
        try:
            return ec2.run_instances(**params, ClientToken=client_token)["Instances"][0]
        except client_error() as e:
            if not launch_unclear(e):
                raise launch_refusal(e, params["InstanceType"]) from None
            error = e
        except sdk_errors() as e:
            error = e
        raise ResourceLeft(
            f"the launch of {params['InstanceType']} has an unknown outcome: "
            f"{translate(error, 'launch')}; a machine may exist"
        ) from None

    # --- lifecycle -----------------------------------------------------------------

    def terminate(self, resource_id: str) -> ResourceStatus:
        """Idempotent; returns once AWS reports shutting-down or terminated."""
        ec2, region, instance_id, inst = self._owned(resource_id)
        if inst is None:
            return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED, region=region)
        if inst["State"]["Name"] != "terminated":
            with aws_errors(f"terminate {instance_id}"):
                changes = ec2.terminate_instances(InstanceIds=[instance_id])["TerminatingInstances"]
            now = changes[0]["CurrentState"]["Name"] if changes else None
            if now not in ("shutting-down", "terminated"):
                raise OperationFailed(f"{instance_id} is still {now} after the terminate call")
            inst = {**inst, "State": {"Name": now}}
        status = self._status(inst, region)
        try:
            self._remote(region, inst).forget()
        except TrainctlError as e:
            # the machine is gone by now: a warning, never a failed terminate
            status.warnings.append(
                f"terminated {instance_id} but could not clean up its staging objects: {e}"
            )
        return status

    def stop(self, resource_id: str) -> ResourceStatus:
        return self._power(resource_id, "stop")

    def guard_release(self, status: ResourceStatus, action: str, *, until: float | None) -> Release:
        """The guard stops or terminates its own instance through EC2, with the
        instance profile's credentials (read from IMDSv2 on the machine): the role
        that `trainctl aws setup` makes may stop and terminate only instances tagged
        trainctl-managed. No credential leaves this machine."""
        _, instance_id = self._parse(status.id)
        request = {
            "kind": "aws-ec2",
            "action": "StopInstances" if action == "stop" else "TerminateInstances",
            "instance_id": instance_id,
            # an endpoint set for EC2 here (a VPC endpoint, a test's server) is the
            # machine's too; otherwise the guard uses its region's
            "endpoint": ec2_endpoint(),
        }
        return Release(action, request)

    def start(self, resource_id: str, *, progress: Progress | None = None) -> ResourceStatus:
        return self._power(resource_id, "start")

    def default_object_store(self, status: ResourceStatus) -> dict[str, Any]:
        """``--store default``: ``store/`` under the machine's own prefix of the
        staging bucket, which its role may already write and no other machine's may
        (``setup.staging_policy``), so nothing is granted and no key handed out.
        A shared role given ``s3:PutObject`` on a user's ``s3://bucket/prefix`` would
        let every trainctl machine of the account write there (and an instance role
        cannot be told apart by job): a user's own bucket takes a key the user scopes
        to it instead. ``terminate`` leaves this part of the prefix; the bucket's
        lifecycle rule removes it after ``setup.EXPIRE_DAYS``."""
        region, instance_id = self._parse(status.id)
        role_id = status.tags.get(TAG_ROLE_ID)
        if not role_id:
            raise OperationFailed(
                f"{instance_id} has no {TAG_ROLE_ID} tag: its staging prefix is unknown, so "
                "--store default cannot be used"
            )
        return {
            "bucket": self.names(region).bucket,
            "prefix": setup.store_prefix(role_id, instance_id),
            "region": region,
        }

    def object_store_credentials(self) -> dict[str, str]:
        """This client's AWS credentials (the ones that made the machine)."""
        session, _ = self.session()
        found = session.get_credentials()
        if found is None:
            raise OperationFailed("no AWS credentials to read the object store with")
        frozen = found.get_frozen_credentials()
        creds = {"AccessKeyId": frozen.access_key, "SecretAccessKey": frozen.secret_key}
        if frozen.token:
            creds["Token"] = frozen.token
        return creds

    def _power(self, resource_id: str, action: str) -> ResourceStatus:
        ec2, _, instance_id, inst = self._owned(resource_id)
        if inst is None:
            raise NotFound(f"no AWS instance {resource_id}")
        # the machine's own lifecycle, for a caller that skipped the record's check
        require(self, Capability.STOP_START, CreateResourceOptions(spot=_is_spot(inst)))
        with aws_errors(f"{action} {instance_id}"):
            getattr(ec2, f"{action}_instances")(InstanceIds=[instance_id])
        return self.get_resource_status(resource_id)

    def connect(self, resource_id: str) -> Any:
        ec2, region, instance_id, inst = self._owned(resource_id)
        if inst is None:
            raise NotFound(f"no AWS instance {resource_id}")
        state = self.state_of(inst["State"]["Name"])
        if state not in (ResourceState.RUNNING, ResourceState.STARTING):
            raise OperationFailed(
                f"{resource_id} is {inst['State']['Name']}",
                hint="start it with `trainctl start`" if state is ResourceState.STOPPED else None,
            )
        return self._remote(region, inst, ec2)

    def connect_to(self, status: ResourceStatus) -> Any:
        """A running trainctl instance is reached over SSM by the id, region and tags
        its status holds."""
        if status.state is ResourceState.RUNNING and status.tags.get(TAG_MANAGED) == "true":
            region, instance_id = self._parse(status.id)
            tags = [{"Key": k, "Value": v} for k, v in status.tags.items()]
            return self._remote(region, {"InstanceId": instance_id, "Tags": tags})
        return self.connect(status.id)

    def _remote(self, region: str, inst: dict[str, Any], ec2: Any = None) -> Any:
        """The machine's SSM remote; its staging prefix is the one its role's policy
        allows (a machine launched before role tags were set keeps the old layout)."""
        # imported here: SSM and its sync code are startup time that list and status
        # (which import this module) do not need
        from .ssm import SSMRemote

        session, region = self.session(region)
        instance_id = inst["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        role_id = tags.get(TAG_ROLE_ID)

        def instance_state() -> str | None:
            inst = self._describe(ec2 or client(session, "ec2", region), instance_id)
            return inst["State"]["Name"] if inst else None

        return SSMRemote(
            session,
            instance_id,
            region=region,
            bucket=self.names(region).bucket,
            prefix=setup.prefix(role_id, instance_id) if role_id else instance_id,
            state_dir=home() / "aws" / "sync",
            progress=self.progress,
            online_timeout=self.ready_timeout,
            poll_interval=self.poll_interval,
            instance_state=instance_state,
        )


def _is_spot(inst: dict[str, Any]) -> bool:
    return inst.get("InstanceLifecycle") == "spot"


def _owner() -> str:
    """Who launched the machine, for people reading the tags: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _catalog_offers() -> dict[str, Any]:
    """The price catalog's AWS offers by instance type (live prices when refreshed)."""
    return {o.offer_id: o for loaded in catalog.load("aws") for o in loaded.offers}


def _root_volume(image: dict[str, Any], disk_gb: int | None) -> dict[str, Any]:
    """The root volume mapping: ``disk_gb`` (default: the image's size), deleted with
    the instance."""
    root = image.get("RootDeviceName") or "/dev/sda1"
    image_gb = next(
        (
            m["Ebs"].get("VolumeSize")
            for m in image.get("BlockDeviceMappings", [])
            if m.get("DeviceName") == root and "Ebs" in m
        ),
        None,
    )
    if disk_gb is not None and image_gb and disk_gb < image_gb:
        raise BadInput(f"disk of {disk_gb} GB is smaller than the image's {image_gb} GB")
    ebs: dict[str, Any] = {"DeleteOnTermination": True, "VolumeType": "gp3"}
    if disk_gb or image_gb:
        ebs["VolumeSize"] = disk_gb or image_gb
    return {"DeviceName": root, "Ebs": ebs}

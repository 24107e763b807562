"""`trainctl aws setup`: what the aws provider needs in an account, made idempotently.

- an IAM role and instance profile for the machines, allowed what the SSM agent needs
  to take Run Command (``AGENT_POLICY``) and to read and write *its own prefix* of the
  staging buckets trainctl made, nothing else (no Parameter Store, no other machine's
  objects: the AWS-managed AmazonSSMManagedInstanceCore, which grants
  ``ssm:GetParameter(s)`` on ``*``, is detached from a role made by an older version);
  and to stop or terminate instances trainctl made (``release_policy``: the guard on
  each machine releases it through EC2 when its idle window, deadline or spend cap
  is reached);
- the staging bucket (private, objects expire after a day: everything in it is
  transient), through which code, command input and downloads travel.

Each machine's objects live under ``<role id>:<instance id>/``, which is what IAM's
``${aws:userid}`` holds for the credentials of an instance profile's role (IAM User
Guide, policy variables: "role-id:ec2-instance-id"), so the policy can scope each
machine to its own prefix without naming any machine.

``missing`` is the cheap check that ``create`` runs before launching anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...errors import OperationFailed
from ...provider import TAG_MANAGED
from ...remote.base import Progress
from .session import aws_errors, client, client_error, error_code

ROLE_NAME = "trainctl-instance"
PROFILE_NAME = "trainctl-instance"
STAGING_POLICY_NAME = "trainctl-staging"
AGENT_POLICY_NAME = "trainctl-ssm-agent"
RELEASE_POLICY_NAME = "trainctl-guard-release"
#: the managed policy older versions attached; detached by setup
SSM_CORE_POLICY = "AmazonSSMManagedInstanceCore"
#: what the SSM agent calls to register, report health and receive and answer Run
#: Command (amazon-ssm-agent: agent/health for UpdateInstanceInformation,
#: agent/runcommand/mds for ec2messages, the control channel for ssmmessages): the
#: messaging part of AmazonSSMManagedInstanceCore, without its Parameter Store,
#: document, association, inventory and patching actions
AGENT_ACTIONS = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
]
AGENT_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": AGENT_ACTIONS, "Resource": "*"}],
}
#: the staging prefix of the machine making a request (see the module docstring)
OWN_PREFIX = "${aws:userid}"
EXPIRE_DAYS = 1

_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def default_bucket(account: str, region: str) -> str:
    return f"trainctl-staging-{account}-{region}"


@dataclass(frozen=True)
class Names:
    """The names of what the provider needs in one account and region."""

    account: str
    bucket: str
    profile: str = PROFILE_NAME
    role: str = ROLE_NAME

    @classmethod
    def for_account(
        cls, account: str, region: str, *, bucket: str | None = None, profile: str = PROFILE_NAME
    ) -> Names:
        """The names in ``account`` and ``region``; ``bucket`` and ``profile`` are the
        configured ones (``AwsSettings``)."""
        return cls(
            account=account, bucket=bucket or default_bucket(account, region), profile=profile
        )


@dataclass
class SetupReport:
    region: str
    names: Names
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "bucket": self.names.bucket,
            "instance_profile": self.names.profile,
            "role": self.names.role,
            "created": self.created,
            "present": self.present,
            "removed": self.removed,
        }


def staging_policy(buckets: list[str], partition: str = "aws") -> dict[str, Any]:
    """Read and write on the machine's own prefix of each of ``buckets``, and list
    only that prefix; nothing else."""
    arns = [f"arn:{partition}:s3:::{b}" for b in sorted(set(buckets))]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"{arn}/{OWN_PREFIX}/*" for arn in arns],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": arns,
                "Condition": {"StringLike": {"s3:prefix": [f"{OWN_PREFIX}/*"]}},
            },
        ],
    }


def release_policy(account: str, partition: str = "aws") -> dict[str, Any]:
    """Stop and terminate, only on the account's instances tagged as trainctl's.

    EC2 evaluates the global ``aws:ResourceTag/<key>`` against the instance's tags
    for both actions (Service Authorization Reference, Amazon EC2: the ``instance``
    resource type lists ``aws:ResourceTag/${TagKey}``; the IAM User Guide's examples
    for starting and stopping EC2 instances by tag use it with ``ec2:StopInstances``).
    A request naming an untagged instance, or one tagged otherwise, is denied."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ec2:StopInstances", "ec2:TerminateInstances"],
                "Resource": f"arn:{partition}:ec2:*:{account}:instance/*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_MANAGED}": "true"}},
            }
        ],
    }


def _policy_buckets(document: dict[str, Any]) -> set[str]:
    """The buckets a staging policy names; a pattern (``*``, from older versions,
    which covered every bucket of that name) is dropped."""
    found = set()
    for statement in document.get("Statement", []):
        resources = statement.get("Resource", [])
        for arn in [resources] if isinstance(resources, str) else resources:
            bucket = arn.split(":::", 1)[-1].split("/", 1)[0]
            if "*" not in bucket:
                found.add(bucket)
    return found


def prefix(role_id: str, instance_id: str) -> str:
    """A machine's staging prefix (without the final ``/``): ``${aws:userid}`` of its
    role's credentials."""
    return f"{role_id}:{instance_id}"


#: the part of a machine's staging prefix its guard saves jobs' work to (``--store
#: default``), which terminating the machine leaves
STORE_PART = "store"


def store_prefix(role_id: str, instance_id: str) -> str:
    return f"{prefix(role_id, instance_id)}/{STORE_PART}"


def missing(session: Any, region: str, names: Names) -> list[str]:
    """What ``setup`` would still have to make (a check the caller cannot do counts as
    present: the launch itself will then say what is wrong)."""
    return inspect(session, region, names)[0]


def inspect(session: Any, region: str, names: Names) -> tuple[list[str], str | None]:
    """``missing``, and the id of the role in the instance profile (None when it
    cannot be read: a machine then gets the old staging layout, and a clear error
    if the role forbids it). A role made before the guard released machines lacks
    the release policy: without it a machine could not stop itself, so it counts
    as missing."""
    iam, s3 = client(session, "iam"), client(session, "s3", region)
    absent = []
    role_id = None
    with aws_errors("check the trainctl instance profile and staging bucket"):
        try:
            profile = iam.get_instance_profile(InstanceProfileName=names.profile)
            roles = profile["InstanceProfile"].get("Roles", [])
            role_id = roles[0]["RoleId"] if roles else None
            if roles:
                role = roles[0]["RoleName"]
                if _get_inline(iam, role, RELEASE_POLICY_NAME) is None:
                    absent.append(f"policy {RELEASE_POLICY_NAME} on role {role}")
        except client_error() as e:
            if error_code(e) == "NoSuchEntity":
                absent.append(f"instance profile {names.profile}")
            elif error_code(e) not in ("AccessDenied", "AccessDeniedException"):
                raise
        try:
            s3.head_bucket(Bucket=names.bucket)
        except client_error() as e:
            if error_code(e) in ("404", "NoSuchBucket", "NotFound"):
                absent.append(f"staging bucket {names.bucket}")
            elif error_code(e) not in ("403", "AccessDenied"):
                raise
    return absent, role_id


def run_setup(
    session: Any,
    region: str,
    names: Names,
    *,
    partition: str = "aws",
    progress: Progress | None = None,
) -> SetupReport:
    report = SetupReport(region, names)
    say = progress or (lambda _line: None)
    with aws_errors("set up the trainctl role, instance profile and staging bucket"):
        _role(client(session, "iam"), names, partition, report, say)
        _bucket(client(session, "s3", region), region, names.bucket, report, say)
    return report


def _note(report: SetupReport, say: Progress, made: bool, what: str) -> None:
    (report.created if made else report.present).append(what)
    if made:
        say(f"created {what}")


def _role(iam: Any, names: Names, partition: str, report: SetupReport, say: Progress) -> None:
    tags = [{"Key": TAG_MANAGED, "Value": "true"}]
    try:
        iam.get_role(RoleName=names.role)
        made = False
    except client_error() as e:
        if error_code(e) != "NoSuchEntity":
            raise
        iam.create_role(
            RoleName=names.role,
            AssumeRolePolicyDocument=json.dumps(_TRUST),
            Description="trainctl training machines: SSM and the staging bucket",
            Tags=tags,
        )
        made = True
    _note(report, say, made, f"IAM role {names.role}")

    core = f"arn:{partition}:iam::aws:policy/{SSM_CORE_POLICY}"
    attached = iam.list_attached_role_policies(RoleName=names.role)["AttachedPolicies"]
    if core in {p["PolicyArn"] for p in attached}:
        iam.detach_role_policy(RoleName=names.role, PolicyArn=core)
        what = f"policy {SSM_CORE_POLICY} on role {names.role} (it grants more than needed)"
        report.removed.append(what)
        say(f"removed {what}")
    made = _put_inline(iam, names.role, AGENT_POLICY_NAME, AGENT_POLICY)
    _note(report, say, made, f"policy {AGENT_POLICY_NAME} (SSM agent messaging only)")

    # The role serves every region: it keeps the buckets it already allows.
    current = _get_inline(iam, names.role, STAGING_POLICY_NAME)
    buckets = {names.bucket} | (_policy_buckets(current) if current else set())
    wanted = staging_policy(sorted(buckets), partition)
    made = _put_inline(iam, names.role, STAGING_POLICY_NAME, wanted, current=current)
    _note(report, say, made, f"policy {STAGING_POLICY_NAME} (each machine's own prefix only)")

    wanted = release_policy(names.account, partition)
    made = _put_inline(iam, names.role, RELEASE_POLICY_NAME, wanted)
    _note(
        report, say, made, f"policy {RELEASE_POLICY_NAME} (stop or terminate trainctl's instances)"
    )

    try:
        profile = iam.get_instance_profile(InstanceProfileName=names.profile)["InstanceProfile"]
        made = False
    except client_error() as e:
        if error_code(e) != "NoSuchEntity":
            raise
        profile = iam.create_instance_profile(InstanceProfileName=names.profile, Tags=tags)[
            "InstanceProfile"
        ]
        made = True
    _note(report, say, made, f"instance profile {names.profile}")
    if names.role not in {r["RoleName"] for r in profile.get("Roles", [])}:
        if profile.get("Roles"):
            other = profile["Roles"][0]["RoleName"]
            raise OperationFailed(
                f"instance profile {names.profile} already holds role {other}",
                hint="set instance_profile in [providers.aws] to another name",
            )
        iam.add_role_to_instance_profile(InstanceProfileName=names.profile, RoleName=names.role)
        _note(report, say, True, f"role {names.role} in instance profile {names.profile}")


def _put_inline(
    iam: Any, role: str, name: str, wanted: dict[str, Any], *, current: Any = ...
) -> bool:
    """Make the role's inline policy ``name`` read ``wanted`` (``current``: what it
    reads now, when already asked); whether it had to be written."""
    if current is ...:
        current = _get_inline(iam, role, name)
    if current == wanted:
        return False
    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(wanted))
    return True


def _get_inline(iam: Any, role: str, name: str) -> dict[str, Any] | None:
    """An inline policy of ``role`` as a document (None when there is none)."""
    try:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    except client_error() as e:
        if error_code(e) != "NoSuchEntity":
            raise
        return None
    return json.loads(document) if isinstance(document, str) else document


def _bucket(s3: Any, region: str, bucket: str, report: SetupReport, say: Progress) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        _note(report, say, False, f"staging bucket {bucket}")
        return
    except client_error() as e:
        if error_code(e) in ("403", "AccessDenied"):
            raise OperationFailed(
                f"bucket {bucket} exists but this account cannot use it",
                hint="set bucket in [providers.aws] to a name of your own",
            ) from None
        if error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**args)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "trainctl-staging-expiry",
                    "Filter": {"Prefix": ""},
                    "Status": "Enabled",
                    "Expiration": {"Days": EXPIRE_DAYS},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": EXPIRE_DAYS},
                }
            ]
        },
    )
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": TAG_MANAGED, "Value": "true"}]}
    )
    _note(report, say, True, f"staging bucket {bucket} (private, objects expire after a day)")

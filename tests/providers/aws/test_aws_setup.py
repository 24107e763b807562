"""`trainctl aws setup` against moto: what it makes, idempotence, the CLI."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from aws_support import server_url, use_moto
from cli_helpers import trainctl
from trainctl.errors import OperationFailed
from trainctl.providers.aws.session import new_session
from trainctl.providers.aws.setup import _TRUST, Names, missing, release_policy, run_setup

REGION = "ap-south-1"


def test_setup_makes_the_role_profile_and_bucket_once(monkeypatch):
    use_moto(monkeypatch, REGION)
    names = Names("123456789012", "trainctl-staging-test-once", "tp-once", "tr-once")
    session = new_session(REGION)
    first = run_setup(session, REGION, names)
    assert first.created == [
        "IAM role tr-once",
        "policy trainctl-ssm-agent (SSM agent messaging only)",
        "policy trainctl-staging (each machine's own prefix only)",
        "policy trainctl-guard-release (stop or terminate trainctl's instances)",
        "instance profile tp-once",
        "role tr-once in instance profile tp-once",
        "staging bucket trainctl-staging-test-once (private, objects expire after a day)",
    ]
    again = run_setup(session, REGION, names)
    assert again.created == [] and len(again.present) == 6
    assert missing(session, REGION, names) == []

    iam = boto3.client("iam")
    trust = iam.get_role(RoleName="tr-once")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert iam.list_attached_role_policies(RoleName="tr-once")["AttachedPolicies"] == []
    _assert_narrow(iam, "tr-once", ["trainctl-staging-test-once"])
    s3 = boto3.client("s3", region_name=REGION)
    block = s3.get_public_access_block(Bucket="trainctl-staging-test-once")
    assert all(block["PublicAccessBlockConfiguration"].values())
    rules = s3.get_bucket_lifecycle_configuration(Bucket="trainctl-staging-test-once")["Rules"]
    assert rules[0]["Expiration"]["Days"] == 1


def _assert_narrow(iam, role: str, buckets: list[str]) -> None:
    """The role can take Run Command and use its own prefix of ``buckets``; nothing more."""
    agent = iam.get_role_policy(RoleName=role, PolicyName="trainctl-ssm-agent")["PolicyDocument"]
    (grant,) = agent["Statement"]
    assert grant["Effect"] == "Allow" and "ssm:UpdateInstanceInformation" in grant["Action"]
    assert {a.split(":")[0] for a in grant["Action"]} == {"ssm", "ssmmessages", "ec2messages"}
    ssm = [a for a in grant["Action"] if a.startswith("ssm:")]
    assert ssm == ["ssm:UpdateInstanceInformation"]  # no Parameter Store, no documents
    assert not [a for a in grant["Action"] if "*" in a]

    staging = iam.get_role_policy(RoleName=role, PolicyName="trainctl-staging")["PolicyDocument"]
    objects, listing = staging["Statement"]
    assert objects["Resource"] == [f"arn:aws:s3:::{b}/${{aws:userid}}/*" for b in buckets]
    assert sorted(objects["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == [f"arn:aws:s3:::{b}" for b in buckets]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["${aws:userid}/*"]}}

    release = iam.get_role_policy(RoleName=role, PolicyName="trainctl-guard-release")
    assert release["PolicyDocument"] == release_policy("123456789012")


def test_the_release_policy_stops_or_terminates_only_trainctl_instances():
    (grant,) = release_policy("123456789012")["Statement"]
    assert grant["Effect"] == "Allow"
    assert sorted(grant["Action"]) == ["ec2:StopInstances", "ec2:TerminateInstances"]
    assert grant["Resource"] == "arn:aws:ec2:*:123456789012:instance/*"
    assert grant["Condition"] == {"StringEquals": {"aws:ResourceTag/trainctl-managed": "true"}}
    (china,) = release_policy("123456789012", "aws-cn")["Statement"]
    assert china["Resource"] == "arn:aws-cn:ec2:*:123456789012:instance/*"


def test_setup_narrows_a_role_made_by_an_older_version(monkeypatch):
    use_moto(monkeypatch, REGION)
    iam = boto3.client("iam")
    iam.create_role(RoleName="tr-old", AssumeRolePolicyDocument=json.dumps(_TRUST))
    core = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    iam.attach_role_policy(RoleName="tr-old", PolicyArn=core)
    old = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [
                    "arn:aws:s3:::trainctl-staging-123456789012-*/*",
                    "arn:aws:s3:::trainctl-staging-test-elsewhere/*",
                ],
            },
        ],
    }
    iam.put_role_policy(
        RoleName="tr-old", PolicyName="trainctl-staging", PolicyDocument=json.dumps(old)
    )
    iam.create_instance_profile(InstanceProfileName="tp-old")
    iam.add_role_to_instance_profile(InstanceProfileName="tp-old", RoleName="tr-old")
    names = Names("123456789012", "trainctl-staging-test-old", "tp-old", "tr-old")
    assert "policy trainctl-guard-release on role tr-old" in missing(
        new_session(REGION), REGION, names
    )
    lines: list[str] = []
    report = run_setup(new_session(REGION), REGION, names, progress=lines.append)
    assert "IAM role tr-old" in report.present
    release = "policy trainctl-guard-release (stop or terminate trainctl's instances)"
    assert release in report.created and f"created {release}" in lines
    assert report.removed == [
        "policy AmazonSSMManagedInstanceCore on role tr-old (it grants more than needed)"
    ]
    assert lines[0] == "removed " + report.removed[0]
    assert iam.list_attached_role_policies(RoleName="tr-old")["AttachedPolicies"] == []
    # the bucket it named stays; the account-wide pattern goes
    _assert_narrow(iam, "tr-old", ["trainctl-staging-test-elsewhere", "trainctl-staging-test-old"])
    assert run_setup(new_session(REGION), REGION, names).created == []


def test_a_profile_holding_another_role_is_refused(monkeypatch):
    use_moto(monkeypatch, REGION)
    iam = boto3.client("iam")
    iam.create_role(RoleName="someone-else", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="tp-taken")
    iam.add_role_to_instance_profile(InstanceProfileName="tp-taken", RoleName="someone-else")
    names = Names("123456789012", "trainctl-staging-test-taken", "tp-taken", "tr-taken")
    with pytest.raises(OperationFailed, match="already holds role someone-else"):
        run_setup(new_session(REGION), REGION, names)


def _cli_env(monkeypatch, **extra: str) -> None:
    """The environment the CLI subprocess inherits: moto's endpoint, nothing ambient."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "AWS_ENDPOINT_URL": server_url(),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **extra,
    }.items():
        monkeypatch.setenv(key, value)


def test_cli_aws_setup(monkeypatch):
    _cli_env(monkeypatch, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    first = trainctl("aws", "setup", "--region", "sa-east-1", "--json")
    assert first.code == 0, first.err
    doc = first.json()
    assert doc["account"] == "123456789012" and doc["region"] == "sa-east-1"
    assert doc["bucket"] == "trainctl-staging-123456789012-sa-east-1"
    assert f"staging bucket {doc['bucket']} (private, objects expire after a day)" in doc["created"]
    again = trainctl("aws", "setup", "--region", "sa-east-1")
    assert again.code == 0 and "nothing to do" in again.out
    assert "present  instance profile trainctl-instance" in again.out


def test_cli_aws_setup_without_credentials(monkeypatch):
    _cli_env(monkeypatch, AWS_DEFAULT_REGION="sa-east-1")
    r = trainctl("aws", "setup", "--json")
    assert r.code == 4 and r.out == ""
    error = r.error()
    assert error["type"] == "credentials" and "aws configure" in error["hint"]

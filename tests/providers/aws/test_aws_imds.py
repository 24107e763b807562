"""The IMDSv2 stand-in the sandboxed machines reach, and what stopping or terminating
an instance does to its sandbox."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher

from aws_support import ACCOUNT, agent, imds, publish_dlami, set_up, use_moto
from ssm_agent import Halt
from trainctl.providers.aws import AwsProvider
from trainctl.types import CreateResourceOptions, GpuSpec

REGION = "ap-southeast-2"
ROLE = "trainctl-instance"


def _create(provider: AwsProvider) -> str:
    return provider.create_resource(CreateResourceOptions(gpu=GpuSpec("T4", 1))).id


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Two machines as trainctl makes them (instance profile, tags), left running."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINCTL_HOME", str(tmp_path_factory.mktemp("home")))
        set_up(mp, REGION)
        provider = AwsProvider(poll_interval=0.05)
        ids = [_create(provider), _create(provider)]
        yield ids
        for rid in ids:
            provider.terminate(rid)


@pytest.fixture(autouse=True)
def _moto(monkeypatch) -> None:
    use_moto(monkeypatch, REGION)


def _call(method: str, url: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def _token(instance_id: str, ttl: str | None = "21600") -> tuple[int, str, dict[str, str]]:
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    return _call("PUT", imds().endpoint(instance_id) + "latest/api/token", headers)


def _get(instance_id: str, path: str, token: str | None) -> tuple[int, str]:
    headers = {} if token is None else {"X-aws-ec2-metadata-token": token}
    status, body, _ = _call("GET", imds().endpoint(instance_id) + path, headers)
    return status, body


def _session_token(instance_id: str) -> str:
    status, token, _ = _token(instance_id)
    assert status == 200
    return token


def test_each_instance_gets_its_own_id_and_region(machines):
    for instance_id in machines:
        status, token, headers = _token(instance_id)
        assert status == 200 and headers["Content-Type"] == "text/plain"
        assert headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
        assert _get(instance_id, "latest/meta-data/instance-id", token) == (200, instance_id)
        assert _get(instance_id, "latest/meta-data/placement/region", token) == (200, REGION)
    assert machines[0] != machines[1]


def test_metadata_needs_a_token_of_the_same_instance(machines):
    first, second = machines
    assert _get(first, "latest/meta-data/instance-id", None) == (401, "Unauthorized")
    assert _get(first, "latest/meta-data/instance-id", "made-up")[0] == 401
    assert _get(first, "latest/meta-data/instance-id", _session_token(second))[0] == 401


def test_a_token_expires_after_its_ttl(machines):
    status, token, _ = _token(machines[0], "1")
    assert status == 200
    assert _get(machines[0], "latest/meta-data/instance-id", token)[0] == 200
    time.sleep(1.1)
    assert _get(machines[0], "latest/meta-data/instance-id", token)[0] == 401


@pytest.mark.parametrize("ttl", [None, "0", "21601", "ten", "-5"])
def test_a_token_needs_a_ttl_of_one_second_to_six_hours(machines, ttl):
    assert _token(machines[0], ttl)[0] == 400


def test_unknown_paths_and_instances_are_not_found(machines):
    token = _session_token(machines[0])
    assert _get(machines[0], "latest/meta-data/no-such-thing", token)[0] == 404
    assert _get(machines[0], "latest/meta-data/iam/security-credentials/other-role", token)[0] == (
        404
    )
    assert _token("i-0000000000000dead")[0] == 404


def test_the_role_and_its_credentials(machines):
    instance_id = machines[0]
    token = _session_token(instance_id)
    assert _get(instance_id, "latest/meta-data/iam/security-credentials/", token) == (200, ROLE)
    status, body = _get(instance_id, f"latest/meta-data/iam/security-credentials/{ROLE}", token)
    assert status == 200
    creds = json.loads(body)
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert {"LastUpdated", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"} <= set(creds)
    expiry = datetime.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert expiry.replace(tzinfo=timezone.utc) > datetime.now(timezone.utc)
    assert imds().instance_of(creds["AccessKeyId"]) == instance_id
    # asked again, the same credentials; another instance gets its own
    again = json.loads(
        _get(instance_id, f"latest/meta-data/iam/security-credentials/{ROLE}", token)[1]
    )
    assert again["AccessKeyId"] == creds["AccessKeyId"]
    other = machines[1]
    theirs = json.loads(
        _get(other, f"latest/meta-data/iam/security-credentials/{ROLE}", _session_token(other))[1]
    )
    assert theirs["AccessKeyId"] != creds["AccessKeyId"]
    assert imds().instance_of(theirs["AccessKeyId"]) == other

    # they are the role's, for this instance: aws:userid is "<role id>:<instance id>"
    sts = boto3.client(
        "sts",
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["Token"],
    )
    role_id = boto3.client("iam").get_role(RoleName=ROLE)["Role"]["RoleId"]
    me = sts.get_caller_identity()
    assert me["UserId"] == f"{role_id}:{instance_id}" and me["Account"] == ACCOUNT


def test_the_identity_document(machines):
    instance_id = machines[1]
    status, body = _get(
        instance_id, "latest/dynamic/instance-identity/document", _session_token(instance_id)
    )
    document = json.loads(body)
    assert status == 200
    assert document["instanceId"] == instance_id
    assert document["region"] == REGION and document["accountId"] == ACCOUNT
    assert document["availabilityZone"].startswith(REGION)


def test_botocore_reads_it_as_it_reads_imds(machines):
    instance_id = machines[0]
    config = {"ec2_metadata_service_endpoint": imds().endpoint(instance_id)}
    creds = InstanceMetadataFetcher(config=config, env={}).retrieve_iam_role_credentials()
    assert creds["role_name"] == ROLE
    assert imds().instance_of(creds["access_key"]) == instance_id
    assert InstanceMetadataRegionFetcher(config=config, env={}).retrieve_region() == REGION


def test_an_instance_without_a_profile_has_no_credentials(monkeypatch):
    set_up(monkeypatch, REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    image = publish_dlami(REGION)
    (bare,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"]
    instance_id = bare["InstanceId"]
    try:
        token = _session_token(instance_id)
        assert _get(instance_id, "latest/meta-data/instance-id", token) == (200, instance_id)
        assert _get(instance_id, "latest/meta-data/iam/security-credentials/", token)[0] == 404
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])


# --- stopping and terminating ------------------------------------------------------


def _sandbox_pids(instance_id: str) -> list[int]:
    """The processes running in ``instance_id``'s sandbox."""
    marker = f"HOME={agent().home(instance_id)}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(pid))
    return found


def _wait(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _invocation(ssm, command_id: str, instance_id: str) -> dict:
    return ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)


def _sleep_on(ssm, instance_id: str) -> str:
    """Start ``sleep 60`` through SSM on ``instance_id``; its command id once it runs."""
    before = set(_sandbox_pids(instance_id))
    command_id = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["sleep 60"]},
    )["Command"]["CommandId"]
    assert _wait(lambda: set(_sandbox_pids(instance_id)) - before)
    return command_id


def test_stopping_an_instance_kills_what_runs_on_it_and_nothing_else(monkeypatch):
    set_up(monkeypatch, REGION)
    provider = AwsProvider(poll_interval=0.05)
    stopped, other = _create(provider), _create(provider)
    ssm = boto3.client("ssm", region_name=REGION)
    try:
        on_stopped, on_other = _sleep_on(ssm, stopped), _sleep_on(ssm, other)
        boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])
        assert _wait(lambda: not _sandbox_pids(stopped))
        assert _wait(lambda: _invocation(ssm, on_stopped, stopped)["Status"] != "InProgress")
        killed = _invocation(ssm, on_stopped, stopped)
        assert killed["Status"] == "Failed" and "signal: killed" in killed["StandardErrorContent"]
        assert Halt("stop", REGION, [stopped], "testing") in agent().halts

        assert _sandbox_pids(other)
        assert _invocation(ssm, on_other, other)["Status"] == "InProgress"
        provider.terminate(other)
        assert _wait(lambda: not _sandbox_pids(other))
        assert any(h.action == "terminate" and h.instance_ids == [other] for h in agent().halts)
    finally:
        provider.terminate(stopped)
        provider.terminate(other)


_STOP_ITSELF = """
import json, os, urllib.request
base = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
put = urllib.request.Request(
    base + "latest/api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
)
token = urllib.request.urlopen(put).read().decode()
def get(path):
    req = urllib.request.Request(base + path, headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(req).read().decode()
me, region = get("latest/meta-data/instance-id"), get("latest/meta-data/placement/region")
keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # the profile's credentials, then
env = {k: v for k, v in os.environ.items() if k not in keys}
os.execvpe("aws", ["aws", "ec2", "stop-instances", "--region", region, "--instance-ids", me], env)
"""


def test_a_machine_stops_itself_with_its_profiles_credentials(monkeypatch):
    set_up(monkeypatch, REGION)
    provider = AwsProvider(poll_interval=0.05)
    instance_id = _create(provider)
    ssm = boto3.client("ssm", region_name=REGION)
    try:
        command_id = ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [f"python3 - <<'EOF'\n{_STOP_ITSELF}\nEOF"]},
        )["Command"]["CommandId"]
        assert _wait(
            lambda: _invocation(ssm, command_id, instance_id)["Status"] != "InProgress", 60
        )
        (halt,) = [h for h in agent().halts if h.instance_ids == [instance_id]]
        assert halt.action == "stop" and halt.access_key is not None
        assert imds().instance_of(halt.access_key) == instance_id
        state = boto3.client("ec2", region_name=REGION).describe_instances(
            InstanceIds=[instance_id]
        )["Reservations"][0]["Instances"][0]["State"]["Name"]
        assert state in ("stopping", "stopped")
    finally:
        provider.terminate(instance_id)

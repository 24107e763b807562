"""The aws provider through the real entry point: create, list, status, terminate."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys

import boto3
import pytest

from aws_support import HTML_PAGE, FaultProxy, agent, instance, set_up
from cli_helpers import trainctl

REGION = "eu-central-1"


def test_create_list_status_terminate(monkeypatch):
    set_up(monkeypatch, REGION)
    made = trainctl(
        "create",
        "--provider",
        "aws",
        "--gpu",
        "T4",
        "--name",
        "cli-box",
        "--tag",
        "team=ml",
        "--json",
    )
    assert made.code == 0, made.err
    record = made.json()
    rid = record["id"]
    assert rid.startswith("i-") and record["provider"] == "aws"
    assert "launched " + rid in made.err  # progress on stderr, the document on stdout

    listed = trainctl("list", "--refresh", "--provider", "aws", "--json").json()
    (row,) = [r for r in listed["resources"] if r["id"] == rid]
    assert row["state"] == "running"

    status = trainctl("status", "cli-box", "--json").json()
    assert status["instance_type"] == "g4dn.xlarge" and status["tags"]["team"] == "ml"

    gone = trainctl("terminate", "cli-box", "-y", "--json")
    assert gone.code == 0 and gone.json()["state"] in ("terminating", "terminated")
    assert instance(REGION, rid).state in ("shutting-down", "terminated")


def test_check_reports_identity_and_region(monkeypatch):
    set_up(monkeypatch, REGION)
    r = trainctl("check", "--provider", "aws", "--json")
    (aws,) = r.json()["providers"]
    assert aws["usable"] and "account 123456789012" in aws["detail"] and REGION in aws["detail"]


@pytest.fixture
def proxy(monkeypatch):
    """A fault-injecting proxy on loopback between the CLI and moto."""
    found = FaultProxy(set_up(monkeypatch, REGION))
    # every API but S3, whose streamed uploads (a guard's policy, a job's spec) this
    # proxy does not forward; S3 goes to moto directly
    for service in ("EC2", "SSM", "STS", "IAM"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", found.url)
    yield found
    found.close()


_BAD_ANSWERS = {
    "html": lambda: HTML_PAGE,
    "cut": lambda: lambda body: body[: len(body) // 2],
    "empty": lambda: (200, "text/xml", b""),
    "xhtml": lambda: (200, "text/html", b"<html><p>Please log in</p></html>"),
}


def test_an_answer_that_is_not_xml_is_a_one_line_error(proxy):
    made = trainctl("create", "--provider", "aws", "--gpu", "T4", "--name", "xml-box", "--json")
    assert made.code == 0, made.err
    for answer, bad in sorted(_BAD_ANSWERS.items()):
        chosen = bad()
        proxy.fault = lambda _m, _p, _h, body, chosen=chosen: (
            chosen if b"Action=DescribeInstances" in body else None
        )
        r = trainctl("status", "xml-box")
        assert r.code == 1, (answer, r.err)
        (line,) = r.err.strip().splitlines()
        assert "DescribeInstances" in line and "internal error" not in line, (answer, line)
    proxy.fault = lambda *_: None
    assert trainctl("terminate", "xml-box", "-y").code == 0


def test_an_answer_that_is_not_json_is_a_one_line_error(proxy):
    def fault(_method, _path, headers, _body):
        target = headers.get("X-Amz-Target", "")
        return HTML_PAGE if target.endswith(".GetParameter") else None

    proxy.fault = fault
    r = trainctl("create", "--provider", "aws", "--gpu", "T4", "--name", "html-box", "--json")
    assert r.code == 1, r.err
    assert proxy.faulted and "internal error" not in r.err and "Traceback" not in r.err
    assert "GetParameter" in r.err.strip().splitlines()[-1]
    listed = trainctl("list", "--refresh", "--provider", "aws", "--json").json()
    assert not [m for m in listed["resources"] if m.get("name") == "html-box"]
    assert json.loads(r.err.strip().splitlines()[-1])["error"]


def test_a_kill_at_the_worst_moment_leaves_no_secret_in_the_bucket(monkeypatch):
    """``train -e`` killed (-9) while its job spec waits in the staging bucket: the
    object left there holds no secret, and sits under the machine's own prefix."""
    set_up(monkeypatch, REGION)
    made = trainctl("create", "--provider", "aws", "--gpu", "T4", "--name", "sealed", "--json")
    assert made.code == 0, made.err
    rid = made.json()["id"]
    secret = "s3cr3t-" + os.urandom(8).hex()
    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"trainctl-staging-123456789012-{REGION}"

    def staged() -> list[str]:
        found = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return [o["Key"] for o in found if f":{rid}/in/" in o["Key"]]

    before = set(staged())
    agent().released.clear()
    agent().holding.clear()
    agent().hold = lambda script: " start" in script  # the command that carries the spec
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "train", "sealed", "--no-sync", "-d"]
        + ["-e", f"API_KEY={secret}", "--", "true"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert agent().holding.wait(60), "the job's start never reached the machine"
        left = sorted(set(staged()) - before)
        assert left, "the job spec is not in the bucket"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        agent().hold = None
        agent().released.set()
        if proc.poll() is None:
            proc.kill()
    role_id = boto3.client("iam").get_role(RoleName="trainctl-instance")["Role"]["RoleId"]
    described = boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[rid])
    tags = {t["Key"]: t["Value"] for t in described["Reservations"][0]["Instances"][0]["Tags"]}
    assert tags["trainctl-role-id"] == role_id
    for key in left:
        assert key.startswith(f"{role_id}:{rid}/in/")  # the ${aws:userid} of the machine
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for form in (
            secret.encode(),
            base64.b64encode(secret.encode()),
            secret.encode().hex().encode(),
        ):
            assert form not in body
    assert trainctl("terminate", "sealed", "-y").code == 0
    assert staged() == []


def test_stopping_a_spot_machine_is_refused_before_any_aws_call(proxy):
    made = trainctl(
        "create", "--provider", "aws", "--gpu", "T4", "--spot", "--name", "spot-box", "--json"
    )
    assert made.code == 0, made.err
    rid = made.json()["id"]
    asked: list[bytes] = []
    proxy.fault = lambda _m, _p, _h, body: asked.append(body)
    r = trainctl("stop", "spot-box", "-y")
    assert r.code == 2, r.err
    assert "cannot stop a one-time spot machine" in r.err and "terminate it" in r.err
    assert asked == []  # refused from the record: nothing was sent to AWS
    proxy.fault = lambda *_: None
    assert instance(REGION, rid).state == "running"
    assert trainctl("terminate", "spot-box", "-y").code == 0


def test_a_spot_fallback_warning_is_printed(proxy):
    def no_spot(_method, _path, _headers, body):
        if b"Action=RunInstances" in body and b"InstanceMarketOptions" in body:
            return (
                500,
                "text/xml",
                b"<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>"
                b"<Message>no spot capacity</Message></Error></Errors>"
                b"<RequestID>x</RequestID></Response>",
            )
        return None

    proxy.fault = no_spot
    made = trainctl(
        "create",
        "--provider",
        "aws",
        "--gpu",
        "T4",
        "--spot",
        "--spot-fallback",
        "--name",
        "fallback-box",
        "--json",
    )
    assert made.code == 0, made.err
    assert made.json()["spot"] is False
    (warning,) = [line for line in made.err.splitlines() if line.startswith("warning:")]
    assert "on-demand instead (--spot-fallback)" in warning
    proxy.fault = lambda *_: None
    assert trainctl("terminate", "fallback-box", "-y").code == 0

"""The guard on an AWS machine releases it through EC2 with the instance profile's
credentials (read from the IMDSv2 stand-in), with no trainctl process alive; and it
never releases an instance other than its own."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from aws_support import agent, imds, instance, publish_dlami, set_up
from polling import wait_for
from trainctl.api import Trainctl
from trainctl.guards import GuardRequest
from trainctl.providers.aws import AwsProvider
from trainctl.runtime import release
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob

REGION = "ap-northeast-1"


@pytest.fixture
def tc(monkeypatch, trainctl_home):
    set_up(monkeypatch, REGION)
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text("[guard]\ninterval = 0.2\ngrace = 2\n")
    api = Trainctl()
    api._providers["aws"] = AwsProvider(progress=lambda _line: None, poll_interval=0.1)
    return api


SAVES_ON_TERM = (
    "import signal, sys, time\n"
    "def term(*_):\n"
    "    open('saved', 'w').write('checkpoint')\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "time.sleep(300)\n"
)


def test_a_spend_cap_ends_the_job_then_stops_the_instance_with_its_own_credentials(tc):
    # at g4dn.xlarge's price, 0.6 of a cent is about 40 s after launch
    options = CreateResourceOptions(gpu=GpuSpec("T4", 1), name="capped")
    options.guards = GuardRequest.parse(max_spend="0.006")
    record = tc.create("aws", options)
    instance_id = record.id.rsplit("/", 1)[-1]
    assert record.guards["release"] == "stop" and record.price_per_hour
    job = tc.train(record.name, TrainingJob(["python3", "-c", SAVES_ON_TERM]))
    del tc  # no trainctl process looks after the machine from here
    wait_for(lambda: instance(REGION, instance_id).state == "stopped", timeout=90)
    home = agent().home(instance_id) / ".trainctl"
    assert (home / "work" / "saved").read_text() == "checkpoint"  # its handler ran first
    ended = json.loads((home / "jobs" / job.job_id / "ended_by").read_text())
    assert ended["why"] == "spend cap"
    (halt,) = [h for h in agent().halts if instance_id in h.instance_ids]
    assert halt.action == "stop"
    assert imds().instance_of(halt.access_key) == instance_id  # the profile's, not ours


def test_an_idle_machine_terminates_itself_when_told_to(tc):
    options = CreateResourceOptions(gpu=GpuSpec("T4", 1), name="idle")
    options.guards = GuardRequest.parse(idle_stop="2s", release="terminate")
    record = tc.create("aws", options)
    instance_id = record.id.rsplit("/", 1)[-1]
    began = time.time()
    wait_for(lambda: instance(REGION, instance_id).state == "terminated", timeout=40)
    assert time.time() - began < 2 + 30
    assert Trainctl().status(record.name).state.value in ("terminated", "terminating")


def test_the_guard_releases_no_other_instance(tc, monkeypatch):
    ec2 = boto3.client("ec2", region_name=REGION)
    mine = tc.create("aws", CreateResourceOptions(gpu=GpuSpec("T4", 1), name="mine"))
    mine_id = mine.id.rsplit("/", 1)[-1]
    image = publish_dlami(REGION)
    other = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    other_id = other["Instances"][0]["InstanceId"]
    # the IMDS of "mine", asked to release "other": refused before any EC2 call
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds().endpoint(mine_id))
    halts = len(agent().halts)
    outcome, message = release.execute(
        {"kind": "aws-ec2", "action": "TerminateInstances", "instance_id": other_id,
         "endpoint": os.environ["AWS_ENDPOINT_URL"]}
    )  # fmt: skip
    assert outcome == "failed" and "nothing was released" in message
    assert len(agent().halts) == halts
    assert instance(REGION, other_id).state == "running"
    ec2.terminate_instances(InstanceIds=[other_id])
    tc.terminate(mine.name)

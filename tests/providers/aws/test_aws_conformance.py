"""The aws provider passes the conformance suite: EC2 on moto, every command through
SSM (the agent stand-in runs it for real), files through the staging bucket."""

from __future__ import annotations

import pytest

from aws_support import publish_dlami, set_up
from conformance import ProviderConformance
from trainctl.providers.aws import AwsProvider
from trainctl.runtime import client
from trainctl.types import CreateResourceOptions, GpuSpec

REGION = "us-east-2"


class TestAwsProvider(ProviderConformance):
    @pytest.fixture
    def provider(self, monkeypatch):
        set_up(monkeypatch, REGION)
        # the runtime's follow polls once a second; a shorter pause keeps the suite quick
        monkeypatch.setattr(client, "POLL_SECONDS", 0.2)
        return AwsProvider(progress=lambda _line: None, poll_interval=0.1)

    @pytest.fixture
    def create_options(self):
        return CreateResourceOptions(gpu=GpuSpec("T4", 1), name="conformance")

    @pytest.fixture
    def foreign_id(self, provider):
        """An instance launched in the account without trainctl's tags."""
        import boto3

        ec2 = boto3.client("ec2", region_name=REGION)
        launched = ec2.run_instances(
            ImageId=publish_dlami(REGION), InstanceType="t3.micro", MinCount=1, MaxCount=1
        )
        instance_id = launched["Instances"][0]["InstanceId"]
        yield instance_id
        ec2.terminate_instances(InstanceIds=[instance_id])

    def unknown_id(self) -> str:
        return "i-0000000000000000f"

"""`run --spot --recover` of examples/train.py on AWS (moto, the SSM agent and IMDS
stand-ins): the spot
interruption notice reaches the guard through IMDS, which ends the job as preempted;
the client brings the last checkpoint home, releases the instance (which AWS
terminates anyway), rents another and resumes there."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import torch

from aws_support import agent, imds, instance, set_up
from polling import wait_for
from recovery_support import EXAMPLE, log_of, run
from trainctl.api import Trainctl
from trainctl.providers.aws import AwsProvider
from trainctl.recovery import Recovery
from trainctl.types import CreateResourceOptions, GpuSpec

REGION = "ca-central-1"


@pytest.fixture
def tc(monkeypatch, trainctl_home):
    set_up(monkeypatch, REGION)
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text("[guard]\ninterval = 0.3\ngrace = 2\n")
    api = Trainctl()
    api._providers["aws"] = AwsProvider(progress=lambda _line: None, poll_interval=0.1)
    return api


def test_the_interruption_notice_ends_the_job_and_the_run_resumes_on_another_instance(
    tc, tmp_path
):
    noticed: list[str] = []

    def interrupt(record) -> None:
        instance_id = record.id.rsplit("/", 1)[-1]
        noticed.append(instance_id)
        imds().notice(instance_id)
        guard_log = agent().home(instance_id) / ".trainctl" / "guard" / "log"
        assert json.loads((guard_log.parent / "policy.json").read_text())["spot_notice"] is True
        wait_for(lambda: "preempted: spot interruption notice" in guard_log.read_text(), 60)
        # AWS reclaims the instance two minutes on: here 30 s on, unless the client,
        # which sees the job end, released it first
        deadline = time.time() + 30
        while time.time() < deadline and instance(REGION, instance_id).state == "running":
            time.sleep(0.1)
        if instance(REGION, instance_id).state == "running":
            boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[instance_id])

    result, home = run(
        tc,
        "aws",
        CreateResourceOptions(gpu=GpuSpec("T4", 1), spot=True),
        tmp_path,
        recover=Recovery(2),
        preempt=interrupt,
        at_epochs=[3],
        script=EXAMPLE,  # the sandboxes' python3 is this venv's: real PyTorch
    )
    assert result.exit_code == 0, result
    first, second = result.attempts
    assert first.how == "preempted" and first.spot
    assert "spot interruption notice" in (first.reason or "")
    assert second.status == "completed"
    resumed = [line for line in log_of(second.id).splitlines() if line.startswith("resumed")]
    assert resumed == ["resumed from epoch-3.pt (epoch 3)"], log_of(second.id)
    assert torch.load(home / "epoch-8.pt", weights_only=True)["epoch"] == 8
    assert sorted(p.name for p in home.glob("epoch-*.pt")) == [
        f"epoch-{n}.pt" for n in range(1, 9)
    ]
    made = {a.resource_id.rsplit("/", 1)[-1] for a in result.attempts}
    assert len(made) == 2 and noticed[0] in made
    assert all(instance(REGION, i).state == "terminated" for i in made)
    assert tc.store.resources() == []

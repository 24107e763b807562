"""--store default on AWS: the guard saves the jobs' work under the machine's own prefix
of the staging bucket with the instance profile's credentials (from the IMDSv2
stand-in; no key reaches the machine), terminating the machine leaves it, and
download reads it back once the machine is gone."""

from __future__ import annotations

import boto3
import pytest

from aws_support import agent, set_up
from polling import wait_for
from trainctl.api import Trainctl
from trainctl.providers.aws import AwsProvider, setup
from trainctl.providers.aws.instance import TAG_ROLE_ID
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob

# A region no other test uses: the moto server is shared, and aws setup's test
# expects to create its own region's staging bucket.
REGION = "eu-west-2"

SAVES = (
    "import os, time\n"
    "d = os.environ['TRAINCTL_CHECKPOINT_DIR']\n"
    "for step in range(3):\n"
    "    open(os.path.join(d, 'step-%d.pt' % step), 'w').write('weights %d' % step)\n"
    "    time.sleep(0.5)\n"
)


@pytest.fixture
def tc(monkeypatch, trainctl_home):
    set_up(monkeypatch, REGION)
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text("[guard]\ninterval = 0.2\n")
    api = Trainctl()
    api._providers["aws"] = AwsProvider(progress=lambda _line: None, poll_interval=0.1)
    return api


def test_the_default_store_is_the_machine_s_own_staging_prefix(tc, tmp_path):
    options = CreateResourceOptions(gpu=GpuSpec("T4", 1), name="saver", store="default")
    record = tc.create("aws", options)
    instance_id = record.id.rsplit("/", 1)[-1]
    saved = tc.store.object_store("saver")
    role_id = record.connection["tags"][TAG_ROLE_ID]
    assert saved["prefix"] == setup.store_prefix(role_id, instance_id)
    assert saved["credentials"] == "instance-role" and saved["region"] == REGION
    job = tc.train("saver", TrainingJob(["python3", "-c", SAVES]))
    s3 = boto3.client("s3", region_name=REGION)
    bucket = saved["bucket"]
    key = f"{saved['prefix']}/{job.job_id}/checkpoints/step-2.pt"

    def stored() -> set[str]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=saved["prefix"] + "/")
        return {o["Key"] for o in listed.get("Contents", [])}

    wait_for(lambda: key in stored(), timeout=60)
    guard = agent().home(instance_id) / ".trainctl" / "guard"
    assert not (guard / "store-secret").exists()  # the role's own credentials only
    tc.terminate("saver")
    assert key in stored()  # the staging clean-up leaves the store's part

    landed = tc.download("saver", "checkpoints", tmp_path / "back")
    assert sorted(p.name for p in landed.iterdir()) == ["step-0.pt", "step-1.pt", "step-2.pt"]
    assert (landed / "step-2.pt").read_text() == "weights 2"


def test_the_staging_policy_lets_a_machine_write_only_its_own_prefix():
    policy = setup.staging_policy(["b"])
    (write,) = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    assert write["Resource"] == [f"arn:aws:s3:::b/{setup.OWN_PREFIX}/*"]
    assert setup.store_prefix("AROAX", "i-1").startswith(setup.prefix("AROAX", "i-1") + "/")

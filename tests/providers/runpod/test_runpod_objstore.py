"""--store on a RunPod pod (a real sshd machine behind the fake): the pod halts mid-job
and RunPod forgets it; what was saved more than an interval before is in the store,
whole, and download gets it from there."""

from __future__ import annotations

import time

import pytest

from objstore_support import KEYS, endpoint, new_bucket, objects
from polling import wait_for
from test_objstore_runtime import CHECKPOINTS, body, written
from trainctl import objstore
from trainctl.api import Trainctl
from trainctl.runtime import files
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob

INTERVAL = 0.5


@pytest.fixture
def fake(fake_runpod, trainctl_home, monkeypatch):
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text(
        "[providers.runpod]\npoll_interval = 0.01\nready_timeout = 30\n"
        f"[guard]\ninterval = {INTERVAL}\ngrace = 2\n"
    )
    monkeypatch.setenv(objstore.ENDPOINT_ENV, endpoint())
    monkeypatch.setenv(objstore.KEY_ENV, KEYS["AccessKeyId"])
    monkeypatch.setenv(objstore.SECRET_ENV, KEYS["SecretAccessKey"])
    return fake_runpod


def test_a_halted_pod_s_checkpoints_come_from_the_store(fake, tmp_path):
    bucket = new_bucket()
    tc = Trainctl()
    options = CreateResourceOptions(
        gpu=GpuSpec("RTX4090", 1), name="pod", store=f"s3://{bucket}/rp"
    )
    record = tc.create("runpod", options)
    machine = fake.pods[record.id].machine
    record_file = machine.home / "written"  # the pod's own disk, read here as root
    job = tc.train("pod", TrainingJob(["python3", "-c", CHECKPOINTS, str(record_file)]))
    wait_for(lambda: len(written(record_file)) >= 5, timeout=60)
    halted_at = time.time()
    machine.halt()  # every process on the pod ends at once: no last upload
    steps = written(record_file)
    guard = machine.home / ".trainctl" / "guard"
    assert KEYS["SecretAccessKey"] not in "".join(
        p.read_text(errors="replace") for p in guard.iterdir() if p.name != "store-secret"
    )
    fake._delete(record.id)  # and RunPod no longer knows it

    bound = halted_at - INTERVAL - files.SETTLE_SECONDS - 0.5
    early = [s for s, t in steps if t < bound]
    assert len(early) >= 2
    saved = objects(bucket, f"rp/{job.job_id}/checkpoints/")
    for key, data in saved.items():  # none partial
        assert data == body(int(key.rsplit("-", 1)[1][:4])), key
    landed = tc.download("pod", "checkpoints", tmp_path / "back")
    got = {p.name for p in landed.iterdir()}
    assert {f"step-{s:04d}.pt" for s in early} <= got
    for s in early:
        assert (landed / f"step-{s:04d}.pt").read_bytes() == body(s)


def test_a_pod_started_again_saves_to_its_store_again(fake, tmp_path):
    bucket = new_bucket()
    tc = Trainctl()
    options = CreateResourceOptions(
        gpu=GpuSpec("RTX4090", 1), name="again", store=f"s3://{bucket}/a"
    )
    record = tc.create("runpod", options)
    guard_dir = fake.pods[record.id].machine.home / ".trainctl" / "guard"
    tc.stop("again")
    for path in guard_dir.iterdir():  # a container disk that was reset
        path.unlink()
    tc.start("again")
    job = tc.train("again", TrainingJob(["sh", "-c", "echo w > $TRAINCTL_CHECKPOINT_DIR/w.pt"]))
    key = f"a/{job.job_id}/checkpoints/w.pt"
    wait_for(lambda: key in objects(bucket), timeout=30)
    tc.terminate("again")

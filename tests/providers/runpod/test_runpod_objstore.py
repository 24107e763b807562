"""--store on a RunPod pod (a real sshd machine behind the fake): the pod halts mid-job
and RunPod forgets it; what was saved more than an interval before is in the store,
whole, and download gets it from there."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from objstore_support import KEYS, endpoint, new_bucket, objects
from polling import wait_for
from recovery_support import log_of
from recovery_support import run as recovery_run
from test_objstore_runtime import CHECKPOINTS, body, written
from trainctl import api, objstore
from trainctl.api import Trainctl
from trainctl.recovery import Recovery
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


def test_a_pod_lost_mid_run_leaves_its_earlier_checkpoints_in_the_store_and_at_home(
    fake, tmp_path
):
    """`run --store` with checkpoints coming home each interval: the pod halts and
    RunPod forgets it while the job saves a checkpoint a second. Everything complete
    more than an interval before is both in the store and at home, and nothing at
    home or in the store is partial."""
    bucket = new_bucket()
    record_file: list[Path] = []
    halted: list[float] = []
    steps: list[tuple[int, float]] = []
    tc = Trainctl()

    def on_created(record) -> None:
        machine = fake.pods[record.id].machine

        def halt_later() -> None:  # the job notes its saves in its working directory
            wait_for(lambda: list(machine.home.rglob("written")), timeout=60)
            record_file.extend(machine.home.rglob("written"))
            wait_for(lambda: len(written(record_file[0])) >= 5, timeout=60)
            halted.append(time.time())
            machine.halt()
            steps.extend(written(record_file[0]))  # before RunPod deletes the pod's disk
            fake._delete(record.id)

        threading.Thread(target=halt_later, daemon=True).start()

    out = tmp_path / "out"
    result = api.run(
        tc,
        "runpod",
        CreateResourceOptions(gpu=GpuSpec("RTX4090", 1), name="lost", store=f"s3://{bucket}/l"),
        TrainingJob(["python3", "-c", CHECKPOINTS, "written"]),
        outputs=[],
        output_dir=out,
        checkpoint_sync=INTERVAL,
        on_created=on_created,
    )
    assert result.lost, result
    assert tc.store.runs()[0].how == "lost"
    bound = halted[0] - INTERVAL - files.SETTLE_SECONDS - 0.5
    early = [s for s, t in steps if t < bound]
    assert len(early) >= 2
    stored = objects(bucket, f"l/{result.job.job_id}/checkpoints/")
    at_home = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    for s in early:
        assert stored[f"l/{result.job.job_id}/checkpoints/step-{s:04d}.pt"] == body(s), s
        assert at_home[f"step-{s:04d}.pt"] == body(s), s
    for name, data in at_home.items():  # whole, or under a name that says it is not
        if not name.startswith("."):
            assert data == body(int(name[5:9])), name
    for key, data in stored.items():
        assert data == body(int(key.rsplit("-", 1)[1][:4])), key


def test_a_recovered_run_resumes_from_what_the_store_saved_when_nothing_came_home(
    fake, tmp_path
):
    """`run --recover --store ... --checkpoint-sync off`: nothing is pulled home while
    the job runs, the pod is reclaimed, and the new pod gets what the guard saved."""
    bucket = new_bucket()
    result, home = recovery_run(
        Trainctl(),
        "runpod",
        CreateResourceOptions(gpu=GpuSpec("RTX4090", 1), spot=True, store=f"s3://{bucket}/r"),
        tmp_path,
        epochs=4,
        recover=Recovery(1),
        checkpoint_sync=api.checkpoints.OFF,
        preempt=lambda record: (
            wait_for(lambda: any(k.endswith("epoch-2.pt") for k in objects(bucket, "r/")), 60),
            fake.preempt(record.id),
        ),
        at_epochs=[0],
    )
    assert result.exit_code == 0, result
    first, second = result.attempts
    assert first.how == "preempted"
    assert "resumed from epoch-2.pt (epoch 2)" in log_of(second.id)
    assert fake.live_pods() == []

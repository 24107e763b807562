"""Ctrl-C, SIGTERM and SIGHUP to `trainctl run`, `train` and `monitor --follow`, sent
to the real CLI in a subprocess on the local provider."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import Cli, trainctl

# A training script that saves a checkpoint when asked to stop (SIGTERM).
JOB = """\
import os, signal, sys, time
d = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(d, exist_ok=True)
def save(signum, frame):
    time.sleep(float(os.environ.get("SAVE_SECONDS", "0")))
    open(os.path.join(d, "ckpt.txt"), "w").write("epoch 1")
    print("saved checkpoint", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, save)
print("epoch 1 done", flush=True)
time.sleep(120)
"""


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "job.py").write_text(JOB)
    return d


def start_run(project: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> Cli:
    return Cli(
        "run", "-p", "local", "-w", str(project), "-o", "checkpoints",
        "--output-dir", str(out), "--grace", "20", *extra, "--", sys.executable, "job.py",
        env=env,
    )  # fmt: skip


def live_resources() -> list[dict]:
    return trainctl("list", "--json").json()["resources"]


@pytest.mark.parametrize(
    ("signum", "said"),
    [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")],
)
def test_interrupted_run_checkpoints_downloads_then_releases(project, tmp_path, signum, said):
    out = tmp_path / "out"
    run = start_run(project, out)
    run.wait_for(run.out, "epoch 1 done")
    run.signal(signum)
    code = run.finish()
    assert code == 130, run.stderr
    assert (out / "checkpoints" / "ckpt.txt").read_text() == "epoch 1"
    assert live_resources() == []
    steps = [
        f"{said}: cancelling job",
        "SIGTERM, SIGKILL after 20s",
        "downloading outputs",
        "releasing tc-",
        "terminated",
    ]
    positions = [run.stderr.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), run.stderr
    assert "saved checkpoint" in "".join(run.out)  # what the job said after SIGTERM is shown


def test_second_ctrl_c_skips_the_download_and_still_releases(project, tmp_path):
    out = tmp_path / "out"
    run = start_run(project, out, env={"SAVE_SECONDS": "30"})
    run.wait_for(run.out, "epoch 1 done")
    run.signal(signal.SIGINT)
    run.wait_for(run.err, "cancelling job")
    time.sleep(0.3)
    run.signal(signal.SIGINT)
    code = run.finish()
    assert code == 130, run.stderr
    assert "skipping the download" in run.stderr and "downloading outputs" not in run.stderr
    assert not (out / "checkpoints" / "ckpt.txt").exists()
    assert live_resources() == []


def test_second_ctrl_c_reports_the_job_ended_by_the_release(project, tmp_path):
    """The cancel cut short leaves the job last seen running; the release ends it,
    and the final line says so instead of calling it running."""
    run = start_run(project, tmp_path / "out", env={"SAVE_SECONDS": "30"})
    run.wait_for(run.out, "epoch 1 done")
    run.signal(signal.SIGINT)
    run.wait_for(run.err, "cancelling job")
    time.sleep(0.3)
    run.signal(signal.SIGINT)
    assert run.finish() == 130, run.stderr
    job_id = run.stderr.split("cancelling job ", 1)[1].split()[0]
    assert f"job {job_id} running" not in run.stderr
    assert f"job {job_id} cancelled: ended by releasing tc-" in run.stderr, run.stderr


def test_ctrl_c_with_keep_leaves_the_job_and_the_machine(project, tmp_path):
    run = start_run(project, tmp_path / "out", "--keep")
    run.wait_for(run.out, "epoch 1 done")
    run.signal(signal.SIGINT)
    code = run.finish()
    assert code == 130, run.stderr
    (machine,) = live_resources()
    (job,) = trainctl("jobs", machine["name"], "--json").json()["jobs"]
    assert job["status"] == "running"
    for needle in (
        f"trainctl monitor {job['job_id']} --follow",
        f"trainctl cancel {job['job_id']}",
        f"trainctl terminate {machine['name']}",
    ):
        assert needle in run.stderr
    assert trainctl("terminate", machine["name"], "-y").code == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_train_and_monitor_stop_following_and_leave_the_job(project, signum):
    assert trainctl("create", "-p", "local", "--name", "m1").code == 0
    train = Cli("train", "m1", "-w", str(project), "--", sys.executable, "job.py")
    train.wait_for(train.out, "epoch 1 done")
    train.signal(signum)
    assert train.finish() == 130, train.stderr
    (job,) = trainctl("jobs", "m1", "--json").json()["jobs"]
    job_id = job["job_id"]
    assert job["status"] == "running"
    assert "keeps running on m1" in train.stderr
    # what the user asked for is no error
    assert not any(ln.startswith("error") for ln in train.stderr.splitlines()), train.stderr
    assert f"trainctl monitor {job_id} --follow" in train.stderr
    assert f"trainctl cancel {job_id}" in train.stderr

    monitor = Cli("monitor", "m1", "--follow")  # a resource means its newest job
    monitor.wait_for(monitor.out, "epoch 1 done")
    monitor.signal(signum)
    assert monitor.finish() == 130, monitor.stderr
    assert f"trainctl monitor {job_id} --follow" in monitor.stderr
    assert trainctl("jobs", "m1", "--json").json()["jobs"][0]["status"] == "running"
    assert trainctl("cancel", job_id, "--grace", "5").code == 0
    assert trainctl("terminate", "m1", "-y").code == 0

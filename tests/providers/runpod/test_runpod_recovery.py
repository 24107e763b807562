"""`run --spot --recover` on RunPod (sshd machines behind the fake): a spot pod
reclaimed mid-run is replaced, the checkpoints come back, and the job resumes."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime

import pytest

from cli_helpers import Cli, trainctl
from polling import wait_for
from recovery_support import PAUSE, chain, log_of, project, run
from trainctl.api import Trainctl
from trainctl.recovery import Recovery
from trainctl.types import CreateResourceOptions, GpuSpec


@pytest.fixture
def fake(runpod_guarded):
    return runpod_guarded


def spot() -> CreateResourceOptions:
    return CreateResourceOptions(gpu=GpuSpec("RTX4090", 1), spot=True)


def test_a_reclaimed_spot_pod_is_replaced_and_the_job_resumes_from_its_checkpoint(
    fake, tmp_path
):
    tc = Trainctl()
    result, home = run(
        tc,
        "runpod",
        spot(),
        tmp_path,
        recover=Recovery(3),
        preempt=lambda record: fake.preempt(record.id),
        at_epochs=[3],
    )
    assert result.exit_code == 0, result
    first, second = result.attempts
    assert first.how == "preempted" and first.spot
    assert second.status == "completed" and second.run_id == first.id == second.run_id
    assert second.id == f"{first.id}-2"
    assert "resumed from epoch-3.pt (epoch 3)" in log_of(second.id)
    assert "resumed" not in log_of(first.id)
    assert json.loads((home / "epoch-8.pt").read_text())["state"] == chain(8)
    assert len(fake.created) == 2 and fake.live_pods() == []
    assert first.resource_id != second.resource_id
    assert tc.store.resources() == []


def test_a_job_failing_on_a_healthy_pod_is_not_retried(fake, tmp_path):
    result, _home = run(
        Trainctl(),
        "runpod",
        spot(),
        tmp_path,
        recover=Recovery(3),
        command=["python3", "-c", "import sys; sys.exit(3)"],
    )
    assert result.exit_code == 3
    assert len(result.attempts) == 1 and result.attempts[0].status == "failed"
    assert len(fake.created) == 1 and fake.live_pods() == []


def test_a_second_preemption_beyond_recover_1_ends_the_run_with_nothing_left(fake, tmp_path):
    tc = Trainctl()
    result, _home = run(
        tc,
        "runpod",
        spot(),
        tmp_path,
        recover=Recovery(1),
        preempt=lambda record: fake.preempt(record.id),
        at_epochs=[1, 2],
    )
    assert result.exit_code == 1
    assert "not recovered: 2 attempts made, --recover 1 allows 2" in (result.lost or "")
    assert [a.how for a in result.attempts] == ["preempted", "preempted"]
    assert len(fake.created) == 2 and fake.live_pods() == []
    assert tc.store.resources() == []


def test_run_recover_from_the_command_line_says_what_happened_and_runs_show_lists_attempts(
    runpod_cli, tmp_path
):
    """The CLI as a user runs it, the fake reclaiming the pod once epoch 2 is home."""
    fake = runpod_cli
    project_dir = project(tmp_path)
    out = tmp_path / "out"

    def reclaim() -> None:
        wait_for(lambda: (out / "checkpoints" / "epoch-2.pt").exists(), timeout=120)
        (pod_id,) = [p["id"] for p in fake.live_pods()]
        fake.preempt(pod_id)

    threading.Thread(target=reclaim, daemon=True).start()
    r = trainctl(
        "run", "-p", "runpod", "--gpu", "RTX4090", "--spot", "--recover",
        "--checkpoint-sync", "0.3s", "-w", str(project_dir), "--output-dir", str(out),
        "--", "python3", "resumable.py", "--epochs", "4", "--pause", str(PAUSE),
        timeout=240,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "was preempted" in r.err and "newest checkpoint at home: epoch-2.pt" in r.err
    assert "Attempt 2 of at most 4" in r.err and "restoring" in r.err
    assert "resumed from epoch-2.pt (epoch 2)" in r.out
    assert "2 attempts: `trainctl runs show" in r.err
    listed = trainctl("runs").out
    assert "(2 attempts)" in listed and "completed" in listed
    (run,) = trainctl("runs", "--json").json()["runs"]
    assert [a["how"] for a in run["attempts"]] == ["preempted", "completed"]
    shown = trainctl("runs", "show", run["attempts"][1]["id"])
    assert shown.code == 0 and "2 attempts" in shown.out and "preempted" in shown.out
    assert len(fake.created) == 2 and fake.live_pods() == []


def test_ctrl_c_while_a_recovery_waits_for_its_new_pod_releases_it(runpod_cli, tmp_path):
    fake = runpod_cli
    out = tmp_path / "out"
    run_ = Cli(
        "run", "-p", "runpod", "--gpu", "RTX4090", "--spot", "--recover", "2",
        "--checkpoint-sync", "0.3s", "-w", str(project(tmp_path)), "--output-dir", str(out),
        "--", "python3", "resumable.py", "--epochs", "6", "--pause", str(PAUSE),
    )  # fmt: skip
    wait_for(lambda: (out / "checkpoints" / "epoch-1.pt").exists(), timeout=120)
    fake.knobs.stuck = True  # the next pod never leaves PROVISIONING
    (pod_id,) = [p["id"] for p in fake.live_pods()]
    fake.preempt(pod_id)
    wait_for(lambda: len(fake.created) == 2, timeout=60)
    run_.wait_for(run_.err, "waiting for it to run")
    run_.signal(signal.SIGINT)
    assert run_.finish() == 130, run_.err
    assert fake.live_pods() == [] and len(fake.created) == 2
    listed = trainctl("list", "--json").json()["resources"]
    assert listed == []


def test_retry_on_failure_runs_a_failed_job_again_on_the_same_pod(fake, tmp_path):
    flaky = "import os, sys; os.path.exists('tried') or (open('tried', 'w'), sys.exit(3))"
    result, _home = run(
        Trainctl(),
        "runpod",
        spot(),
        tmp_path,
        recover=Recovery(2, retry_on_failure=True),
        command=["python3", "-c", flaky],
    )
    assert result.exit_code == 0, result
    assert [a.status for a in result.attempts] == ["failed", "completed"]
    assert result.attempts[0].resource_id == result.attempts[1].resource_id
    assert len(fake.created) == 1 and fake.live_pods() == []


def test_a_pod_the_api_says_exited_is_noticed_while_its_connection_still_stands(fake, tmp_path):
    """RunPod says the pod is EXITED, but its machine and the followed connection are
    still up: the run's look at the pod's state cuts the connection, and recovers."""
    noticed: list[float] = []
    result, _home = run(
        Trainctl(),
        "runpod",
        spot(),
        tmp_path,
        epochs=4,
        recover=Recovery(1),
        preempt=lambda record: (fake.preempt(record.id, halt=False), noticed.append(time.time())),
        at_epochs=[2],
    )
    assert result.exit_code == 0, result
    first, second = result.attempts
    assert first.how == "preempted" and "stopped" in (first.reason or "")
    ended = datetime.fromisoformat(first.ended_at or "").timestamp()
    assert ended - noticed[0] < 10  # a watch interval of 0.5 s, and PAUSE before epoch 3
    assert "resumed from epoch-2.pt (epoch 2)" in log_of(second.id)
    assert fake.live_pods() == []

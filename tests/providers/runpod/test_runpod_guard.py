"""The guard on a RunPod pod (a real sshd machine behind the fake) stops the pod with
the pod's own key, with no trainctl process alive: after an idle window, and after a
`trainctl run` killed with SIGKILL mid-job, once the job has completed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from polling import wait_for
from trainctl.api import Trainctl
from trainctl.guards import GuardRequest
from trainctl.types import CreateResourceOptions, GpuSpec


@pytest.fixture
def fake(runpod_guarded):
    return runpod_guarded


def stopped_by_itself(fake, pod_id: str) -> bool:
    return any(
        method == "POST" and path.endswith(f"/{pod_id}/action") and key == f"pod:{pod_id}"
        and status == 200
        for method, path, status, key in fake.key_log
    )  # fmt: skip


def test_an_idle_pod_stops_itself_with_its_own_key(fake):
    options = CreateResourceOptions(gpu=GpuSpec("RTX4090", 1), name="idle")
    options.guards = GuardRequest.parse(idle_stop="2s")
    record = Trainctl().create("runpod", options)
    assert record.guards["release"] == "stop" and record.guards["idle_stop"] == 2.0
    began = time.time()
    wait_for(lambda: fake.pods[record.id].data["status"] == "EXITED", timeout=32)
    assert time.time() - began < 2 + 30
    wait_for(lambda: stopped_by_itself(fake, record.id), 5)  # logged once answered
    # the user's key never went to the machine
    home = fake.pods[record.id].machine.home
    assert fake.api_key not in _all_text(home)


def _all_text(root) -> str:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 1 << 20:
            found.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(found)


JOB = (
    "import os, time\n"
    "time.sleep(3)\n"
    "os.makedirs('checkpoints', exist_ok=True)\n"
    "open('checkpoints/done', 'w').write('ok')\n"
    "print('finished', flush=True)\n"
)


def test_a_killed_run_leaves_a_job_that_completes_and_a_pod_that_stops(fake, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    argv = [sys.executable, "-m", "trainctl", "run", "--provider", "runpod",
            "--gpu", "RTX4090", "--idle-stop", "3s", "-w", str(project),
            "--output-dir", str(tmp_path / "out"), "--", "python3", "job.py"]  # fmt: skip
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(p.machine is not None for p in fake.pods.values()), 60)
        (pod_id,) = fake.pods
        home = fake.pods[pod_id].machine.home
        wait_for(lambda: list((home / ".trainctl" / "jobs").glob("j-*/pid.json")), 60)
    finally:
        run.send_signal(signal.SIGKILL)  # no Ctrl-C, no clean-up: the laptop is gone
        run.wait()
    wait_for(lambda: fake.pods[pod_id].data["status"] == "EXITED", timeout=3 + 3 + 30)
    (job_dir,) = (home / ".trainctl" / "jobs").glob("j-*")
    assert json.loads((job_dir / "exit.json").read_text())["exit_code"] == 0
    assert (home / ".trainctl" / "work" / "checkpoints" / "done").read_text() == "ok"
    wait_for(lambda: stopped_by_itself(fake, pod_id), 5)
    assert os.path.getmtime(job_dir / "exit.json") <= time.time()


def test_a_pod_started_again_gets_its_guard_again(fake):
    tc = Trainctl()
    options = CreateResourceOptions(gpu=GpuSpec("RTX4090", 1), name="again")
    options.guards = GuardRequest.parse(max_duration="2h")
    record = tc.create("runpod", options)
    guard_dir = fake.pods[record.id].machine.home / ".trainctl" / "guard"
    first = int((guard_dir / "pid").read_text())
    tc.stop(record.name)  # a stopped pod runs nothing: its guard is gone
    wait_for(lambda: not os.path.exists(f"/proc/{first}"), 10)
    (guard_dir / "policy.json").unlink()  # a container disk that was reset
    tc.start(record.name)
    again = int((guard_dir / "pid").read_text())
    assert again != first and os.path.exists(f"/proc/{again}")
    policy = json.loads((guard_dir / "policy.json").read_text())
    assert policy["deadline"] == record.guards["deadline"]
    assert policy["release"]["action"] == "stop"
    tc.terminate(record.name)

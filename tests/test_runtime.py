"""The job runtime on this machine: detachment, lost jobs, exit codes, heartbeats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from trainctl.remote.local import LocalRemote
from trainctl.runtime import jobrunner
from trainctl.runtime.client import JobRuntime
from trainctl.types import ExecutionStatus


@pytest.fixture
def rt(tmp_path):
    (tmp_path / "machine").mkdir()
    return JobRuntime(LocalRemote(tmp_path / "machine"), "m")


def wait_for(predicate, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def pid_info(rt, job_id):
    return json.loads((rt.remote.root / "jobs" / job_id / "pid.json").read_text())


def test_job_in_its_own_session_and_group(rt):
    st = rt.start(["sleep", "30"])
    info = pid_info(rt, st.job_id)
    assert os.getsid(info["pid"]) == info["pid"] == os.getpgid(info["pid"])
    assert os.getsid(info["supervisor_pid"]) != os.getsid(0)
    rt.cancel(st.job_id, grace=1)


def test_vanished_job_is_lost_not_completed(rt):
    st = rt.start(["sleep", "30"])
    info = pid_info(rt, st.job_id)
    os.kill(info["supervisor_pid"], signal.SIGKILL)
    os.killpg(info["pgid"], signal.SIGKILL)
    wait_for(lambda: rt.status(st.job_id).status is ExecutionStatus.LOST)
    final = rt.status(st.job_id)
    assert final.exit_code is None and "no exit code" in final.reason


def test_job_outlives_a_dead_supervisor_and_stays_running(rt):
    st = rt.start(["sleep", "30"])
    info = pid_info(rt, st.job_id)
    os.kill(info["supervisor_pid"], signal.SIGKILL)
    time.sleep(0.2)
    assert rt.status(st.job_id).status is ExecutionStatus.RUNNING
    os.killpg(info["pgid"], signal.SIGKILL)


def test_cancel_kills_the_whole_group_and_escalates(rt):
    # the child ignores SIGTERM, so cancel must escalate to SIGKILL after the grace
    script = "trap '' TERM; sleep 30 & wait"
    st = rt.start(["sh", "-c", script])
    wait_for(lambda: (rt.remote.root / "jobs" / st.job_id / "pid.json").exists())
    pgid = pid_info(rt, st.job_id)["pgid"]
    t0 = time.time()
    final = rt.cancel(st.job_id, grace=0.5)
    assert final.status is ExecutionStatus.CANCELLED
    assert final.exit_code == 128 + signal.SIGKILL
    assert time.time() - t0 < 10
    assert not jobrunner.group_alive(pgid)


def test_heartbeat_is_fresh_while_running(rt):
    st = rt.start(["sleep", "3"])
    wait_for(lambda: rt.status(st.job_id).heartbeat_age is not None)
    assert rt.status(st.job_id).heartbeat_age < 6
    rt.cancel(st.job_id, grace=1)


def test_jobs_never_share_files(rt):
    a = rt.start(["sh", "-c", "echo A"])
    b = rt.start(["sh", "-c", "echo B"])
    wait_for(lambda: rt.status(a.job_id).status.is_final and rt.status(b.job_id).status.is_final)
    assert rt.read(a.job_id) == b"A\n" and rt.read(b.job_id) == b"B\n"
    assert not set(os.listdir(rt.remote.root / "jobs" / a.job_id)) - {
        "cmd.json",
        "pid.json",
        "heartbeat",
        "log",
        "exit.json",
        "supervisor.err",
    }


def test_read_by_offset_and_base64(rt):
    st = rt.start(["sh", "-c", "printf 0123456789"])
    wait_for(lambda: rt.status(st.job_id).status.is_final)
    assert rt.read(st.job_id, 3, 4) == b"3456"
    r = rt.remote.run(rt._argv("read", st.job_id, "8", "100", "--b64"))
    assert r.stdout.strip() == b"ODk="


def test_follow_client_interrupted_job_keeps_running(tmp_path, trainctl_home):
    """Ctrl-C on `trainctl train` (following) leaves the job running on the machine."""
    env = {**os.environ, "TRAINCTL_HOME": str(trainctl_home)}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "trainctl", *a], env=env, capture_output=True, text=True
    )
    assert run("create", "-p", "local", "--name", "m").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "train", "m", "--no-sync", "--", "sleep", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: '"running"' in run("jobs", "m", "--json").stdout)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    jobs = json.loads(run("jobs", "m", "--json").stdout)["jobs"]
    assert [j["status"] for j in jobs] == ["running"]
    run("terminate", "m", "-y")


def test_processes_left_behind_are_ended_by_cancel_all(rt):
    """A job whose main process exited but left a child in its group: the job is
    final, and cancel_all still ends the child."""
    st = rt.start(["sh", "-c", "sleep 987 & echo started"])
    wait_for(lambda: rt.status(st.job_id).status.is_final)
    pgid = pid_info(rt, st.job_id)["pgid"]
    assert jobrunner.leftover_pids(pgid, st.job_id)
    rt.cancel_all(grace=1)
    assert not jobrunner.leftover_pids(pgid, st.job_id)
    assert rt.status(st.job_id).status is ExecutionStatus.COMPLETED


def test_newest_job_is_the_last_requested(tmp_path):
    from trainctl.providers.local import LocalProvider
    from trainctl.types import CreateResourceOptions, TrainingJob

    p = LocalProvider()
    rid = p.create_resource(CreateResourceOptions()).id
    first = p.train(rid, TrainingJob(["sh", "-c", "echo first"]))
    wait_for(lambda: p.job_status(rid, first.job_id).status.is_final)
    second = p.train(rid, TrainingJob(["no-such-command-here"]))  # never starts
    out = bytearray()
    assert p.monitor(rid, sink=out.extend).job_id == second.job_id
    assert [j.job_id for j in p.jobs(rid)] == [first.job_id, second.job_id]
    p.terminate(rid)

"""The job runtime on this machine: detachment, lost jobs, exit codes, heartbeats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from polling import wait_for
from trainctl.remote.local import LocalRemote
from trainctl.runtime import jobrunner
from trainctl.runtime.client import JobRuntime
from trainctl.types import ExecutionStatus


@pytest.fixture
def rt(tmp_path):
    (tmp_path / "machine").mkdir()
    return JobRuntime(LocalRemote(tmp_path / "machine"), "m")


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
    assert not list(jobrunner.group_members(pgid))


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
        "supervisor.started",
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


def test_a_daemon_left_behind_keeps_the_job_running_until_cancelled(rt):
    """A job whose main process exited but left a child that never ends: the job
    stays running and says why, and cancel_all ends the child."""
    st = rt.start(["sh", "-c", "sleep 987 & echo started"])
    wait_for(lambda: "leftover" in (rt.status(st.job_id).reason or ""))
    now = rt.status(st.job_id)
    assert now.status is ExecutionStatus.RUNNING
    assert now.reason.startswith("main process exited 0; waiting for 1 leftover process")
    pgid = pid_info(rt, st.job_id)["pgid"]
    assert list(jobrunner.group_members(pgid))
    (final,) = rt.cancel_all(grace=1)
    assert not list(jobrunner.group_members(pgid))
    assert final.status is ExecutionStatus.CANCELLED


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


# -- a job is done when all its processes are --------------------------------------------


def test_a_job_is_not_completed_while_a_child_still_works(rt):
    """The main process exits 0 at once; its child works on for 2 s, then writes a
    file. Until the child is gone the job is running and says what it waits for."""
    st = rt.start(["sh", "-c", "(sleep 2; echo trained > child.txt) & echo main done"])
    done = rt.remote.root / "work" / "child.txt"
    wait_for(lambda: "leftover" in (rt.status(st.job_id).reason or ""))
    waiting = rt.status(st.job_id)
    assert waiting.status is ExecutionStatus.RUNNING and not done.exists()
    assert "main process exited 0; waiting for" in waiting.reason
    final = _wait_final(rt, st.job_id)
    assert done.read_text() == "trained\n"
    assert final.status is ExecutionStatus.COMPLETED and final.exit_code == 0
    assert final.reason is None


def test_a_child_in_a_session_of_its_own_is_still_waited_for(rt):
    """A child that left the job's process group (setsid) still carries the job's
    marker in its environment: the job waits for it too."""
    script = "import subprocess; subprocess.Popen(['sh', '-c', 'sleep 2; echo x > late.txt'], start_new_session=True)"  # noqa: E501
    st = rt.start([sys.executable, "-c", script])
    final = _wait_final(rt, st.job_id)
    assert (rt.remote.root / "work" / "late.txt").exists()
    assert final.status is ExecutionStatus.COMPLETED


def test_cancel_ends_leftovers_that_shed_the_marker(rt):
    """The main process is gone and its child cleared its environment: while the
    supervisor watches the group, cancel still ends it."""
    st = rt.start(["sh", "-c", "env -i sleep 30 & echo started"])
    wait_for(lambda: "leftover" in (rt.status(st.job_id).reason or ""))
    pgid = pid_info(rt, st.job_id)["pgid"]
    assert rt.cancel(st.job_id, grace=0.5).status is ExecutionStatus.CANCELLED
    assert not list(jobrunner.group_members(pgid))


def _wait_final(rt, job_id, timeout=20.0):
    wait_for(lambda: rt.status(job_id).status.is_final, timeout)
    return rt.status(job_id)


# -- a recorded process group is believed only once shown to be the job's ---------------


@pytest.fixture
def stranger():
    """A live process group this test started that has nothing to do with any job."""
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield p
    p.kill()
    p.wait()


def _fabricate(rt, job_id, pgid, **pid_fields):
    d = rt.remote.root / "jobs" / job_id
    d.mkdir(parents=True)
    cwd = str(rt.remote.root / "work")
    (d / "cmd.json").write_text(
        json.dumps({"argv": ["train"], "cwd": cwd, "requested_at": time.time(), "owner": "m"})
    )
    info = {"supervisor_pid": pgid, "pid": pgid, "pgid": pgid, "started_at": time.time()}
    (d / "pid.json").write_text(json.dumps({**info, **pid_fields}))


def test_a_reused_process_group_id_is_not_the_job(rt, stranger):
    """As after a reboot: the job's recorded group id now belongs to an unrelated
    group. The job is lost, and cancel leaves that group alone."""
    ticks = jobrunner.start_ticks(stranger.pid)
    boot = jobrunner.boot_id()
    _fabricate(rt, "j-control", stranger.pid, start_ticks=ticks, boot_id=boot)
    _fabricate(rt, "j-reboot", stranger.pid, start_ticks=ticks, boot_id="another-boot")
    _fabricate(rt, "j-reused", stranger.pid, start_ticks=ticks - 1, boot_id=boot)
    _fabricate(rt, "j-legacy", stranger.pid)  # no start time nor boot id, no marker
    # the check can tell: the very leader it recorded is the job's
    assert rt.status("j-control").status is ExecutionStatus.RUNNING
    rebooted = rt.status("j-reboot")
    assert rebooted.status is ExecutionStatus.LOST and "restarted" in rebooted.reason
    for job_id in ("j-reused", "j-legacy"):
        st = rt.status(job_id)
        assert st.status is ExecutionStatus.LOST and "no exit code" in st.reason
        assert rt.cancel(job_id, grace=0.2).status is ExecutionStatus.LOST
    assert rt.cancel("j-reboot", grace=0.2).status is ExecutionStatus.LOST
    time.sleep(0.3)
    assert stranger.poll() is None  # never signalled


# -- the supervisor leaves the caller's service cgroup where systemd is init -----------

FAKE_SYSTEMD_RUN = """#!/bin/sh
# stands in for systemd-run: records its arguments, then runs the command after --
printf '%s\\n' "$@" >> "$FAKE_SYSTEMD_RUN_LOG"
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""

FAILING_SYSTEMD_RUN = """#!/bin/sh
printf '%s\\n' "$@" >> "$FAKE_SYSTEMD_RUN_LOG"
echo "Failed to start transient scope unit: Interactive authentication required." >&2
exit 1
"""


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """Install a systemd-run on PATH; ``systemd(init=True)`` makes the runtime believe
    systemd is the init. Returns the file the fake records its arguments in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemd-run.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_RUN_LOG", str(log))

    def install(init: bool, script: str = FAKE_SYSTEMD_RUN):
        tool = bin_dir / "systemd-run"
        tool.write_text(script)
        tool.chmod(0o755)
        runtime_dir = tmp_path / "run-systemd-system"
        if init:
            runtime_dir.mkdir(exist_ok=True)
        monkeypatch.setenv(jobrunner.SYSTEMD_DIR_ENV, str(runtime_dir))
        return log

    return install


def test_supervisor_starts_in_a_systemd_scope_when_systemd_is_init(rt, systemd):
    log = systemd(init=True)
    st = rt.start(["sh", "-c", "echo hi; exit 7"])
    final = _wait_final(rt, st.job_id)
    assert final.status is ExecutionStatus.FAILED and final.exit_code == 7
    assert rt.read(st.job_id) == b"hi\n"
    argv = log.read_text().splitlines()
    sep = argv.index("--")
    assert "--scope" in argv[:sep] and f"--unit=trainctl-{st.job_id}" in argv[:sep]
    assert {"--collect", "--quiet", "--no-ask-password"} <= set(argv[:sep])
    assert argv[sep + 1 :][-2:] == ["supervise", st.job_id]


def test_without_systemd_the_supervisor_starts_plainly(rt, systemd):
    log = systemd(init=False)
    st = rt.start(["sh", "-c", "exit 5"])
    assert _wait_final(rt, st.job_id).exit_code == 5
    assert not log.exists()
    assert pid_info(rt, st.job_id)["supervisor_pid"] != os.getpid()


def test_a_failing_systemd_run_falls_back_to_the_plain_start(rt, systemd):
    log = systemd(init=True, script=FAILING_SYSTEMD_RUN)
    st = rt.start(["sh", "-c", "echo still ran"])
    final = _wait_final(rt, st.job_id)
    assert final.status is ExecutionStatus.COMPLETED
    assert rt.read(st.job_id) == b"still ran\n"
    assert "--scope" in log.read_text()
    err = (rt.remote.root / "jobs" / st.job_id / "supervisor.err").read_text()
    assert "Failed to start transient scope unit" in err


# -- a cut local download keeps the good copy ------------------------------------------

COPY = """
import sys
from pathlib import Path
from trainctl.remote.local import LocalRemote
LocalRemote(Path(sys.argv[1])).get(sys.argv[2], Path(sys.argv[3]))
"""


def test_a_killed_local_download_keeps_the_good_copy(tmp_path):
    """The copying process is killed mid-copy of a large file: the complete copy that
    was there before is intact and nothing truncated has taken its name."""
    machine = tmp_path / "machine"
    machine.mkdir()
    big = machine / "big.bin"
    with big.open("wb") as f:
        for _ in range(512):
            f.write(os.urandom(1 << 20))
    dest = tmp_path / "out"
    dest.mkdir()
    good = dest / "big.bin"
    good.write_bytes(b"complete")
    proc = subprocess.Popen([sys.executable, "-c", COPY, str(machine), str(big), str(good)])
    try:
        wait_for(lambda: any(p.name.startswith(".big.bin.") for p in dest.iterdir()), 30)
        assert proc.poll() is None, "the copy ended before it could be cut"
        proc.kill()
    finally:
        proc.wait()
    assert good.read_bytes() == b"complete"
    done = subprocess.run([sys.executable, "-c", COPY, str(machine), str(big), str(good)])
    assert done.returncode == 0
    assert good.stat().st_size == big.stat().st_size


def test_a_job_cancelled_while_pending_never_starts(rt, tmp_path):
    """Cancel before the supervisor has started: the job is cancelled, and a
    supervisor that starts later does not run it after all."""
    job_id = "j-late0001"
    d = rt.remote.root / "jobs" / job_id
    d.mkdir(parents=True)
    work = rt.remote.root / "work"
    work.mkdir(parents=True, exist_ok=True)
    (d / "cmd.json").write_text(
        json.dumps({"argv": ["touch"], "cwd": str(work), "requested_at": time.time(), "owner": "m"})
    )
    assert rt.status(job_id).status is ExecutionStatus.PENDING
    st = rt.cancel(job_id, grace=0.2)
    assert st.status is ExecutionStatus.CANCELLED and "before it started" in st.reason
    marker = tmp_path / "ran"
    spec = {"argv": ["touch", str(marker)], "cwd": str(work), "env": {}, "checkpoint_dir": "ck"}
    rt.ensure_installed()
    late = rt.remote.run(rt._argv("supervise", job_id), input=json.dumps(spec).encode())
    assert late.ok, late.error_text()
    assert not marker.exists()
    assert rt.status(job_id).status is ExecutionStatus.CANCELLED

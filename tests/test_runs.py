"""Runs outlive their machines: history, logs at home, cost (through the real CLI)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import trainctl
from polling import wait_for

SCRIPT = """\
import os, sys, time
for i in range(int(os.environ.get("NLINES", "3"))):
    print("line", i, flush=True)
if os.environ.get("DONE"):
    open(os.environ["DONE"], "w").write("done")
time.sleep(float(os.environ.get("SLEEP", "0")))
sys.exit(int(os.environ.get("CODE", "0")))
"""


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "job.py").write_text(SCRIPT)
    git = ["git", "-C", str(d), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "job.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "job"], check=True)
    return d


def head(project: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def test_a_run_is_kept_after_its_machine_with_its_log(project, trainctl_home):
    r = trainctl(
        "run", "--provider", "local", "--name", "box", "-w", str(project),
        "-e", "CODE=3", "-e", "API_TOKEN=s3cr3t-value", "--json", "--", "python", "job.py", "a b",
    )  # fmt: skip
    assert r.code == 3, r.err
    job = r.json()["job"]["job_id"]

    listed = trainctl("jobs", "--json").json()["jobs"]
    assert [(j["job_id"], j["resource_name"], j["machine_gone"]) for j in listed] == [
        (job, "box", True)
    ]
    assert "box (gone)" in trainctl("jobs").out
    assert trainctl("jobs", "box", "--json").json()["jobs"][0]["exit_code"] == 3

    shown = trainctl("monitor", job)
    assert shown.code == 0 and shown.out == "line 0\nline 1\nline 2\n"
    assert "box is gone: this is the log saved at home, complete" in shown.err
    followed = trainctl("monitor", job, "--follow")
    assert followed.code == 3 and followed.out == shown.out
    assert trainctl("monitor", "box", "--tail", "1").out == "line 2\n"

    (run,) = trainctl("runs", "--json").json()["runs"]
    assert run["id"] == job and run["machine"] == "box" and run["provider"] == "local"
    assert run["command"] == ["python", "job.py", "a b"]
    assert run["env_names"] == ["API_TOKEN", "CODE"]
    assert run["workdir"] == str(project) and run["git_commit"] == head(project)
    assert run["git_dirty"] is False and run["exit_code"] == 3 and run["how"] == "failed"
    assert run["started_at"] and run["ended_at"] and run["log_complete"] is True
    assert run["cost"] == 0.0  # the local machine is free

    show = trainctl("runs", "show", job)
    assert show.code == 0 and "API_TOKEN, CODE" in show.out and "(complete)" in show.out
    for where in [trainctl_home / "state.db", *(trainctl_home / "runs").rglob("*")]:
        if where.is_file():
            assert b"s3cr3t-value" not in where.read_bytes(), where
    assert oct((trainctl_home / "runs").stat().st_mode & 0o777) == "0o700"


def test_the_log_of_a_job_never_followed_comes_home_before_the_release(
    project, tmp_path, trainctl_home
):
    assert trainctl("create", "--provider", "local", "--name", "m").code == 0
    done = tmp_path / "done"
    (project / "untracked.txt").write_text("x")
    started = trainctl(
        "train", "m", "-w", str(project), "-e", f"DONE={done}", "-e", "NLINES=500",
        "--detach", "--json", "--", "python", "job.py",
    )  # fmt: skip
    assert started.code == 0, started.err
    job = started.json()["job_id"]
    wait_for(done.exists, timeout=30)
    time.sleep(1)  # its exit recorded
    assert not (trainctl_home / "runs" / job / "log").exists()  # nobody read it yet
    assert trainctl("terminate", "m", "-y").code == 0
    shown = trainctl("monitor", job)
    assert shown.out.splitlines() == [f"line {i}" for i in range(500)]
    assert "complete" in shown.err and "incomplete" not in shown.err
    run = trainctl("runs", "show", job, "--json").json()
    assert run["git_dirty"] is True and run["how"] == "completed"


def test_a_job_running_when_its_machine_is_released_ends_released(project):
    assert trainctl("create", "--provider", "local", "--name", "m").code == 0
    started = trainctl(
        "train", "m", "-w", str(project), "-e", "SLEEP=60", "--detach", "--json",
        "--", "python", "job.py",
    )  # fmt: skip
    job = started.json()["job_id"]
    wait_for(lambda: "line 2" in trainctl("monitor", job).out, timeout=30)
    assert trainctl("terminate", "m", "-y").code == 0
    (run,) = trainctl("runs", "--state", "released", "--json").json()["runs"]
    assert run["id"] == job and run["status"] == "cancelled" and run["ended_at"]
    assert trainctl("runs", "--state", "completed", "--json").json()["runs"] == []
    shown = trainctl("monitor", job)
    assert shown.out == "line 0\nline 1\nline 2\n"
    assert "incomplete" in shown.err


def test_runs_filters_and_sums_by_provider(project):
    for name in ("a", "b"):
        r = trainctl("run", "--provider", "local", "--name", name, "-w", str(project),
                     "--", "python", "job.py")  # fmt: skip
        assert r.code == 0, r.err
    listed = trainctl("runs", "--since", "7d", "--json").json()
    assert [r["machine"] for r in listed["runs"]] == ["b", "a"]  # newest first
    assert listed["totals"]["local"]["runs"] == 2
    assert listed["totals"]["local"]["machines"] == 2
    assert [r["machine"] for r in trainctl("runs", "-m", "a", "--json").json()["runs"]] == ["a"]
    text = trainctl("runs", "--since", "1d")
    assert text.code == 0 and "local: 2 runs, $0.000; its 2 machines billed $0.000" in text.out
    assert trainctl("runs", "--since", "2999-01-01").out.strip() == "No runs match."


@pytest.mark.parametrize("args", [["--since", "soon"], ["--since", "5"]])
def test_bad_runs_input_is_one_line(args):
    r = trainctl("runs", *args)
    assert r.code == 2 and "Traceback" not in r.err and r.err.startswith("error: bad --since")


def test_an_unknown_run_is_not_found():
    r = trainctl("runs", "show", "j-nope")
    assert r.code == 3 and "no run 'j-nope'" in r.err


def test_a_long_log_behind_a_small_read_limit_comes_home_in_one_copy(
    project, tmp_path, monkeypatch
):
    """Where each read is small (SSM's output limit), what is missing of a long log is
    copied whole, not read a few kilobytes at a time."""
    from trainctl.api import Trainctl
    from trainctl.remote.local import LocalRemote
    from trainctl.types import CreateResourceOptions, TrainingJob

    monkeypatch.setattr(LocalRemote, "max_read", 1000)
    copies, reads = [], []
    real_get, real_run = LocalRemote.get, LocalRemote.run

    def get(self, src, dest, **kw):
        copies.append(src)
        return real_get(self, src, dest, **kw)

    def run(self, argv, **kw):
        reads.extend(a for a in argv if a == "read")
        return real_run(self, argv, **kw)

    monkeypatch.setattr(LocalRemote, "get", get)
    monkeypatch.setattr(LocalRemote, "run", run)
    tc = Trainctl()
    record = tc.create("local", CreateResourceOptions(name="m"))
    done = tmp_path / "done"
    env = {"NLINES": "5000", "DONE": str(done)}
    tc.train("m", TrainingJob(["python", "job.py"], workdir=str(project), env=env))
    wait_for(done.exists, timeout=30)
    time.sleep(1)
    tc.terminate(record.id)
    (run_record,) = tc.store.runs()
    assert run_record.log_complete and len(copies) == 1 and len(reads) <= 2
    saved = bytearray()
    tc.monitor(run_record.id, sink=saved.extend)
    assert saved.decode().splitlines() == [f"line {i}" for i in range(5000)]

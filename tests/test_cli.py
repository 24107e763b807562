"""The CLI through its real entry point: JSON shapes, exit codes, bad input."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import trainctl

SCRIPT = """\
import os, sys, time
print("argv", sys.argv[1:], flush=True)
print("ckpt", os.environ["TRAINCTL_CHECKPOINT_DIR"], flush=True)
os.makedirs(os.environ["TRAINCTL_CHECKPOINT_DIR"], exist_ok=True)
open(os.path.join(os.environ["TRAINCTL_CHECKPOINT_DIR"], "model.txt"), "w").write("w")
time.sleep(float(os.environ.get("SLEEP", "0")))
sys.exit(int(os.environ.get("CODE", "0")))
"""


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "job.py").write_text(SCRIPT)
    return d


def no_traceback(text: str) -> bool:
    return "Traceback" not in text


def create(name="m1"):
    r = trainctl("create", "--provider", "local", "--name", name, "--json")
    assert r.code == 0, r.err
    return r.json()


def test_help_lists_commands():
    r = trainctl("--help")
    assert r.code == 0
    for cmd in ("create", "list", "train", "monitor", "logs", "run", "terminate", "check"):
        assert cmd in r.out


def test_create_list_status_terminate_json():
    created = create()
    assert (
        created["provider"] == "local" and created["name"] == "m1" and created["state"] == "running"
    )
    listed = trainctl("list", "--json").json()
    assert [r["name"] for r in listed["resources"]] == ["m1"]
    st = trainctl("status", "m1", "--json").json()
    assert st["id"] == created["id"] and st["state"] == "running"
    gone = trainctl("terminate", "m1", "-y", "--json")
    assert gone.code == 0 and gone.json()["state"] == "terminated"
    assert trainctl("list", "--json").json()["resources"] == []


def test_train_follow_exits_with_job_code(project):
    create()
    r = trainctl(
        "train",
        "m1",
        "--workdir",
        str(project),
        "--env",
        "CODE=3",
        "--",
        sys.executable,
        "job.py",
        "a b",
        "$(x)",
    )
    assert r.code == 3, r.err
    assert "argv ['a b', '$(x)']" in r.out
    jobs = trainctl("jobs", "m1", "--json").json()["jobs"]
    assert jobs[0]["status"] == "failed" and jobs[0]["exit_code"] == 3


def test_detach_then_monitor_and_download(project, tmp_path):
    create()
    r = trainctl(
        "train", "m1", "-w", str(project), "--detach", "--json", "--", sys.executable, "job.py"
    )
    assert r.code == 0, r.err
    job = r.json()
    assert job["status"] in ("running", "pending", "completed")
    m = trainctl("monitor", job["job_id"], "--follow", "--json")
    assert m.code == 0
    assert m.json()["status"] == "completed" and "argv []" in m.err
    logs = trainctl("logs", "m1")  # a resource means its newest job
    assert logs.code == 0 and "argv []" in logs.out
    d = trainctl("download", "m1", "checkpoints", str(tmp_path / "out"), "--json")
    assert d.code == 0, d.err
    assert (tmp_path / "out" / "model.txt").read_text() == "w"


def test_cancel(project):
    create()
    job = trainctl(
        "train",
        "m1",
        "-w",
        str(project),
        "-d",
        "--json",
        "-e",
        "SLEEP=60",
        "--",
        sys.executable,
        "job.py",
    ).json()
    r = trainctl("cancel", job["job_id"], "--grace", "1", "--json")
    assert r.code == 0 and r.json()["status"] == "cancelled"


def test_run_end_to_end(project, tmp_path):
    out = tmp_path / "outputs"
    r = trainctl(
        "run",
        "--provider",
        "local",
        "-w",
        str(project),
        "-o",
        "checkpoints",
        "--output-dir",
        str(out),
        "--json",
        "--",
        sys.executable,
        "job.py",
    )
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["terminated"] is True and doc["exit_code"] == 0
    assert doc["job"]["status"] == "completed"
    assert (out / "checkpoints" / "model.txt").exists()
    assert trainctl("list", "--json").json()["resources"] == []


def test_run_failing_job_still_terminates(project, tmp_path):
    r = trainctl(
        "run",
        "-p",
        "local",
        "-w",
        str(project),
        "-e",
        "CODE=5",
        "--output-dir",
        str(tmp_path / "o"),
        "--",
        sys.executable,
        "job.py",
    )
    assert r.code == 5
    assert "terminated" in r.err
    assert trainctl("list", "--json").json()["resources"] == []


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["create", "--provider", "nope"], 2, "unknown provider 'nope'"),
        (["status", "missing"], 3, "no resource 'missing'"),
        (["terminate", "missing", "-y"], 3, "no resource 'missing'"),
        (["monitor", "missing"], 3, "no job or resource 'missing'"),
        (["cancel", "j-00000000"], 3, "no job"),
        (["download", "missing", "a", "b"], 3, "no resource"),
        (["create", "-p", "local", "--gpu", "A100"], 2, "cannot choose GPUs"),
        (["create", "-p", "local", "--spot"], 2, "cannot rent spot"),
        (["create", "-p", "local", "--name", "bad name!"], 2, "bad name"),
        (["create", "-p", "local", "--gpu", "A100:x"], 2, "bad GPU spec"),
        (["create", "-p", "local", "--cloud", "secure"], 2, "does not take --cloud"),
        (["create", "-p", "local", "--instance-type", "g5.xlarge"], 2, "cannot choose an instance"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_bad_input_one_line_and_exit_code(args, code, needle):
    r = trainctl(*args)
    assert r.code == code, (r.out, r.err)
    assert needle in r.err
    assert len(r.err.strip().splitlines()) == 1 and no_traceback(r.err)
    j = trainctl(*args, "--json")
    assert j.code == code
    assert j.error()["exit_code"] == code


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workdir", "/does/not/exist", "--", "python"], "does not exist"),
        (["--"], "empty command"),
        (["--env", "NOEQUALS", "--", "python"], "bad --env"),
        (["--env", "1X=2", "--", "python"], "bad --env"),
    ],
)
def test_train_bad_input(args, needle):
    create()
    r = trainctl("train", "m1", *args)
    assert r.code == 2, r.err
    assert needle in r.err and no_traceback(r.err)


def test_debug_shows_traceback():
    r = trainctl("--debug", "status", "missing")
    assert r.code == 3 and "Traceback" in r.err


def test_terminate_asks_unless_yes():
    create()
    r = trainctl("terminate", "m1", input="")
    assert r.code == 2 and "pass -y" in r.err
    assert trainctl("list", "--json").json()["resources"]


def test_env_values_never_reach_a_command_line_or_the_store(project, trainctl_home):
    create()
    secret = "s3cr3t-" + os.urandom(4).hex()
    job = trainctl(
        "train",
        "m1",
        "-w",
        str(project),
        "-d",
        "--json",
        "-e",
        f"TOKEN={secret}",
        "-e",
        "SLEEP=30",
        "--",
        sys.executable,
        "job.py",
    ).json()
    time.sleep(0.5)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert secret.encode() not in cmdline
    for path in trainctl_home.rglob("*"):
        if path.is_file() and path.name != "log":
            assert secret.encode() not in path.read_bytes(), path
    trainctl("cancel", job["job_id"], "--grace", "1")


def test_providers_list_and_check():
    r = trainctl("providers", "list", "--json")
    assert r.code == 0
    names = [p["name"] for p in r.json()["providers"]]
    assert "local" in names
    c = trainctl("check", "--provider", "local", "--json")
    assert c.code == 0 and c.json()["providers"][0]["usable"] is True


def test_run_from_task_file(project, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(
        "provider: local\n"
        "workdir: proj\n"
        "env: {CODE: '0'}\n"
        "command: [" + repr(sys.executable) + ", job.py, 'a;b']\n"
        "outputs: [checkpoints]\n"
        "output_dir: results\n"
    )
    r = trainctl("run", "-f", str(task), "--json")
    assert r.code == 0, r.err
    assert "argv ['a;b']" in r.err
    assert (tmp_path / "results" / "checkpoints" / "model.txt").exists()
    # a flag wins over the file
    r = trainctl("run", "-f", str(task), "-e", "CODE=6", "--", sys.executable, "job.py")
    assert r.code == 6 and "argv []" in r.out


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus: 1\n", "unknown key 'bogus'"),
        ("spot: 'yes please'\n", "spot must be a bool"),
        ("- a list\n", "must be a mapping"),
        ("command: [unclosed\n", "line 2, column 1"),
    ],
)
def test_bad_task_file(tmp_path, text, needle):
    task = tmp_path / "task.yaml"
    task.write_text(text)
    r = trainctl("run", "-f", str(task))
    assert r.code == 2 and needle in r.err and no_traceback(r.err)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_run_that_keeps_a_machine_for_a_missing_output_exits_non_zero(project, tmp_path, json_flag):
    r = trainctl(
        "run", "-p", "local", "-w", str(project), "-o", "checkpoints", "-o", "typo_dir",
        "--output-dir", str(tmp_path / "o"), *json_flag, "--", sys.executable, "job.py",
    )  # fmt: skip
    assert r.code == 1, r.err
    assert "typo_dir" in (r.out if json_flag else r.err)
    assert (tmp_path / "o" / "checkpoints" / "model.txt").exists()
    (kept,) = trainctl("list", "--json").json()["resources"]
    assert trainctl("terminate", kept["name"], "-y").code == 0

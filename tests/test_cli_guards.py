"""Guards from the command line, on the local provider (a machine with nothing to
release: its guard ends jobs only): flags, task-file keys, autostop, list, jobs."""

from __future__ import annotations

import json

import pytest

from cli_helpers import trainctl


@pytest.fixture(autouse=True)
def quick_guard(trainctl_home):
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text("[guard]\ninterval = 0.2\ngrace = 2\n")


TRAPS_TERM = "trap 'echo saving; exit 3' TERM; while true; do sleep 0.1; done"


def test_a_deadline_ends_the_job_and_says_so(tmp_path):
    r = trainctl("create", "-p", "local", "-n", "box", "--max-duration", "4s")
    assert r.code == 0, r.err
    assert "guard on box: deadline in" in r.err and "then its jobs end" in r.err
    listed = trainctl("list").out
    assert "GUARDS" in listed and "s left" in listed
    t = trainctl("train", "box", "--no-sync", "--", "sh", "-c", TRAPS_TERM)  # follows
    assert t.code == 3, t.err  # the job's own exit code, from its TERM handler
    assert "saving" in t.out
    assert "cancelled (exit code 3): deadline: the machine's deadline passed" in t.err
    (job,) = trainctl("jobs", "box", "--json").json()["jobs"]
    assert job["status"] == "cancelled" and job["ended_by"] == "deadline"
    assert job["exit_code"] == 3
    assert "cancelled (deadline)" in trainctl("jobs", "box").out
    m = trainctl("monitor", job["job_id"])
    assert "saving" in m.out and "deadline: the machine's deadline passed" in m.err
    assert "deadline passed" in trainctl("autostop", "box").out
    late = trainctl("train", "box", "--no-sync", "--", "true")
    assert late.code == 2 and "deadline of box has passed" in late.err
    moved = trainctl("autostop", "box", "--max-duration", "never", "--json")
    assert moved.code == 0 and moved.json()["guards"]["deadline"] is None
    assert trainctl("train", "box", "--no-sync", "--", "true").code == 0
    assert trainctl("terminate", "box", "-y").code == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--release", "stop"], "has nothing to release: --release does not apply"),
        (["--max-spend", "5"], "--max-spend cannot be enforced"),
        (["--idle-stop", "5x"], "bad --idle-stop '5x'"),
        (["--idle-stop", "30"], "(give a unit: 30s or 30m)"),
        (["--max-duration", "0s"], "bad --max-duration '0s'"),
        (["--max-spend", "-1"], "bad --max-spend '-1'"),
    ],
)
def test_guards_a_machine_cannot_have_are_refused_before_anything_is_made(flags, message):
    r = trainctl("create", "-p", "local", "-n", "nope", *flags)
    assert r.code == 2, r.err
    (line,) = r.err.strip().splitlines()
    assert message in line and "Traceback" not in r.err
    assert trainctl("list", "--json").json()["resources"] == []


def test_an_idle_stop_on_a_machine_with_nothing_to_release_is_a_warning():
    r = trainctl("create", "-p", "local", "-n", "idle", "--idle-stop", "5m", "--json")
    assert r.code == 0, r.err
    assert "warning: local machines have nothing to release" in r.err
    assert r.json()["guards"] is None  # nothing to enforce
    assert trainctl("terminate", "idle", "-y").code == 0


def test_task_file_keys_set_the_guards(tmp_path):
    (tmp_path / "task.yaml").write_text(
        "provider: local\nname: tf\nmax_duration: 2h\nkeep: true\ncommand: [echo, hi]\n"
    )
    r = trainctl("run", "-f", str(tmp_path / "task.yaml"), "--no-sync", "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["guards"] == "deadline in 119m; then its jobs end"
    (res,) = trainctl("list", "--json").json()["resources"]
    assert res["guards"]["deadline"] - res["guards"]["launched_at"] == pytest.approx(7200)
    assert trainctl("terminate", "tf", "-y").code == 0
    assert json.dumps(doc)

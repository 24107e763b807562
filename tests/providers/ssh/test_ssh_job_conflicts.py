"""A second job on a busy machine, through the real CLI, on `local` and on `ssh`:
refused before any sync while it would share the running job's checkpoint directory
or change its code."""

from __future__ import annotations

import pytest

from cli_helpers import trainctl


@pytest.fixture(params=["local", "ssh"])
def box(request, tmp_path):
    if request.param == "local":
        args = ["--provider", "local"]
    else:
        sshd = request.getfixturevalue("sshd")
        machine = request.getfixturevalue("ssh_machine")
        args = ["--provider", "ssh", "--host", machine.target, "--key", str(sshd.client_key)]
    created = trainctl("create", *args, "--name", "box")
    assert created.code == 0, created.err
    yield "box"
    trainctl("terminate", "box", "-y")


def _error_line(r) -> str:
    (line,) = [ln for ln in r.err.splitlines() if ln.startswith("error")]
    assert "Traceback" not in r.err
    return line


def test_second_job_refused_on_a_shared_checkpoint_dir_or_a_sync(box, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "a.txt").write_text("a")
    train = ["train", box, "-w", str(project)]
    first = trainctl(*train, "-d", "--json", "--", "sleep", "60")
    assert first.code == 0, first.err
    job = first.json()["job_id"]

    (project / "b.txt").write_text("b")
    same = trainctl("train", box, "--no-sync", "-d", "--", "echo", "two")
    assert same.code == 2
    line = _error_line(same)
    assert f"job {job} is running" in line and "same checkpoint directory" in line
    assert "--checkpoint-dir" in same.err and f"trainctl cancel {job}" in same.err

    resync = trainctl(*train, "--checkpoint-dir", "other", "-d", "--", "echo", "three")
    assert resync.code == 2
    assert "a sync now would change its files under it" in _error_line(resync)
    assert "--no-sync" in resync.err
    missing = trainctl("download", box, "b.txt", str(tmp_path / "b.txt"))
    assert missing.code == 3, missing.err  # the refused train synced nothing

    other = trainctl("train", box, "--no-sync", "--checkpoint-dir", "other", "--", "echo", "ok")
    assert other.code == 0, other.err
    assert "ok" in other.out

    assert trainctl("cancel", job, "--grace", "1").code == 0
    after = trainctl(*train, "--", "echo", "after")
    assert after.code == 0, after.err
    assert trainctl("download", box, "b.txt", str(tmp_path / "b.txt")).code == 0


def test_the_checkpoint_dir_hint_leads_to_a_train_that_is_accepted(box, tmp_path):
    """Refused for a shared checkpoint directory while syncing, the hint names what
    the next try needs: another --checkpoint-dir and, since a sync is refused too
    while the job runs, --no-sync. Following only half of it is refused again."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "a.txt").write_text("a")
    first = trainctl("train", box, "-w", str(project), "-d", "--json", "--", "sleep", "60")
    assert first.code == 0, first.err
    job = first.json()["job_id"]

    same = trainctl("train", box, "-w", str(project), "-d", "--", "echo", "two")
    assert same.code == 2
    assert "same checkpoint directory" in _error_line(same)
    assert "(--checkpoint-dir DIR, with --no-sync)" in same.err, same.err

    half = trainctl("train", box, "-w", str(project), "--checkpoint-dir", "o", "--", "echo", "x")
    assert half.code == 2  # another directory alone is not enough while syncing
    full = trainctl("train", box, "--checkpoint-dir", "o", "--no-sync", "--", "echo", "ok")
    assert full.code == 0 and "ok" in full.out, full.err
    assert trainctl("cancel", job, "--grace", "1").code == 0

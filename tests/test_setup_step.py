"""The setup step (--setup, setup: in a task file): it runs before the command, in the
synced directory with the job's environment, its output in the job's log; it is
skipped on a machine where it ran with the same text and named files, and a failing
setup fails the job with its own exit code. On a real sshd machine, through the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cli_helpers import trainctl

SETUP = "echo installing from requirements.txt; cat requirements.txt; echo \"LR=$LR\""


@pytest.fixture
def box(ssh_machine, sshd, tmp_path):
    """An ssh machine registered as `box`, and a project directory to sync."""
    r = trainctl(
        "create", "-p", "ssh", "-n", "box", "--host", ssh_machine.target,
        "--key", str(sshd.client_key),
    )  # fmt: skip
    assert r.code == 0, r.err
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("six\n")
    return project


def train(project: Path, *args: str):
    return trainctl("train", "box", "-w", str(project), "--checkpoint-sync", "off", *args)


def test_setup_runs_once_then_again_only_when_a_named_file_changes(box):
    first = train(box, "--setup", SETUP, "-e", "LR=0.1", "--", "sh", "-c", "echo job ran")
    assert first.code == 0, first.err
    lines = first.out.splitlines()
    assert lines[:5] == [
        "[trainctl] setup: running",
        "installing from requirements.txt",
        "six",
        "LR=0.1",
        "[trainctl] setup: done; starting the command",
    ]
    assert lines[5] == "job ran"

    second = train(box, "--setup", SETUP, "-e", "LR=0.1", "--", "sh", "-c", "echo job ran")
    assert second.code == 0, second.err
    assert "installing" not in second.out
    assert second.out.startswith("[trainctl] setup: skipped")
    assert "job ran" in second.out

    (box / "requirements.txt").write_text("six\ntorch\n")
    third = train(box, "--setup", SETUP, "-e", "LR=0.1", "--", "true")
    assert "[trainctl] setup: running" in third.out and "torch" in third.out

    changed_text = train(box, "--setup", SETUP + " # v2", "--", "true")
    assert "[trainctl] setup: running" in changed_text.out

    skipped = train(box, "--setup", "echo must not run", "--no-setup", "--", "echo", "only")
    assert skipped.code == 0 and skipped.out.splitlines()[0] == "only"
    assert "setup" not in skipped.out


def test_a_failing_setup_fails_the_job_with_its_exit_code(box):
    r = train(
        box, "--setup", "echo step one\nsh -c 'exit 9'\necho never",
        "--", "sh", "-c", "echo the command ran",
    )  # fmt: skip
    assert r.code == 9
    (line,) = [x for x in r.err.splitlines() if x.startswith("job ") and " failed " in x]
    assert line.endswith("failed (exit code 9): the setup failed with exit code 9")
    log = trainctl("monitor", line.split()[1]).out
    assert "step one" in log and "never" not in log and "the command ran" not in log
    assert "[trainctl] setup: failed with exit code 9; the command did not start" in log

    # a failed setup is not remembered: the next job runs it again
    again = train(box, "--setup", "echo step one\nsh -c 'exit 9'\necho never", "--", "true")
    assert again.code == 9 and "step one" in again.out


def test_cancel_during_setup_ends_it_and_the_command_never_starts(box, tmp_path):
    started = train(
        box, "-d", "--json", "--setup", "echo setting up; sleep 60",
        "--", "sh", "-c", "echo the command ran",
    )  # fmt: skip
    job = json.loads(started.out)["job_id"]
    deadline = time.monotonic() + 30
    while "setting up" not in trainctl("monitor", job).out:
        assert time.monotonic() < deadline, "the setup never started"
        time.sleep(0.1)
    r = trainctl("cancel", job, "--json")
    assert r.code == 0, r.err
    status = json.loads(r.out)
    assert status["status"] == "cancelled"
    assert "the command ran" not in trainctl("monitor", job).out


def test_setup_from_a_task_file_and_the_flag_wins(box, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(
        "provider: local\nsetup: |\n  echo from the task file\ncommand: echo job\n"
        "checkpoint_sync: off\n"
    )
    r = trainctl("run", "-f", str(task), "-w", str(box))
    assert r.code == 0, r.err
    assert r.out.splitlines()[:3] == [
        "[trainctl] setup: running",
        "from the task file",
        "[trainctl] setup: done; starting the command",
    ]
    r = trainctl("run", "-f", str(task), "-w", str(box), "--no-setup")
    assert r.code == 0 and r.out.splitlines()[0] == "job"


def test_the_jobs_variables_are_left_for_a_shell_on_the_machine(box, ssh_machine):
    r = train(box, "-e", "SECRET=hunter2", "--", "true")
    assert r.code == 0, r.err
    (env_file,) = ssh_machine.runtime_root.glob("*/job.env")
    text = env_file.read_text()
    assert "export TRAINCTL_JOB_ID=j-" in text and "TRAINCTL_CHECKPOINT_DIR=" in text
    assert "hunter2" not in text and "SECRET" not in text
    assert env_file.stat().st_mode & 0o777 == 0o600

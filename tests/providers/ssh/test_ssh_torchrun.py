"""`trainctl run` of examples/ddp.py with a real `torchrun` across ssh machines (the
test sshd on loopback, one Unix user and home per node), gloo on CPU: the ranks end
with identical weights; a node killed ends the job, and nothing is left on the others.

torchrun is given no flag: it reads the PET_* variables trainctl sets on every node.
The machines' users run the Python with torch that `make test` builds for every user
(TRAINCTL_TEST_NODE_PYTHON); without it these tests are skipped."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from cli_helpers import Cli, trainctl
from polling import wait_for
from sshd import free_port
from trainctl.store import Store

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ddp.py"
CHECKSUM = re.compile(r"^\[node (\d)\] rank (\d+)/(\d+) checksum ([0-9a-f]{64})$", re.M)


@pytest.fixture
def torchrun() -> str:
    python = os.environ.get("TRAINCTL_TEST_NODE_PYTHON")
    if not python or not os.access(python, os.X_OK):
        pytest.skip("TRAINCTL_TEST_NODE_PYTHON names no Python with torch (make test builds it)")
    return str(Path(python).with_name("torchrun"))


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "ddp.py")
    return d


def group_args(sshd, count: int) -> tuple[list, list[str]]:
    machines = [sshd.new_machine() for _ in range(count)]
    args = [a for m in machines for a in ("--host", m.target)]
    return machines, [*args, "--key", str(sshd.client_key)]


def test_three_nodes_train_one_model_with_torchrun(sshd, torchrun, project, tmp_path):
    machines, args = group_args(sshd, 3)
    out = tmp_path / "out"
    r = trainctl(
        "run", "-p", "ssh", *args, "-w", str(project), "--output-dir", str(out),
        "-e", f"PET_MASTER_PORT={free_port()}", "-e", "PYTHONWARNINGS=ignore",
        "--", torchrun, "ddp.py",
        timeout=240,
    )  # fmt: skip
    assert r.code == 0, r.out[-4000:] + r.err[-2000:]
    found = CHECKSUM.findall(r.out)
    assert sorted((node, rank, world) for node, rank, world, _ in found) == [
        ("0", "0", "3"),
        ("1", "1", "3"),
        ("2", "2", "3"),
    ], r.out
    assert len({digest for *_, digest in found}) == 1  # every rank has the same weights
    assert (out / "checkpoints" / "ddp.pt").is_file()  # node 0's checkpoint came home
    assert Store().resources() == [] and Store().groups() == []


def test_a_killed_node_ends_the_job_and_the_others_are_gone(sshd, torchrun, project):
    machines, args = group_args(sshd, 2)
    run = Cli(
        "run", "-p", "ssh", *args, "-w", str(project), "--grace", "2", "--checkpoint-sync", "off",
        "-e", f"PET_MASTER_PORT={free_port()}", "-e", "PYTHONWARNINGS=ignore",
        "-e", "DDP_STEPS=100000", "-e", "DDP_TIMEOUT_SECONDS=20",
        "--", torchrun, "ddp.py",
    )  # fmt: skip
    run.wait_for(run.out, "[node 1] rank 1/2 training", timeout=120)
    job = next(line.split()[1] for line in run.err if "running on 2 nodes" in line)
    began = time.monotonic()
    killed = trainctl("cancel", f"{job}-n1", "--grace", "0")  # SIGKILL at once
    assert killed.code == 0, killed.err
    code = run.finish(timeout=120)
    assert code != 0
    assert time.monotonic() - began < 90
    for m in machines:
        wait_for(lambda m=m: m.processes() == [], 20)

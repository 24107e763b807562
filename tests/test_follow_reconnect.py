"""`trainctl run` on the ssh provider while the machine cannot be reached for a while:
following reconnects instead of destroying a healthy job, and giving up keeps it.

The outage is real: the test's own sshd stops listening and its sessions to the
machine are killed (the job, detached, lives on), then sshd comes back on its port.
"""

from __future__ import annotations

import time

import pytest

from cli_helpers import trainctl
from sshd import Machine, SSHServer
from test_run_signals import Cli

# Trains until the test says the outage is over (a file it writes on the machine).
JOB = """\
import os, sys, time
print("epoch 1 done", flush=True)
while not os.path.exists(os.environ["RELEASE"]):
    time.sleep(0.1)
d = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(d, exist_ok=True)
open(os.path.join(d, "ckpt.txt"), "w").write("final")
print("done", flush=True)
"""


@pytest.fixture
def box(sshd_factory, tmp_path, trainctl_home):
    server: SSHServer = sshd_factory()
    machine = server.new_machine()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    return server, machine, project


def configure(home, timeout: float) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"[follow]\nreconnect_timeout = {timeout}\nreconnect_max_interval = 1\n"
    )


def start_run(server: SSHServer, machine: Machine, project, out, *flags: str) -> Cli:
    return Cli(
        "run", "-p", "ssh", "--host", machine.target, "--key", str(server.client_key),
        "--name", "box", "-w", str(project), "-o", "checkpoints", "--output-dir", str(out),
        "-e", f"RELEASE={machine.home / 'release'}", *flags, "--", "python3", "job.py",
    )  # fmt: skip


def outage(server: SSHServer, machine: Machine) -> None:
    """No new connection is accepted and every open one is cut."""
    server._kill_daemon()
    assert machine.drop_connections() > 0


def test_run_rides_out_an_outage_longer_than_following_used_to(box, tmp_path, trainctl_home):
    server, machine, project = box
    configure(trainctl_home, timeout=120)
    out = tmp_path / "out"
    run = start_run(server, machine, project, out)
    run.wait_for(run.out, "epoch 1 done")
    outage(server, machine)
    time.sleep(9)  # following used to give up after five tries, about 7 s
    assert run.proc.poll() is None, run.stderr
    assert "reconnecting" in run.stderr
    server.start(server.port)
    machine.write("release", "go")
    assert run.finish(timeout=90) == 0, run.stderr
    assert "done" in "".join(run.out)
    assert (out / "checkpoints" / "ckpt.txt").read_text() == "final"
    assert trainctl("list", "--json").json()["resources"] == []


def test_giving_up_keeps_the_job_and_the_machine(box, tmp_path, trainctl_home):
    server, machine, project = box
    configure(trainctl_home, timeout=3)
    run = start_run(server, machine, project, tmp_path / "out", "--max-duration", "2h")
    run.wait_for(run.out, "epoch 1 done")
    outage(server, machine)
    assert run.finish(timeout=60) == 1, run.stderr
    assert "gave up following" in run.stderr
    assert "It stays under its guards: deadline in " in run.stderr
    (kept,) = trainctl("list", "--json").json()["resources"]
    assert kept["name"] == "box"
    jobs = [line for line in run.err if line.startswith("job j-")]
    job_id = jobs[-1].split()[1]
    assert f"trainctl monitor {job_id} --follow" in run.stderr
    assert "trainctl terminate box" in run.stderr

    server.start(server.port)
    machine.write("release", "go")
    follow = trainctl("monitor", job_id, "--follow")
    assert follow.code == 0, follow.err
    assert "done" in follow.out
    got = trainctl("download", "box", "checkpoints", str(tmp_path / "later"))
    assert got.code == 0, got.err
    assert (tmp_path / "later" / "ckpt.txt").read_text() == "final"
    assert trainctl("terminate", "box", "-y").code == 0

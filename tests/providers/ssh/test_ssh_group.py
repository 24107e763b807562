"""Groups of ssh machines (--host once per node): all or nothing, one job on every node
with torchrun's variables, one log view, the first failure cancels the rest."""

from __future__ import annotations

import json
import signal
import time

import pytest

from cli_helpers import Cli, trainctl
from sshd import free_port
from trainctl.store import Store


@pytest.fixture
def hosts(sshd):
    machines = [sshd.new_machine(), sshd.new_machine()]
    args = []
    for m in machines:
        args += ["--host", m.target]
    return machines, [*args, "--key", str(sshd.client_key)]


def test_a_group_is_created_listed_and_terminated_whole(hosts):
    machines, args = hosts
    r = trainctl("create", "-p", "ssh", "-n", "g", *args, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["group"] == "g" and [n["name"] for n in doc["nodes"]] == ["g-0", "g-1"]
    listed = {row["name"] for row in trainctl("list", "--json").json()["resources"]}
    assert {"g-0", "g-1"} <= listed
    r = trainctl("terminate", "g", "-y")
    assert r.code == 0, r.err
    assert "terminated group g" in r.out
    assert Store().resources() == [] and Store().group("g") is None


def test_the_job_runs_on_every_node_with_torchruns_variables(hosts, tmp_path):
    machines, args = hosts
    script = (
        'echo "rank=$NODE_RANK of $NNODES master=$MASTER_ADDR:$MASTER_PORT '
        'nproc=$NPROC_PER_NODE ips=$TRAINCTL_NODE_IPS '
        'pet=$PET_NODE_RANK/$PET_NNODES/$PET_NPROC_PER_NODE/$PET_MASTER_ADDR:$PET_MASTER_PORT"'
    )
    r = trainctl("run", "-p", "ssh", *args, "--no-sync", "--", "sh", "-c", script)
    assert r.code == 0, r.err
    ips = f"{machines[0].host},{machines[1].host}"
    master = f"{machines[0].host}:29500"
    lines = sorted(line for line in r.out.splitlines() if line.startswith("[node "))
    assert lines == [
        f"[node 0] rank=0 of 2 master={master} nproc=1 ips={ips} pet=0/2/1/{master}",
        f"[node 1] rank=1 of 2 master={master} nproc=1 ips={ips} pet=1/2/1/{master}",
    ]
    assert "terminated group" in r.err
    assert Store().resources() == []


def test_one_failing_node_ends_the_job_with_its_code_and_cancels_the_others(hosts):
    machines, args = hosts
    script = 'if [ "$NODE_RANK" = 1 ]; then sleep 1; exit 3; fi; echo waiting; sleep 120'
    began = time.monotonic()
    r = trainctl("run", "-p", "ssh", *args, "--no-sync", "--grace", "2", "--", "sh", "-c", script)
    assert r.code == 3, r.err
    assert time.monotonic() - began < 60
    assert "node 1 ended failed; cancelling the other nodes" in r.err
    assert "node 0: job" in r.err and "cancelled" in r.err
    for m in machines:
        assert m.processes() == [], m  # nothing of the job is left on any node


def test_a_node_that_cannot_be_made_releases_the_ones_made(sshd, tmp_path):
    good = sshd.new_machine()
    nowhere = f"{good.user}@127.0.0.1:{free_port()}"
    r = trainctl(
        "create", "-p", "ssh", "-n", "g", "--host", good.target, "--host", nowhere,
        "--key", str(sshd.client_key),
    )  # fmt: skip
    assert r.code != 0
    assert "node 1 of 2 (g-1) could not be made" in r.err
    assert "released the other nodes (g-0)" in r.err
    assert Store().resources() == [] and Store().group("g") is None


def test_nodes_and_hosts_must_agree(hosts):
    _, args = hosts
    r = trainctl("create", "-p", "ssh", "--nodes", "3", *args)
    assert r.code == 2 and "--nodes 3 but 2 hosts" in r.err


def test_a_provider_without_groups_is_refused_before_anything_is_rented(lyceum_sshd):
    r = trainctl("create", "-p", "lyceum", "--gpu", "A100", "--nodes", "2")
    assert r.code == 2 and "multi-node" in r.err, r.err
    assert lyceum_sshd.vms == {}


def test_monitor_shows_every_nodes_log_or_one(hosts):
    _, args = hosts
    r = trainctl(
        "run", "-p", "ssh", "-n", "g", *args, "--no-sync", "--keep",
        "--", "sh", "-c", 'echo "hello from $NODE_RANK"; printf "no newline $NODE_RANK"',
    )  # fmt: skip
    assert r.code == 0, r.err
    (line,) = [x for x in r.err.splitlines() if "running on 2 nodes" in x]
    job = line.split()[1]
    both = trainctl("monitor", job)
    assert sorted(both.out.splitlines()) == [
        "[node 0] hello from 0",
        "[node 0] no newline 0",
        "[node 1] hello from 1",
        "[node 1] no newline 1",
    ]
    one = trainctl("monitor", "g", "--node", "1", "--follow")
    assert one.code == 0 and one.out == "hello from 1\nno newline 1"
    assert trainctl("monitor", job, "--node", "5").code == 2
    assert trainctl("terminate", "g", "-y").code == 0


def test_train_status_jobs_and_download_take_the_group(hosts, tmp_path):
    machines, args = hosts
    assert trainctl("create", "-p", "ssh", "-n", "g", *args).code == 0
    project = tmp_path / "project"
    project.mkdir()
    r = trainctl(
        "train", "g", "-w", str(project), "--checkpoint-sync", "off",
        "--", "sh", "-c", 'echo "$NODE_RANK" > "rank.txt"; echo "node $NODE_RANK done"',
    )  # fmt: skip
    assert r.code == 0, r.err
    assert sorted(r.out.splitlines()) == ["[node 0] node 0 done", "[node 1] node 1 done"]
    status = trainctl("status", "g", "--json").json()
    assert [n["name"] for n in status["nodes"]] == ["g-0", "g-1"]
    jobs = trainctl("jobs", "g", "--json").json()["jobs"]
    assert sorted(j["job_id"].rsplit("-", 1)[1] for j in jobs) == ["n0", "n1"], jobs
    r = trainctl("download", "g", "rank.txt", str(tmp_path / "rank.txt"))
    assert r.code == 0, r.err
    assert (tmp_path / "rank.txt").read_text() == "0\n"  # node 0's
    assert trainctl("terminate", "g", "-y").code == 0


def test_ctrl_c_cancels_the_job_on_every_node_and_releases_the_group(hosts):
    machines, args = hosts
    run = Cli(
        "run", "-p", "ssh", *args, "--no-sync", "--grace", "2",
        "--", "sh", "-c", 'trap "echo saved; exit 143" TERM; echo up; while :; do sleep 0.1; done',
    )  # fmt: skip
    run.wait_for(run.out, "[node 1] up")
    run.wait_for(run.out, "[node 0] up")
    run.signal(signal.SIGINT)
    assert run.finish() == 130
    err = "".join(run.err)
    assert "cancelling job" in err and "terminated" in err
    assert Store().resources() == [] and Store().groups() == []
    for m in machines:
        assert m.processes() == []


def test_one_host_for_two_nodes_is_refused_before_anything(ssh_machine, sshd):
    r = trainctl("create", "-p", "ssh", "--host", ssh_machine.target, "--nodes", "2")
    assert r.code == 2 and "--host was given 1 time(s) for 2 nodes" in r.err, r.err
    assert Store().resources() == []
    r = trainctl("create", "-p", "local", "--nodes", "2")
    assert r.code == 2 and "missing capability: multi-node" in r.err


def test_node_0s_checkpoints_come_home_while_the_group_runs(hosts, tmp_path):
    _, args = hosts
    home = tmp_path / "out"
    job = (
        'if [ "$NODE_RANK" = 0 ]; then mkdir -p "$TRAINCTL_CHECKPOINT_DIR"; '
        'echo "epoch 1" > "$TRAINCTL_CHECKPOINT_DIR/ckpt-1.txt"; fi; '
        "echo saved; sleep 60"
    )
    run = Cli(
        "run", "-p", "ssh", *args, "--no-sync", "--grace", "1", "--checkpoint-sync", "1s",
        "--output-dir", str(home), "--", "sh", "-c", job,
    )  # fmt: skip
    run.wait_for(run.out, "[node 0] saved")
    landed = home / "checkpoints" / "ckpt-1.txt"
    deadline = time.time() + 30
    while not landed.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert landed.read_text() == "epoch 1\n"  # home while the job still runs
    assert run.proc.poll() is None
    run.signal(signal.SIGINT)
    assert run.finish() == 130
    assert Store().resources() == [] and Store().groups() == []

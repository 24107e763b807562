"""examples/ddp.py under a real `torchrun --nnodes 2` with gloo on CPU: as two local
processes, across two machines of the test sshd, and with one node killed.

The sshd fixture's users cannot run .venv's interpreter (it may live under a private
/root), so these tests use the Python with torch that `make test` builds for every
user and names in TRAINCTL_TEST_NODE_PYTHON; they are skipped without it."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import pytest

from sshd import free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ddp.py"
CHECKSUM = re.compile(r"^rank (\d+)/(\d+) checksum ([0-9a-f]{64})$", re.MULTILINE)
# what trainctl sets on every node; torchrun reads them through its flags
TORCHRUN = (
    "exec {python} -m torch.distributed.run --nnodes $NNODES --nproc-per-node $NPROC_PER_NODE"
    " --node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port $MASTER_PORT {script}"
)


@pytest.fixture
def node_python() -> str:
    python = os.environ.get("TRAINCTL_TEST_NODE_PYTHON")
    if not python:
        pytest.skip("TRAINCTL_TEST_NODE_PYTHON is not set (make test builds it: NODE_VENV)")
    if not os.access(python, os.X_OK):
        pytest.skip(f"TRAINCTL_TEST_NODE_PYTHON={python} does not exist (run make test)")
    return python


def node_env(rank: int, port: int, nnodes: int = 2) -> dict[str, str]:
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "NODE_RANK": str(rank),
        "NNODES": str(nnodes),
        "NPROC_PER_NODE": "1",
        "TRAINCTL_NODE_IPS": ",".join(["127.0.0.1"] * nnodes),
        "PYTHONWARNINGS": "ignore",
    }


def start_local(python: str, rank: int, port: int, workdir: Path, **extra: str):
    env = {**os.environ, **node_env(rank, port), **extra}
    env["TRAINCTL_CHECKPOINT_DIR"] = str(workdir / "checkpoints")
    workdir.mkdir(parents=True, exist_ok=True)
    script = TORCHRUN.format(python=shlex.quote(python), script=shlex.quote(str(EXAMPLE)))
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun puts its workers in sessions of
    their own, so the process group alone would miss them)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            for child in (task / "children").read_text().split():
                found += tree(int(child))
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a node this test started: its shell's torchrun and the worker below it,
    by pid, as a machine that dies takes all its processes with it."""
    if proc.poll() is not None:
        return  # reaped: its pid may be another process's by now
    for pid in tree(proc.pid):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def finish(procs: list[subprocess.Popen], timeout: float = 90) -> list[tuple[int, str, str]]:
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            kill_tree(proc)
            proc.wait()
    return results


def checksums(outputs: list[str]) -> dict[int, str]:
    found = {}
    for out in outputs:
        for rank, world, digest in CHECKSUM.findall(out):
            assert world == "2"
            found[int(rank)] = digest
    return found


def both_ranks_agree(results: list[tuple[int, str, str]]) -> None:
    """Both ranks ended 0 and printed the same weights' checksum."""
    for rc, out, err in results:
        assert rc == 0, out + err[-3000:]
    found = checksums([out for _, out, _ in results])
    assert set(found) == {0, 1}
    assert found[0] == found[1]


def test_two_local_nodes_end_with_the_same_weights(node_python, tmp_path):
    port = free_port()
    procs = [start_local(node_python, r, port, tmp_path / f"node{r}") for r in (1, 0)]
    results = finish(procs)
    both_ranks_agree(results)
    assert (tmp_path / "node0" / "checkpoints" / "ddp.pt").is_file()
    assert not (tmp_path / "node1" / "checkpoints").exists()


def test_two_sshd_machines_end_with_the_same_weights(node_python, sshd):
    machines = [sshd.new_machine(), sshd.new_machine()]
    try:
        port = free_port()
        procs = []
        for rank in (1, 0):
            machine = machines[rank]
            machine.write("ddp.py", EXAMPLE.read_text())
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in node_env(rank, port).items())
            torchrun = TORCHRUN.format(python=shlex.quote(node_python), script="ddp.py")
            remote = f"cd && export {env} && {torchrun}"
            procs.append(
                subprocess.Popen(
                    sshd.ssh_argv(machine, remote),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        results = finish(procs)
        both_ranks_agree(results)
        assert (machines[0].home / "checkpoints" / "ddp.pt").is_file()
    finally:
        for machine in machines:
            machine.destroy()


def test_a_killed_node_makes_the_other_fail_in_bounded_time(node_python, tmp_path):
    port = free_port()
    # long enough that node 1 dies mid-training; a lost peer fails within the timeout
    extra = {"DDP_STEPS": "1000000", "DDP_TIMEOUT_SECONDS": "15"}
    node1 = start_local(node_python, 1, port, tmp_path / "node1", **extra)
    node0 = start_local(node_python, 0, port, tmp_path / "node0", **extra)
    try:
        assert node1.stderr is not None
        deadline = time.monotonic() + 60
        for line in node1.stderr:
            if "training" in line:
                break
            assert time.monotonic() < deadline, "node 1 never started training"
        else:
            pytest.fail(f"node 1 ended before training: {node1.wait()}")
        kill_tree(node1)  # the machine of node 1 dies: its torchrun and its worker
        started = time.monotonic()
        out, err = node0.communicate(timeout=45)
        took = time.monotonic() - started
    finally:
        kill_tree(node0)
        kill_tree(node1)
        node1.wait()
    assert node0.returncode != 0, out + err[-3000:]
    assert "checksum" not in out
    assert took < 45

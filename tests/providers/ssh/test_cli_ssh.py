"""`trainctl create --provider ssh` and a job on the machine, through the real entry point."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import trainctl
from sshd import Machine, SSHServer, free_port, keygen

JOB = """\
import os, sys
print("argv", sys.argv[1:], flush=True)
d = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(d, exist_ok=True)
open(os.path.join(d, "model.txt"), "w").write("w")
sys.exit(int(os.environ.get("CODE", "0")))
"""


def test_ssh_machine_from_create_to_terminate(sshd: SSHServer, ssh_machine: Machine, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    created = trainctl(
        "create",
        "--provider",
        "ssh",
        "--host",
        ssh_machine.target,
        "--key",
        str(sshd.client_key),
        "--name",
        "box",
        "--price-per-hour",
        "0.75",
        "--json",
    )
    assert created.code == 0, created.err
    c = created.json()
    assert (c["provider"], c["name"], c["price_per_hour"]) == ("ssh", "box", 0.75)

    st = trainctl("status", "box", "--json").json()
    assert st["state"] == "running" and st["raw_state"] == "reachable"
    assert st["ssh_user"] == ssh_machine.user and st["ssh_port"] == ssh_machine.port
    assert "raw state: reachable" in trainctl("status", "box").out  # said in plain text too

    r = trainctl(
        "train", "box", "--workdir", str(project), "--env", "CODE=3", "--",
        "python3", "job.py", "a b", "$(x)",
    )  # fmt: skip
    assert r.code == 3, r.err
    assert "argv ['a b', '$(x)']" in r.out
    work = ssh_machine.home / ".trainctl" / c["id"] / "work"
    assert (work / "job.py").read_text() == JOB

    d = trainctl("download", "box", "checkpoints", str(tmp_path / "out"), "--json")
    assert d.code == 0, d.err
    assert (Path(tmp_path) / "out" / "model.txt").read_text() == "w"

    gone = trainctl("terminate", "box", "-y", "--json")
    assert gone.code == 0, gone.err
    assert gone.json()["state"] == "terminated"
    assert trainctl("list", "--json").json()["resources"] == []
    assert (work / "job.py").exists()  # machine untouched


def test_create_errors_are_one_line(sshd: SSHServer, ssh_machine: Machine, tmp_path):
    port = free_port()
    cases = [
        (["--host", f"u@127.0.0.1:{port}"], 1, f"cannot reach u@127.0.0.1:{port}"),
        (
            ["--host", ssh_machine.target, "--key", str(keygen(tmp_path / "k", "other"))],
            4,
            f"{ssh_machine.target} refused the SSH key",
        ),
        ([], 2, "needs the machine's address"),
        (["--host", "u@h:notaport"], 2, "bad SSH host"),
    ]
    for args, code, needle in cases:
        r = trainctl("create", "--provider", "ssh", *args)
        assert r.code == code, (args, r.err)
        # progress lines may come first; the error is one line
        (error,) = [ln for ln in r.err.splitlines() if ln.startswith("error")]
        assert needle in error and "Traceback" not in r.err, r.err
    assert trainctl("list", "--json").json()["resources"] == []


def test_run_on_ssh_names_the_directory_it_leaves(sshd: SSHServer, ssh_machine: Machine, tmp_path):
    """`run` releases an ssh machine as `terminate` does, which leaves the
    registration's directory (code, checkpoints, logs) on the host: it says so."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    r = trainctl(
        "run", "-p", "ssh", "--host", ssh_machine.target, "--key", str(sshd.client_key),
        "-w", str(project), "--output-dir", str(tmp_path / "out"), "--json",
        "--", "python3", "job.py",
    )  # fmt: skip
    assert r.code == 0, r.err
    result = r.json()
    rid = result["resource"]["id"]
    assert result["terminated"] is True
    left = f"left ~/.trainctl/{rid} on {ssh_machine.target}"
    assert left in result["released_note"]
    assert (ssh_machine.home / ".trainctl" / rid / "work" / "checkpoints" / "model.txt").exists()

    plain = trainctl(
        "run", "-p", "ssh", "--host", ssh_machine.target, "--key", str(sshd.client_key),
        "-w", str(project), "--output-dir", str(tmp_path / "out2"), "--", "python3", "job.py",
    )  # fmt: skip
    assert plain.code == 0, plain.err
    assert "terminated tc-" in plain.err and ": left ~/.trainctl/ssh-" in plain.err, plain.err


def test_ctrl_c_while_checking_a_host_leaves_no_record(tmp_path):
    """Ctrl-C while `create` waits for a host that never answers: nothing was
    registered, so nothing is left in `list` (not a `creating` placeholder)."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as silent:  # accepts the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainctl", "create", "-p", "ssh",
             "--host", f"u@127.0.0.1:{port}", "--name", "slow"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        silent.settimeout(30)
        conn, _ = silent.accept()  # ssh is connected: the check has begun
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # the trainctl process this test started
        _, err = proc.communicate(timeout=30)
        conn.close()
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "Ctrl-C: interrupted"
    assert trainctl("list", "--json").json()["resources"] == []
    assert trainctl("create", "-p", "local", "--name", "slow").code == 0  # the name is free

"""`trainctl ssh-config`: the user's own ssh reaches a machine by its name."""

from __future__ import annotations

import subprocess

from test_ssh_access import create

from cli_helpers import trainctl
from sshd import Machine, SSHServer, find_tool


def test_the_include_file_lets_ssh_reach_the_machine_by_name(
    sshd: SSHServer, ssh_machine: Machine, trainctl_home, tmp_path
):
    create(sshd, ssh_machine, "exp1")
    assert trainctl("create", "--provider", "local", "--name", "here").code == 0
    r = trainctl("ssh-config", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    path = trainctl_home / "ssh_config"
    assert doc["path"] == str(path) and path.stat().st_mode & 0o777 == 0o600
    (host,) = doc["hosts"]
    assert (host["name"], host["HostName"], host["Port"]) == (
        "exp1",
        "127.0.0.1",
        str(ssh_machine.port),
    )
    (skipped,) = doc["skipped"]
    assert skipped["name"] == "here" and "trainctl ssh here" in skipped["reason"]
    assert doc["include"] == f"Include {path}" and not doc["included"]
    text = path.read_text()
    assert "Host exp1\n" in text and f"UserKnownHostsFile {trainctl_home}/ssh/known_hosts" in text

    ssh = find_tool("ssh")
    p = subprocess.run(
        [ssh, "-F", str(path), "-o", "BatchMode=yes", "exp1", "echo", "in", "exp1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (p.returncode, p.stdout) == (0, "in exp1\n"), p.stderr

    # through ~/.ssh/config's Include line, as users set it up
    user_config = tmp_path / "user-home" / ".ssh" / "config"
    user_config.parent.mkdir()
    user_config.write_text(doc["include"] + "\nHost other\n    User nobody\n")
    p = subprocess.run(
        [ssh, "-F", str(user_config), "-o", "BatchMode=yes", "exp1", "true"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    again = trainctl("ssh-config")
    assert again.code == 0 and "add this line" not in again.out  # it says nothing more
    assert "exp1: " in again.out and "skipped here" in again.out

    assert trainctl("terminate", "exp1", "-y").code == 0
    assert trainctl("ssh-config").code == 0
    assert "Host exp1" not in path.read_text()  # the file is rewritten whole

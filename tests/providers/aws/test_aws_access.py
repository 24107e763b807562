"""`trainctl ssh` on an AWS machine: Session Manager through stand-ins of the AWS CLI
and its plugin (scripts that record how they were called, then run the session's
command here as the agent would, with a home of their own)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sys

import pytest

from aws_support import set_up
from cli_helpers import Cli, trainctl
from sshd import free_port

REGION = "eu-north-1"

STUB_AWS = f"""\
#!{sys.executable}
import json, os, shlex, subprocess, sys
with open(os.environ["STUB_LOG"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, f)
params = json.loads(sys.argv[sys.argv.index("--parameters") + 1])
if "localPortNumber" in params:  # port forwarding: listen until ended
    import signal, socket
    listener = socket.socket()  # as the plugin's (Go) listener: with SO_REUSEADDR
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(params["localPortNumber"][0])))
    listener.listen()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.pause()
argv = shlex.split(params["command"][0])
assert argv[:2] == ["sudo", "-H"], argv
print("Starting session with SessionId: stub-1", flush=True)
env = {{**os.environ, "HOME": os.environ["STUB_HOME"]}}
subprocess.run(argv[2:], env=env)
print("Exiting session with sessionId: stub-1.")
"""


@pytest.fixture
def machine(monkeypatch):
    set_up(monkeypatch, REGION)
    made = trainctl("create", "--provider", "aws", "--gpu", "T4", "--name", "ssm-box", "--json")
    assert made.code == 0, made.err
    yield made.json()["id"]
    trainctl("terminate", "ssm-box", "-y")


def stubs(tmp_path, monkeypatch, *, plugin: bool = True):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(STUB_AWS)
    (bin_dir / "aws").chmod(0o755)
    if plugin:
        (bin_dir / "session-manager-plugin").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "session-manager-plugin").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "called.json"))
    (tmp_path / "machine-home").mkdir()
    monkeypatch.setenv("STUB_HOME", str(tmp_path / "machine-home"))
    return tmp_path / "called.json"


def test_a_command_goes_through_session_manager(machine, tmp_path, monkeypatch):
    url = os.environ["AWS_ENDPOINT_URL"]
    called = stubs(tmp_path, monkeypatch)
    script = 'pwd; printf "%s\\n" "$1"; exit 7'
    r = trainctl("ssh", "ssm-box", "--", "sh", "-c", script, "-", "a,b c")
    assert r.code == 7, r.err
    lines = r.out.splitlines()
    assert lines[1:3] == [str(tmp_path / "machine-home" / ".trainctl" / "work"), "a,b c"]
    assert not any("trainctl-exit-" in line for line in lines)  # the marker is taken out
    seen = json.loads(called.read_text())
    argv = seen["argv"]
    assert argv[:4] == ["ssm", "start-session", "--target", machine]
    assert argv[4:7] == ["--region", REGION, "--endpoint-url"]
    assert argv[7] == url
    assert argv[8:10] == ["--document-name", "AWS-StartInteractiveCommand"]
    (command,) = json.loads(argv[11])["command"]
    assert shlex.split(command)[:4] == ["sudo", "-H", "sh", "-c"]
    assert not any("testing" in a for a in argv)  # the credentials stay out of argv
    env = seen["env"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("testing", "testing")


def test_without_the_plugin_the_error_says_how_to_install_it(machine, tmp_path, monkeypatch):
    stubs(tmp_path, monkeypatch, plugin=False)
    r = trainctl("ssh", "ssm-box", "--", "true")
    assert r.code == 1, r.err
    (line,) = r.err.strip().splitlines()
    assert "session-manager-plugin" in line and "is not installed" in line
    assert "session-manager-working-with-install-plugin.html" in line


def test_a_port_is_forwarded_through_a_port_forwarding_session(machine, tmp_path, monkeypatch):
    called = stubs(tmp_path, monkeypatch)
    local = free_port()
    cli = Cli("forward", "ssm-box", f"8888:{local}")
    cli.wait_for(cli.out, f"forwarding localhost:{local} -> ssm-box:8888")
    argv = json.loads(called.read_text())["argv"]
    assert argv[:4] == ["ssm", "start-session", "--target", machine]
    assert argv[8:10] == ["--document-name", "AWS-StartPortForwardingSession"]
    assert json.loads(argv[11]) == {"portNumber": ["8888"], "localPortNumber": [str(local)]}
    cli.signal(signal.SIGINT)
    assert cli.finish() == 130
    with socket.socket() as s:
        s.bind(("127.0.0.1", local))  # the session ended with the command

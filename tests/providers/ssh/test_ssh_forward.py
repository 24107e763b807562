"""`trainctl forward` and `run --port` on the ssh provider, against the real sshd: the
"machine" is this host, so a server on its loopback is the machine's."""

from __future__ import annotations

import http.server
import signal
import socket
import threading
import time
import urllib.request

import pytest
from test_ssh_access import create

from cli_helpers import Cli, trainctl
from sshd import Machine, SSHServer, free_port


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from the machine")

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def get(port: int, timeout: float = 30) -> bytes:
    """The page at localhost:``port``, retried while nothing answers yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                return answer.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_port_is_forwarded_until_ctrl_c(sshd: SSHServer, ssh_machine: Machine, web):
    create(sshd, ssh_machine)
    local = free_port()
    cli = Cli("forward", "box", f"{web}:{local}")
    cli.wait_for(cli.out, f"forwarding localhost:{local} -> box:{web}")
    assert get(local) == b"hello from the machine"
    cli.signal(signal.SIGINT)
    assert cli.finish() == 130
    assert "Ctrl-C: stopped forwarding" in cli.stderr
    assert not listening(local)  # the forward is cancelled, not left in the master
    # the shared connection itself lives on for the next command
    assert trainctl("ssh", "box", "--", "true").code == 0


def test_bad_or_busy_ports_are_one_line_errors(sshd: SSHServer, ssh_machine: Machine, web):
    create(sshd, ssh_machine)
    for spec in ("0", "70000", "a:b", "80:"):
        r = trainctl("forward", "box", spec)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, (spec, r.err)
    r = trainctl("forward", "box", f"1:{web}")  # the local port is taken by the server
    assert r.code == 2 and f"local port {web} is already in use" in r.err, r.err
    r = trainctl(
        "run", "--provider", "ssh", "--host", ssh_machine.target, "--port", "0", "--", "true"
    )
    assert r.code == 2 and "bad port '0'" in r.err


JOB = """\
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"served by the job")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", {port}), H)
server.timeout = 60
server.handle_request()
print("served", flush=True)
"""


def test_run_forwards_a_port_while_it_follows_the_job(
    sshd: SSHServer, ssh_machine: Machine, tmp_path
):
    project = tmp_path / "proj"
    project.mkdir()
    port, local = free_port(), free_port()
    (project / "serve.py").write_text(JOB.format(port=port))
    cli = Cli(
        "run", "--provider", "ssh", "--host", ssh_machine.target, "--key", str(sshd.client_key),
        "--name", "web", "-w", str(project), "--port", f"{port}:{local}", "--",
        "python3", "serve.py",
    )  # fmt: skip
    cli.wait_for(cli.err, f"forwarding localhost:{local} -> web:{port}")
    assert get(local) == b"served by the job"
    assert cli.finish() == 0, cli.stderr
    assert "served" in "".join(cli.out)
    assert not listening(local)

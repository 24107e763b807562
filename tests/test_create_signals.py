"""`trainctl create` stopped by SIGTERM or SIGHUP while it waits for the machine: the
same path as Ctrl-C, so the machine it made is released, not left billing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import trainctl
from test_lyceum_cli import serve


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_wait_releases_the_machine(monkeypatch, trainctl_home, signum):
    fake = serve(monkeypatch, trainctl_home)
    try:
        fake.provision_outcome = "stuck"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainctl",
                "create",
                "-p",
                "lyceum",
                "--gpu",
                "A100:1",
                "-n",
                "waiting",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not fake.live_vms():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        time.sleep(0.3)  # well into the wait
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert fake.live_vms() == [], err
        assert "Traceback" not in err
        assert trainctl("list", "--json").json()["resources"] == []
    finally:
        fake.stop()

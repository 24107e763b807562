"""A throwaway SSH machine for the SSH benchmarks: the test suite's real sshd on
loopback (tests/sshd.py; needs root for the machine's Unix user)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
for _path in (TESTS, *(TESTS / "providers" / p for p in ("aws", "runpod", "lyceum"))):
    sys.path.insert(0, str(_path))

from sshd import Machine, SSHServer  # noqa: E402
from trainctl.remote.ssh import Endpoint, SSHRemote  # noqa: E402


@contextmanager
def ssh_machine() -> Iterator[tuple[SSHServer, Machine, SSHRemote]]:
    """A running sshd, one machine on it and an SSHRemote to it (own trainctl home)."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["TRAINCTL_HOME"] = home
        server = SSHServer().start()
        try:
            machine = server.new_machine()
            remote = SSHRemote(
                Endpoint(machine.host, machine.port, machine.user), key=server.client_key
            )
            try:
                yield server, machine, remote
            finally:
                remote.close()
        finally:
            server.stop()


def summary(values: list[float]) -> str:
    """Median, 90th percentile and maximum, in milliseconds."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"median {statistics.median(ordered) * 1000:7.1f} ms, p90 {p90 * 1000:7.1f} ms, "
        f"max {ordered[-1] * 1000:7.1f} ms over {len(ordered)}"
    )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSES the target"

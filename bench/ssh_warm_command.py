"""Time of a remote command over SSH: the first one (new connection) and the
following ones on the warm shared connection. Target: warm median under 50 ms.

    .venv/bin/python bench/ssh_warm_command.py
"""

from __future__ import annotations

import statistics
import time

from sshbench import ssh_machine, summary, verdict

RUNS = 50
TARGET = 0.050


def main() -> None:
    with ssh_machine() as (_, _, remote):
        t0 = time.perf_counter()
        remote.run(["true"])
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            r = remote.run(["true"])
            warm.append(time.perf_counter() - t0)
            assert r.ok
    print(f"first command (new connection): {cold * 1000:.1f} ms")
    print(f"warm command `true`: {summary(warm)}")
    print(
        f"target: median under {TARGET * 1000:.0f} ms: {verdict(statistics.median(warm) < TARGET)}"
    )


if __name__ == "__main__":
    main()

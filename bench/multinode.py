"""`trainctl run` of one job on a group of 3 ssh machines (the test suite's sshd on
loopback, one Unix user per node): seconds from the command to every node's job
running, and the spread of the nodes' start times. Needs root (the machines' users).

    .venv/bin/python bench/multinode.py [--nodes 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from sshbench import SSHServer

#: each node prints when its job began (the machines' own python, not this venv's)
JOB = ["/usr/bin/python3", "-c", "import os, time; print('began', time.time())"]


def once(server: SSHServer, nodes: int) -> tuple[float, float]:
    machines = [server.new_machine() for _ in range(nodes)]
    hosts = [arg for m in machines for arg in ("--host", m.target)]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TRAINCTL_HOME": home}
        t0 = time.time()
        p = subprocess.run(
            [sys.executable, "-m", "trainctl", "run", "-p", "ssh", *hosts,
             "--key", str(server.client_key), "--no-sync", "--checkpoint-sync", "off",
             "--", *JOB],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
    if p.returncode != 0:
        raise SystemExit(f"run failed ({p.returncode}): {p.stderr[-500:]}")
    began = [float(line.split()[-1]) for line in p.stdout.splitlines() if " began " in line]
    assert len(began) == nodes, p.stdout
    return max(began) - t0, max(began) - min(began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = SSHServer().start()
    try:
        results = [once(server, args.nodes) for _ in range(args.repeat)]
    finally:
        server.stop()
    to_running = [r[0] for r in results]
    spread = [r[1] for r in results]
    print(f"run on {args.nodes} ssh nodes, {args.repeat} runs:")
    print(f"  command to every rank running: median {statistics.median(to_running):.2f} s, "
          f"max {max(to_running):.2f} s")  # fmt: skip
    print(f"  spread of the nodes' start times: median {statistics.median(spread):.2f} s, "
          f"max {max(spread):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()

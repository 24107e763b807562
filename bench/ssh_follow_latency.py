"""Latency from a line written by a job to the moment `monitor --follow` (the job
runtime's follow over SSHRemote.stream) hands it over, on loopback.
Target: median under 0.3 s.

    .venv/bin/python bench/ssh_follow_latency.py
"""

from __future__ import annotations

import statistics
import time

from sshbench import ssh_machine, summary, verdict

from trainctl.runtime.client import JobRuntime

LINES = 60
TARGET = 0.3
# Each line carries the time it was written; job and follower share this clock.
JOB = f"""\
import random, sys, time
for i in range({LINES}):
    time.sleep(random.uniform(0.02, 0.12))
    print(repr(time.time()), flush=True)
"""


def main() -> None:
    latencies: list[float] = []
    pending = bytearray()

    def sink(chunk: bytes) -> None:
        now = time.time()
        pending.extend(chunk)
        *lines, rest = pending.split(b"\n")
        pending[:] = rest
        latencies.extend(now - float(line) for line in lines if line)

    with ssh_machine() as (_, _, remote):
        rt = JobRuntime(remote, "bench")
        job = rt.start(["python3", "-c", JOB])
        final = rt.follow(job.job_id, sink)
    assert final.exit_code == 0 and len(latencies) == LINES, (final, len(latencies))
    print(f"line written -> seen by follow: {summary(latencies)}")
    ok = statistics.median(latencies) < TARGET
    print(f"target: median under {TARGET * 1000:.0f} ms: {verdict(ok)}")


if __name__ == "__main__":
    main()

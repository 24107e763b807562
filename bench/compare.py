"""Wall time of `trainctl providers compare --gpu A100` over the bundled catalog.

Prints the median over 20 runs of the whole process (empty trainctl home, so the
bundled catalog is read). Target on a 2-core machine: 0.3 s.

    .venv/bin/python bench/compare.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 20
ARGS = ["providers", "compare", "--gpu", "A100"]
TARGET = 0.3


def main() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "trainctl")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TRAINCTL_HOME": home}
        listed = subprocess.run(
            [exe, *ARGS, "--json"], env=env, capture_output=True, text=True, check=True
        )
        offers = len(json.loads(listed.stdout)["offers"])
        subprocess.run([exe, *ARGS], env=env, capture_output=True, check=True)  # warm caches
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run([exe, *ARGS], env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        verdict = "ok" if median < TARGET else "SLOWER than target"
        print(
            f"trainctl {' '.join(ARGS)} ({offers} offers): median {median * 1000:.1f} ms "
            f"over {RUNS} runs (target {TARGET * 1000:.0f} ms): {verdict}"
        )


if __name__ == "__main__":
    main()

"""Start-up time of commands that only read local state.

Prints the median wall time over 20 runs of `trainctl --help` and `trainctl list`
(empty state). Targets on a 2-core machine: 0.15 s and 0.25 s.

    .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 20
CASES = {"trainctl --help": (["--help"], 0.15), "trainctl list": (["list"], 0.25)}


def main() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "trainctl")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TRAINCTL_HOME": home}
        for label, (args, target) in CASES.items():
            subprocess.run([exe, *args], env=env, capture_output=True, check=True)  # warm caches
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                subprocess.run([exe, *args], env=env, capture_output=True, check=True)
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            verdict = "ok" if median < target else "SLOWER than target"
            print(
                f"{label:<18} median {median * 1000:6.1f} ms over {RUNS} runs "
                f"(target {target * 1000:.0f} ms): {verdict}"
            )


if __name__ == "__main__":
    main()

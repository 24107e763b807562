"""Median wall time of whole `trainctl` processes, for the benchmarks here."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def trainctl_exe() -> str:
    return os.path.join(os.path.dirname(sys.executable), "trainctl")


def median_wall(args: list[str], env: dict[str, str], runs: int) -> float:
    """Seconds: the median over ``runs`` runs, after one run that warms caches."""
    exe = trainctl_exe()
    subprocess.run([exe, *args], env=env, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([exe, *args], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(label: str, median: float, runs: int, target: float) -> None:
    verdict = "ok" if median < target else "SLOWER than target"
    print(
        f"{label:<18} median {median * 1000:6.1f} ms over {runs} runs "
        f"(target {target * 1000:.0f} ms): {verdict}"
    )

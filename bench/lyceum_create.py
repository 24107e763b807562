"""Lyceum provider overhead against the fake Lyceum API (tests/fake_lyceum.py).

Prints, over a number of runs: the median wall time of create (VM ready at once,
polled every 50 ms) and terminate, the HTTP requests each takes, and the same for a
create that meets three 503s and two 429s before it goes through. The time a real
VM takes to boot is not measured here: only what trainctl adds around it.

    .venv/bin/python bench/lyceum_create.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
for _path in (TESTS, *(TESTS / "providers" / p for p in ("aws", "runpod", "lyceum"))):
    sys.path.insert(0, str(_path))

from fake_lyceum import DEFAULT_KEY, FakeLyceum  # noqa: E402
from trainctl.providers.lyceum import LyceumProvider  # noqa: E402
from trainctl.types import CreateResourceOptions, GpuSpec  # noqa: E402


def measure(fake: FakeLyceum, runs: int, burst: bool) -> tuple[float, float, float, float]:
    create_s, terminate_s, create_n, terminate_n = [], [], [], []
    for i in range(runs):
        provider = LyceumProvider(poll_interval=0.05, ready_timeout=30, backoff=0.05)
        if burst:
            fake.fail_next(503, 3, path_contains="/vms/create")
            fake.fail_next(429, 2, path_contains="/vms/create", retry_after="0")
        before = len(fake.requests)
        t0 = time.perf_counter()
        st = provider.create_resource(
            CreateResourceOptions(gpu=GpuSpec("A100", 1), name=f"b{burst:d}{i}")
        )
        create_s.append(time.perf_counter() - t0)
        create_n.append(len(fake.requests) - before)
        before = len(fake.requests)
        t0 = time.perf_counter()
        provider.terminate(st.id)
        terminate_s.append(time.perf_counter() - t0)
        terminate_n.append(len(fake.requests) - before)
    med = statistics.median
    return med(create_s), med(create_n), med(terminate_s), med(terminate_n)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    os.environ["TRAINCTL_HOME"] = tempfile.mkdtemp(prefix="trainctl-bench-")
    os.environ["HOME"] = tempfile.mkdtemp(prefix="trainctl-bench-home-")
    with FakeLyceum() as fake:
        fake.provision_seconds = 0.0
        os.environ["TRAINCTL_LYCEUM_API_URL"] = fake.url
        os.environ["LYCEUM_API_KEY"] = DEFAULT_KEY
        for label, burst in (("plain", False), ("3x503 + 2x429", True)):
            c, cn, t, tn = measure(fake, runs, burst)
            print(
                f"{label:<14} create median {c * 1000:6.1f} ms ({cn:.0f} requests), "
                f"terminate median {t * 1000:6.1f} ms ({tn:.0f} requests), {runs} runs"
            )
        assert len(fake.vms) == 2 * runs, "a burst made more than one VM per create"


if __name__ == "__main__":
    main()

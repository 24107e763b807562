"""Wall time of `trainctl providers compare --gpu A100` over the bundled catalog.

Prints the median over 20 runs of the whole process (empty trainctl home, so the
bundled catalog is read). Target on a 2-core machine: 0.3 s.

    .venv/bin/python bench/compare.py
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

from timing import median_wall, report, trainctl_exe

RUNS = 20
ARGS = ["providers", "compare", "--gpu", "A100"]
TARGET = 0.3


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TRAINCTL_HOME": home}
        listed = subprocess.run(
            [trainctl_exe(), *ARGS, "--json"], env=env, capture_output=True, text=True, check=True
        )
        offers = len(json.loads(listed.stdout)["offers"])
        label = f"trainctl {' '.join(ARGS)} ({offers} offers)"
        report(label, median_wall(ARGS, env, RUNS), RUNS, TARGET)


if __name__ == "__main__":
    main()

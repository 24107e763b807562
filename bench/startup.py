"""Start-up time of commands that only read local state.

Prints the median wall time over 20 runs of `trainctl --help` and `trainctl list`
(empty state). Targets on a 2-core machine: 0.15 s and 0.25 s.

    .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import tempfile

from timing import median_wall, report

RUNS = 20
CASES = {"trainctl --help": (["--help"], 0.15), "trainctl list": (["list"], 0.25)}


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TRAINCTL_HOME": home}
        for label, (args, target) in CASES.items():
            report(label, median_wall(args, env, RUNS), RUNS, target)


if __name__ == "__main__":
    main()

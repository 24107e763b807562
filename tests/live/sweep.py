"""Release what a live run left, when its own sweep could not run (``kill -9``, a
machine that lost power): ``python tests/live/sweep.py [--run ID | --all] PROVIDER ...``.

It looks the machines up the way the run's sweep does, through each provider's own
listing, by the ``trainctl-live`` tag or the ``trainctl-live-<run>-`` name: ``--run ID``
for one run, ``--all`` for every run (of anyone using these credentials). ``--home``
is the run's trainctl home (``out/live/<ID>/home``): with it, records the run kept
(a VM deleted by its guard, whose guard key is revoked here) are settled too.
Exits 1 when something is still there after it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def own_home() -> Path:
    """A trainctl home for a sweep without the run's: new, with the user's config (an
    AWS region or profile set there is where the run rented), as the run's own home
    was given it."""
    from trainctl import home

    config = home.config_path()
    made = Path(tempfile.mkdtemp(prefix="trainctl-live-sweep-"))
    if config.is_file():
        shutil.copy(config, made / "config.toml")
    return made


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests/live/sweep.py", description=__doc__.split("\n")[0])
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--run", help="the run id (trainctl-live-<ID>-...)")
    chosen.add_argument("--all", action="store_true", help="every trainctl-live-* machine")
    parser.add_argument("--home", type=Path, help="the run's trainctl home")
    parser.add_argument("providers", nargs="+", choices=["aws", "runpod", "lyceum"])
    args = parser.parse_args(argv)
    os.environ["TRAINCTL_HOME"] = str(args.home or own_home())

    import livekit  # after TRAINCTL_HOME: trainctl reads it once

    run = livekit.LiveRun(args.run or "", args.providers, None)
    result = run.sweep()
    for name in result.released:
        print(f"released {name}")
    for name in result.revoked:
        print(f"guard credential revoked for {name}")
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    for left in result.left:
        print(f"LEFT BEHIND: {left}", file=sys.stderr)
    if not result.left:
        print(f"nothing named {run.prefix}* is left on {', '.join(args.providers)}")
    return 1 if result.left or result.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

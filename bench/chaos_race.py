"""Chaos: `terminate` racing `create`, and `kill -9` of `create` at random moments,
through the real CLI against the fake Lyceum API (tests/fake_lyceum.py).

Each trial starts `trainctl create NAME` and, after a random delay, either runs
`trainctl terminate NAME -y` against it (race) or kills the create with SIGKILL.
Once the create process has ended, a leak is a VM the fake still runs that the
store has no record of and no intent for (nothing would ever release it). The
trial then settles NAME with `trainctl terminate NAME -y`, as a user would; any VM
still running after that is counted as left running.

    .venv/bin/python bench/chaos_race.py [TRIALS] [SEED]
"""

from __future__ import annotations

import collections
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
for _path in (TESTS, *(TESTS / "providers" / p for p in ("aws", "runpod", "lyceum"))):
    sys.path.insert(0, str(_path))

from fake_lyceum import DEFAULT_KEY, FakeLyceum  # noqa: E402
from trainctl.provider import NAME_PREFIX  # noqa: E402

#: the longest delay before the terminate or the kill, and the longest latency of a
#: create call, in seconds
WINDOW = 1.5
LATENCY = 0.8


def trainctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainctl", *args], capture_output=True, text=True, timeout=120
    )


def start_create(name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trainctl", "create", "-p", "lyceum", "--name", name,
         "--gpu", "A100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def recorded(home: Path) -> tuple[set[str], set[str]]:
    """(ids of records, names of every record and intent) in the store."""
    db = home / "state.db"
    if not db.exists():
        return set(), set()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, name FROM resources").fetchall()
    return {r[0] for r in rows}, {r[1] for r in rows}


def untracked(fake: FakeLyceum, home: Path) -> list[str]:
    ids, names = recorded(home)
    return [
        vm.vm_id
        for vm in fake.live_vms()
        if vm.vm_id not in ids and (vm.display_name or "").removeprefix(NAME_PREFIX) not in names
    ]


def settle(name: str) -> int:
    """`terminate NAME -y` until it stops saying that the create may still act."""
    for _ in range(50):
        r = trainctl("terminate", name, "-y")
        if r.returncode != 1 or "is not made yet" not in r.stderr:
            return r.returncode
        time.sleep(0.2)
    return r.returncode


def slow_creates(fake: FakeLyceum, rng: random.Random) -> None:
    """Give each create call a random latency before the fake acts on it (the
    window in which a create has written its intent but made nothing yet); other
    calls are served meanwhile."""
    create = fake._create

    def late(rec, org):
        fake._lock.release()  # held by handle() around every call
        try:
            time.sleep(rng.uniform(0, LATENCY))
        finally:
            fake._lock.acquire()
        return create(rec, org)

    fake._create = late


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    home = Path(tempfile.mkdtemp(prefix="trainctl-chaos-"))
    os.environ["TRAINCTL_HOME"] = str(home)
    os.environ["HOME"] = tempfile.mkdtemp(prefix="trainctl-chaos-home-")
    (home / "config.toml").write_text(
        "[providers.lyceum]\npoll_interval = 0.05\nready_timeout = 30\n"
        # a create call the fake holds is carried out within LATENCY seconds
        f"[create]\nrequest_grace = {LATENCY + 0.5}\n"
    )
    leaks, left, codes = 0, 0, collections.Counter()
    with FakeLyceum() as fake:
        fake.provision_seconds = 0.3
        slow_creates(fake, random.Random(rng.random()))
        os.environ["TRAINCTL_LYCEUM_API_URL"] = fake.url
        os.environ["LYCEUM_API_KEY"] = DEFAULT_KEY
        started = time.monotonic()
        for i in range(trials):
            name = f"chaos{i}"
            mode = "race" if i % 2 == 0 else "kill"
            create = start_create(name)
            time.sleep(rng.uniform(0, WINDOW))
            if mode == "race":
                codes[
                    f"terminate during create: exit {trainctl('terminate', name, '-y').returncode}"
                ] += 1
            else:
                create.kill()
            create.wait(120)
            codes[f"create ({mode}): exit {create.returncode}"] += 1
            found = untracked(fake, home)
            leaks += len(found)
            if found:
                print(f"trial {i} ({mode}): untracked VM(s) {found}", file=sys.stderr)
            codes[f"settling terminate: exit {settle(name)}"] += 1
            left += len(fake.live_vms())
            for vm in fake.live_vms():  # keep the next trials clean
                fake.vms[vm.vm_id].status = "terminated"
        elapsed = time.monotonic() - started
    for line, count in sorted(codes.items()):
        print(f"  {count:3d} x {line}")
    print(f"{trials} trials in {elapsed:.0f} s: leaks found = {leaks}, left running = {left}")
    sys.exit(1 if leaks or left else 0)


if __name__ == "__main__":
    main()

"""Re-sync of a 5,000-file, 200 MB tree after one file changed, over SSH on loopback.

Compares `SSHRemote.put_tree` (trainctl's sync: ignore rules, warm shared
connection) with a bare `rsync -a` of the same change, both with a fresh ssh
connection (as a user would type it) and through the same warm connection.
Targets: bytes sent under 1% of the tree; wall time within 1.5x of bare rsync.

    .venv/bin/python bench/ssh_resync.py
"""

from __future__ import annotations

import os
import re
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sshbench import ssh_machine, verdict

from trainctl import sshkeys

FILES = 5000
TREE_BYTES = 200 * 1000 * 1000
ROUNDS = 5


def make_tree(root: Path) -> list[Path]:
    size = TREE_BYTES // FILES
    files = []
    for i in range(FILES):
        d = root / f"pkg{i % 50:02d}" / f"mod{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"file{i:05d}.bin"
        f.write_bytes(os.urandom(size))
        files.append(f)
    return files


def touch_one(path: Path, round_no: int) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = f"round {round_no:09d}".encode()
    path.write_bytes(bytes(data))
    later = time.time() + 10 * (round_no + 1)
    os.utime(path, (later, later))


def bare_rsync(ssh_cmd: list[str], src: Path, dest: str) -> tuple[float, int]:
    argv = ["rsync", "-a", "--stats", "-e", shlex.join(ssh_cmd), f"{src}/", dest]
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    sent = int(re.search(r"Total bytes sent:\s*([\d,]+)", p.stdout).group(1).replace(",", ""))
    return wall, sent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, ssh_machine() as (server, machine, remote):
        src = Path(tmp) / "tree"
        print(f"making {FILES} files, {TREE_BYTES / 1e6:.0f} MB ...", flush=True)
        files = make_tree(src)
        total = sum(f.stat().st_size for f in files)
        host = f"{machine.user}@{machine.host}"
        cold_ssh = [
            "ssh", "-i", str(server.client_key), "-p", str(machine.port),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={sshkeys.known_hosts_path()}",
        ]  # fmt: skip
        warm_ssh = ["ssh", *remote.ssh_options()]
        dests = {
            "trainctl": f"{machine.home}/a",
            "cold": f"{machine.home}/b",
            "warm": f"{machine.home}/c",
        }

        t0 = time.perf_counter()
        first = remote.put_tree(src, dests["trainctl"])
        print(f"first sync: {first.files_sent} files in {time.perf_counter() - t0:.1f} s")
        bare_rsync(cold_ssh, src, f"{host}:{dests['cold']}")
        bare_rsync(warm_ssh, src, f"{host}:{dests['warm']}")

        walls: dict[str, list[float]] = {k: [] for k in dests}
        sent: dict[str, list[int]] = {k: [] for k in dests}
        for n in range(ROUNDS):
            touch_one(files[(n * 997) % FILES], n)
            t0 = time.perf_counter()
            r = remote.put_tree(src, dests["trainctl"])
            walls["trainctl"].append(time.perf_counter() - t0)
            sent["trainctl"].append(r.bytes_sent)
            assert r.files_sent == 1, r
            for kind, ssh_cmd in (("cold", cold_ssh), ("warm", warm_ssh)):
                wall, nbytes = bare_rsync(ssh_cmd, src, f"{host}:{dests[kind]}")
                walls[kind].append(wall)
                sent[kind].append(nbytes)

    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"tree: {FILES} files, {total / 1e6:.0f} MB; one file changed; median of {ROUNDS} rounds")
    labels = {
        "trainctl": "trainctl put_tree (warm)",
        "cold": "bare rsync -a, new ssh",
        "warm": "bare rsync -a, warm ssh",
    }
    for k, label in labels.items():
        b = statistics.median(sent[k])
        print(
            f"  {label:<26} {med[k] * 1000:7.0f} ms, {b:>9,.0f} bytes sent ({100 * b / total:.3f}%)"
        )
    share = statistics.median(sent["trainctl"]) / total
    print(f"target: bytes sent under 1% of the tree: {verdict(share < 0.01)}")
    for k in ("cold", "warm"):
        ratio = med["trainctl"] / med[k]
        print(f"target: within 1.5x of {labels[k]}: {ratio:.2f}x: {verdict(ratio <= 1.5)}")


if __name__ == "__main__":
    main()

"""`trainctl download` (the whole command) and `SSHRemote.get` (in process) over SSH on
loopback, against `scp` and a bare rsync of the same files through the same shared
connection (same ssh options and key).

Cases: a 500 MB checkpoint of random bytes downloaded fresh, the same over an older
copy it replaces (a checkpoint rewritten each epoch), a directory holding it and a
log (over an older copy), a directory of many small files and a compressible text
log. Each method runs several times, interleaved; the median
wall time is printed with its ratio to scp. Target: the checkpoint within 1.05x of
scp. Files land in /dev/shm when it exists (DOWNLOAD_BENCH_DIR overrides), so the
local disk's writeback does not blur the transfer.

    .venv/bin/python bench/download.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sshbench import ssh_machine, verdict
from timing import trainctl_exe

CHECKPOINT_MB = 500
SMALL_FILES = 2000
LOG_MB = 100
RUNS = int(os.environ.get("DOWNLOAD_BENCH_RUNS", "5"))
TARGET = 1.05


def scp_options(ssh_options: list[str]) -> list[str]:
    """ssh's options as scp takes them (-P for the port, the user as an option)."""
    out: list[str] = []
    it = iter(ssh_options)
    for arg in it:
        if arg == "-T":
            continue
        if arg == "-p":
            out += ["-P", next(it)]
        elif arg == "-l":
            out += ["-o", f"User={next(it)}"]
        else:
            out.append(arg)
    return out


def log_text() -> str:
    """A training log of about ``LOG_MB`` MB: numbers change every line."""
    lines, size, step = [], 0, 0
    while size < LOG_MB * 1000 * 1000:
        line = (
            f"step {step} epoch {step // 1000} loss {1 / (1 + step):.6f} "
            f"lr {3e-4 * 0.999 ** (step // 100):.3e} tokens/s {41000 + step % 977}\n"
        )
        lines.append(line)
        size += len(line)
        step += 1
    return "".join(lines)


def main() -> None:
    base = os.environ.get("DOWNLOAD_BENCH_DIR") or (
        "/dev/shm" if Path("/dev/shm").is_dir() else None
    )
    with (
        tempfile.TemporaryDirectory(dir=base, prefix="trainctl-dl-") as tmp,
        ssh_machine() as (server, machine, remote),
    ):
        work = Path(tmp)
        print(f"making the files on the machine (downloads land in {work}) ...", flush=True)
        big = machine.write("out/model.pt", b"")
        with big.open("wb") as f:
            for _ in range(CHECKPOINT_MB):
                f.write(os.urandom(1 << 20))
        for i in range(SMALL_FILES):
            machine.write(f"out/small/d{i % 40}/f{i}.json", f'{{"step": {i}}}\n' * (i % 50 + 1))
        machine.write("out/train.log", log_text())
        ck = machine.home / "out" / "ck"  # a checkpoint directory: the checkpoint and the log
        ck.mkdir()
        os.chown(ck, machine.uid, machine.gid)
        for name in ("model.pt", "train.log"):
            os.link(machine.home / "out" / name, ck / name)
        older = work / "older.pt"
        with older.open("wb") as f:
            for _ in range(CHECKPOINT_MB):
                f.write(os.urandom(1 << 20))

        env = dict(os.environ)
        created = subprocess.run(
            [trainctl_exe(), "create", "--provider", "ssh", "--host", machine.target,
             "--key", str(server.client_key), "--name", "box"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        remote.check()  # the shared connection every method below goes through
        ssh = ["ssh", *remote.ssh_options()]
        scp = ["scp", "-q", "-r", *scp_options(remote.ssh_options())]
        rsync = ["rsync", "-e", " ".join(ssh), "-s", "-rlptW"]
        home = str(machine.home)

        def command(argv: Callable[[str, Path], list[str]]) -> Callable[[str, Path], None]:
            def run(src: str, dest: Path) -> None:
                p = subprocess.run(argv(src, dest), env=env, capture_output=True, text=True)
                assert p.returncode == 0, (argv(src, dest), p.stderr)

            return run

        def get(src: str, dest: Path) -> None:
            remote.get(src, dest)

        methods: dict[str, Callable[[str, Path], None]] = {
            "trainctl download": command(
                lambda src, dest: [trainctl_exe(), "download", "box", src, str(dest)]
            ),
            "SSHRemote.get": get,
            "scp": command(lambda src, dest: [*scp, f"{machine.host}:{src}", str(dest)]),
            "rsync -rlptW": command(lambda src, dest: [*rsync, f"{machine.host}:{src}", str(dest)]),
        }
        cases: list[tuple[str, str, Callable[[Path], None]]] = [
            (f"checkpoint {CHECKPOINT_MB} MB, new", f"{home}/out/model.pt", lambda d: None),
            (
                f"checkpoint {CHECKPOINT_MB} MB over an older copy",
                f"{home}/out/model.pt",
                lambda d: shutil.copyfile(older, d / "model.pt"),
            ),
            (
                "directory (checkpoint + log), older copy",
                f"{home}/out/ck",
                lambda d: shutil.copyfile(older, d / "model.pt"),
            ),
            (f"{SMALL_FILES} small files", f"{home}/out/small", lambda d: None),
            (f"text log {LOG_MB} MB", f"{home}/out/train.log", lambda d: None),
        ]
        results: dict[str, dict[str, float]] = {}
        for label, src, prepare in cases:
            walls: dict[str, list[float]] = {m: [] for m in methods}
            for _ in range(RUNS):
                for name, method in methods.items():
                    dest = work / "dest"
                    shutil.rmtree(dest, ignore_errors=True)
                    dest.mkdir()
                    prepare(dest)
                    t0 = time.perf_counter()
                    method(src, dest)
                    walls[name].append(time.perf_counter() - t0)
            results[label] = {m: statistics.median(v) for m, v in walls.items()}
            line = ", ".join(
                f"{m} {results[label][m]:6.2f} s ({results[label][m] / results[label]['scp']:.2f}x)"
                for m in methods
            )
            print(f"{label:<38} {line}", flush=True)
    print(f"median of {RUNS} runs each; ratios to scp")
    for label in list(results)[:3]:
        for method in ("trainctl download", "SSHRemote.get"):
            ratio = results[label][method] / results[label]["scp"]
            print(f"target: {method}, {label}, within {TARGET}x of scp: {ratio:.2f}x: "
                  f"{verdict(ratio < TARGET)}")  # fmt: skip


if __name__ == "__main__":
    main()

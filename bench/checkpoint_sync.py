"""Checkpoints brought home while the job runs (checkpoints.CheckpointPuller), over
SSH on loopback: a job writes a 200 MB checkpoint of random bytes every 10 s.

Prints, for each checkpoint, the seconds from the job closing it (the job prints a
timestamp right after close) to the file being complete at home under its name (the
puller's report, made right after the move into place), and the bytes moved beyond
the checkpoints' own size, measured two ways:

- on the wire: every byte of every TCP connection to the machine, counted by a relay
  this bench puts in front of sshd (ssh's encryption and framing, rsync's protocol,
  the puller's looks, the log being followed: all of it);
- rsync --stats: what each download's rsync received ("Total bytes received").

Targets: under 5 s from close to home, under 5 % extra bytes.

    .venv/bin/python bench/checkpoint_sync.py [CHECKPOINTS] [MB]
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import sshbench  # noqa: F401 - puts the tests' helpers on sys.path
from sshbench import verdict

from sshd import SSHServer
from trainctl import sync
from trainctl.checkpoints import CheckpointPuller
from trainctl.remote.base import TransferEvent, human_bytes
from trainctl.remote.ssh import Endpoint, SSHRemote
from trainctl.runtime.client import JobRuntime

PERIOD = 10.0
TARGET_SECONDS = 5.0
TARGET_EXTRA = 0.05

JOB = """\
import os, sys, time
count, size, period = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
d = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(d, exist_ok=True)
for i in range(count):
    began = time.time()
    data = os.urandom(size)
    name = "ckpt-%d.pt" % i
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    print("closed", name, repr(time.time()), flush=True)
    del data
    if i < count - 1:
        time.sleep(max(0.0, began + period - time.time()))
"""


class Relay:
    """A TCP relay on 127.0.0.1 to ``port`` that counts the bytes it carries."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.moved = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray(1 << 18)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                dst.sendall(view[:n])
                with self._lock:
                    self.moved += n
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def _counting_rsync(received: list[int]):
    """sync.run_rsync, also keeping what rsync --stats says it received."""
    real = sync.run_rsync

    def run(argv, **kwargs):
        code, out, err = real(argv, **kwargs)
        m = re.search(r"Total bytes received:\s*([\d,]+)", out)
        if m:
            received.append(int(m.group(1).replace(",", "")))
        return code, out, err

    return run


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    size = int(float(sys.argv[2]) * 1e6) if len(sys.argv) > 2 else 200_000_000
    closed: dict[str, float] = {}
    landed: dict[str, float] = {}
    pending = bytearray()

    def sink(chunk: bytes) -> None:
        pending.extend(chunk)
        *lines, rest = pending.split(b"\n")
        pending[:] = rest
        for line in lines:
            words = line.decode().split()
            if len(words) == 3 and words[0] == "closed":
                closed[words[1]] = float(words[2])

    def progress(message: str) -> None:
        if isinstance(message, TransferEvent) and message.what.startswith("checkpoint "):
            landed[message.what.split(" ", 1)[1]] = time.time()
        else:
            print(f"  {message}")

    received: list[int] = []
    sync.run_rsync = _counting_rsync(received)
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-") as home:
        os.environ["TRAINCTL_HOME"] = str(Path(home) / "trainctl")
        server = SSHServer().start()
        relay = Relay(server.port)
        try:
            machine = server.new_machine()
            remote = SSHRemote(
                Endpoint(machine.host, relay.port, machine.user), key=server.client_key
            )
            rt = JobRuntime(remote, "bench")
            dest = Path(home) / "out" / "checkpoints"
            print(
                f"{count} checkpoints of {human_bytes(size)} every {PERIOD:g} s, "
                f"over SSH on loopback (rsync {' '.join(sync.copy_args('SRC', 'DEST')[:-2])})"
            )
            job = rt.start(["python3", "-c", JOB, str(count), str(size), str(PERIOD)])
            puller = CheckpointPuller(
                rt,
                rt.resolve("checkpoints"),
                dest,
                interval=5.0,
                job_id=job.job_id,
                progress=progress,
            )
            before = relay.moved
            puller.start()
            final = rt.follow(job.job_id, sink)
            pulled = puller.finish()
            moved = relay.moved - before
            remote.close()
        finally:
            relay.close()
            server.stop()
    assert final.exit_code == 0, final
    assert pulled.files == count and set(landed) == set(closed), (pulled, landed, closed)

    print("checkpoint   closed -> complete at home")
    delays = []
    for name in sorted(closed):
        delays.append(landed[name] - closed[name])
        print(f"  {name}  {delays[-1]:6.2f} s")
    print(
        f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s; "
        f"target: under {TARGET_SECONDS:g} s: {verdict(max(delays) < TARGET_SECONDS)}"
    )
    total = count * size
    wire = (moved - total) / total
    stats = (sum(received) - total) / total
    print(f"checkpoints: {human_bytes(total)} in {count} files")
    print(
        f"on the wire (every TCP byte to and from the machine, both ways): "
        f"{human_bytes(moved)}, {100 * wire:+.2f} %"
    )
    print(
        f"rsync --stats, total bytes received by the downloads: "
        f"{human_bytes(sum(received))}, {100 * stats:+.2f} %"
    )
    print(
        f"target: under {100 * TARGET_EXTRA:g} % extra on the wire: {verdict(wire < TARGET_EXTRA)}"
    )


if __name__ == "__main__":
    main()

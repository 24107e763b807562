"""A job that follows examples/train.py's checkpoint convention with the standard
library only (a test machine's Python may have no torch): one "epoch" a step of a
hash chain, each saved to TRAINCTL_CHECKPOINT_DIR/epoch-N.pt (written under a temporary
name, then renamed), resumed from the newest one there; SIGTERM ends it after the
current epoch's checkpoint with exit 143. The chain's end is the same however often
the job was stopped and resumed, so a recovered run can be checked against it.

    python3 resumable.py --epochs 8 --pause 1
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path


def step(state: str, epoch: int) -> str:
    return hashlib.sha256(f"{state}/{epoch}".encode()).hexdigest()


def chain(epochs: int) -> str:
    """The state after ``epochs`` epochs, never stopped."""
    state = "start"
    for epoch in range(1, epochs + 1):
        state = step(state, epoch)
    return state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    ckpt_dir = Path(os.environ.get("TRAINCTL_CHECKPOINT_DIR", "checkpoints"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(ckpt_dir.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    start, state = 0, "start"
    if found:
        saved = json.loads(found[-1].read_text())
        start, state = saved["epoch"], saved["state"]
        print(f"resumed from {found[-1].name} (epoch {start})", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    print(f"training epochs {start + 1}..{args.epochs}", flush=True)
    for epoch in range(start + 1, args.epochs + 1):
        state = step(state, epoch)
        partial = ckpt_dir / f".epoch-{epoch}.pt.partial"
        partial.write_text(json.dumps({"epoch": epoch, "state": state}))
        os.replace(partial, ckpt_dir / f"epoch-{epoch}.pt")
        print(f"epoch {epoch}/{args.epochs} -> epoch-{epoch}.pt", flush=True)
        until = time.time() + (args.pause if epoch < args.epochs else 0.0)
        while not stopping and time.time() < until:
            time.sleep(0.05)
        if stopping:
            print(f"SIGTERM: stopped after epoch {epoch}", flush=True)
            sys.exit(128 + signal.SIGTERM)
    print("done", flush=True)


if __name__ == "__main__":
    main()

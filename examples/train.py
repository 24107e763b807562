"""A small PyTorch training job that runs on a CPU in well under a minute.

It learns a noisy two-spiral classification problem made on the fly (no download),
writes a checkpoint after every epoch to TRAINCTL_CHECKPOINT_DIR, and resumes from
the newest checkpoint there when one exists: run it twice and the second run
continues where the first stopped. On SIGTERM (`trainctl cancel`, or Ctrl-C on
`trainctl run`) it finishes the current epoch, saves its checkpoint and exits 143;
a checkpoint is written under a temporary name first, so one cut short is never
taken for the newest.

    python train.py --epochs 5
    LR=0.05 EPOCHS=3 python train.py      # or from the environment (trainctl -e LR=0.05)

A flag wins over the environment.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def spirals(n: int, noise: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    t = torch.rand(n, generator=generator) * 3 * math.pi + 0.5
    label = torch.randint(0, 2, (n,), generator=generator)
    sign = label.float() * 2 - 1
    x = torch.stack([sign * t * torch.cos(t), sign * t * torch.sin(t)], dim=1) / 10
    x += noise * torch.randn(x.shape, generator=generator)
    return x, label


def newest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return found[-1] if found else None


def options(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ
) -> argparse.Namespace:
    """Flags, with LR and EPOCHS from the environment as their defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=int(environ.get("EPOCHS", "5")))
    parser.add_argument("--lr", type=float, default=float(environ.get("LR", "0.01")))
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds to wait after each epoch's checkpoint (to watch a run, or to try "
        "a preemption or a Ctrl-C between two epochs)",
    )
    return parser.parse_args(argv)


def main() -> None:
    # torch is imported here, so that options() can be read without it
    import torch
    from torch import nn

    args = options()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ckpt_dir = Path(os.environ.get("TRAINCTL_CHECKPOINT_DIR", "checkpoints"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    gen = torch.Generator().manual_seed(1234)
    x_train, y_train = spirals(args.samples, 0.02, gen)
    x_val, y_val = spirals(1024, 0.02, gen)

    model = nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    start_epoch = 0

    latest = newest_checkpoint(ckpt_dir)
    if latest is not None:
        state = torch.load(latest, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        print(f"resumed from {latest.name} (epoch {start_epoch})", flush=True)

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))

    job = os.environ.get("TRAINCTL_JOB_ID", "local")
    print(
        f"job {job}: training epochs {start_epoch + 1}..{args.epochs}, lr {args.lr:g}",
        flush=True,
    )
    for epoch in range(start_epoch + 1, args.epochs + 1):
        began = time.time()
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        path = ckpt_dir / f"epoch-{epoch}.pt"
        partial = ckpt_dir / f".epoch-{epoch}.pt.partial"
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
            partial,
        )
        os.replace(partial, path)
        print(
            f"epoch {epoch}/{args.epochs} loss {total / len(x_train):.4f} "
            f"val_acc {accuracy:.3f} ({time.time() - began:.1f}s) -> {path.name}",
            flush=True,
        )
        pause_until = time.time() + (args.pause if epoch < args.epochs else 0.0)
        while not stopping and time.time() < pause_until:
            time.sleep(min(0.05, pause_until - time.time()))
        if stopping:
            print(f"SIGTERM: stopped after epoch {epoch}, checkpoint {path.name} saved", flush=True)
            sys.exit(128 + signal.SIGTERM)
    print("done", flush=True)


if __name__ == "__main__":
    main()

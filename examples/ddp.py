"""A small DistributedDataParallel job for torchrun, on CPU with the gloo backend.

Each rank trains the same tiny classifier on its own synthetic data (seeded by rank)
for a few steps; DDP all-reduces the gradients, so every rank must end with the same
weights. Each rank prints ``rank R/W checksum <sha256 of its parameters>``; the
checksums are all-gathered and the job exits 1 on every rank if any differ. Rank 0
saves one checkpoint to TRAINCTL_CHECKPOINT_DIR (default ./checkpoints).

    torchrun --nnodes $NNODES --nproc-per-node $NPROC_PER_NODE --node-rank $NODE_RANK \\
        --master-addr $MASTER_ADDR --master-port $MASTER_PORT ddp.py

DDP_STEPS sets the number of steps (default 20) and DDP_TIMEOUT_SECONDS how long a
collective waits for a rank that is gone (default 60).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(bytes(p.detach().contiguous().flatten().view(torch.uint8).tolist()))
    return digest.hexdigest()


def main() -> int:
    timeout = float(os.environ.get("DDP_TIMEOUT_SECONDS", "60"))
    steps = int(os.environ.get("DDP_STEPS", "20"))
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    rank, world = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(0)  # the same initial weights everywhere (DDP broadcasts them too)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own data
    print(f"rank {rank}/{world} training {steps} steps", file=sys.stderr, flush=True)
    for _ in range(steps):
        x = torch.randn(64, 8, generator=data)
        y = (x.sum(dim=1) > 0).long()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()

    mine = checksum(model)
    print(f"rank {rank}/{world} checksum {mine}", flush=True)
    # all_gather_object would need numpy: gather the digest's bytes as a tensor
    digest = torch.tensor(list(bytes.fromhex(mine)), dtype=torch.int64)
    gathered = [torch.zeros_like(digest) for _ in range(world)]
    dist.all_gather(gathered, digest)
    every = [bytes(t.tolist()).hex() for t in gathered]
    if rank == 0:
        out = Path(os.environ.get("TRAINCTL_CHECKPOINT_DIR", "checkpoints"))
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "steps": steps}, out / "ddp.pt")
    dist.barrier()  # no rank leaves while another still uses the group
    if len(set(every)) != 1:
        print(f"rank {rank}: checksums differ: {every}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every rank has passed the last barrier: leave without the group's C++ teardown,
    # which aborted a rank now and then on a loaded CPU machine (SIGABRT, "terminate
    # called without an active exception") after all its work was done.
    os._exit(code)

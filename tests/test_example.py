"""examples/train.py, the script the README and `make demo` train: it resumes from
its newest checkpoint and, on SIGTERM (what `cancel` and an interrupted `run` send),
saves one and exits instead of dying mid-write. Needs PyTorch (skipped without)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train.py"


def test_sigterm_saves_a_checkpoint_the_next_run_resumes_from(tmp_path):
    env = {
        **os.environ,
        "TRAINCTL_CHECKPOINT_DIR": str(tmp_path / "ck"),
        "PYTHONWARNINGS": "ignore",
    }
    argv = [sys.executable, str(EXAMPLE), "--epochs", "500", "--samples", "2000"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            break
    proc.send_signal(signal.SIGTERM)  # the process this test started
    rest = proc.stdout.read()
    assert proc.wait(30) == 143, rest
    assert "SIGTERM: stopped after epoch" in rest
    saved = sorted(tmp_path.joinpath("ck").glob("epoch-*.pt"), key=lambda p: int(p.stem[6:]))
    last = int(saved[-1].stem[6:])
    assert torch.load(saved[-1], weights_only=True)["epoch"] == last
    assert not list(tmp_path.joinpath("ck").glob(".*partial"))

    again = subprocess.run(
        [*argv[:3], str(last + 1), *argv[4:]], capture_output=True, text=True, env=env, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert f"resumed from epoch-{last}.pt" in again.stdout

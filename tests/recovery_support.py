"""What the recovery tests share: a project holding ``jobs/resumable.py``, a run with
``--recover`` in process, and a preemption fired once a checkpoint is at home."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from polling import wait_for
from trainctl import api, runs
from trainctl.api import RunResult, Trainctl
from trainctl.recovery import Recovery
from trainctl.store import ResourceRecord
from trainctl.types import CreateResourceOptions, TrainingJob

JOB = Path(__file__).parent / "jobs" / "resumable.py"
#: seconds the job waits after each epoch: longer than a checkpoint takes to settle
#: and come home, so that a preemption fired when epoch N is home finds the job
#: before epoch N + 1
PAUSE = 3.0
INTERVAL = 0.3



def chain(epochs: int) -> str:
    """The job's state after ``epochs`` epochs never stopped (``resumable.chain``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("resumable", JOB)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.chain(epochs)


#: examples/train.py: real PyTorch, for machines whose python3 has torch
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train.py"


def project(tmp_path: Path, script: Path = JOB) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    shutil.copy(script, d / script.name)
    return d


def run(
    tc: Trainctl,
    provider: str,
    options: CreateResourceOptions,
    tmp_path: Path,
    *,
    epochs: int = 8,
    recover: Recovery,
    preempt: Callable[[ResourceRecord], None] | None = None,
    at_epochs: list[int] = (),
    command: list[str] | None = None,
    python: str = "python3",
    script: Path = JOB,
    progress: Callable[[str], None] | None = None,
    checkpoint_sync: float | str = INTERVAL,
) -> tuple[RunResult, Path]:
    """``run --recover`` of the resumable job; the machine of attempt k is preempted
    (``preempt``) once ``epoch-<at_epochs[k]>.pt`` is at home (at once for 0)."""
    out = tmp_path / "out"
    home = out / "checkpoints"
    created: list[ResourceRecord] = []
    errors: list[BaseException] = []

    def on_created(record: ResourceRecord) -> None:
        created.append(record)
        k = len(created) - 1
        if preempt is None or k >= len(at_epochs):
            return

        def later() -> None:
            try:
                if at_epochs[k]:
                    wait_for(lambda: (home / f"epoch-{at_epochs[k]}.pt").exists(), timeout=120)
                preempt(record)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        threading.Thread(target=later, daemon=True).start()

    job = TrainingJob(
        command or [python, script.name, "--epochs", str(epochs), "--pause", str(PAUSE)],
        workdir=str(project(tmp_path, script)),
    )
    result = api.run(
        tc,
        provider,
        options,
        job,
        outputs=[],
        output_dir=out,
        checkpoint_sync=checkpoint_sync,
        recover=recover,
        on_created=on_created,
        progress=progress,
    )
    assert not errors, errors
    return result, home


def log_of(job_id: str) -> str:
    return runs.log_path(job_id).read_text()

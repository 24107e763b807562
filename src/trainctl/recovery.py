"""What `run --recover` does when an attempt ends: which endings are worth another
attempt, and where a new attempt's checkpoints come from.

A machine its provider reclaimed (a spot interruption: on AWS the guard ends the job
at the notice, with ``ended_by`` ``preempted``; on RunPod and Lyceum the machine stops
or goes while the job runs) or lost is worth another machine. A job that failed on a
healthy machine is not, unless ``retry_on_failure``: then it runs again on the same
machine. Anything the user or a guard limit ended (Ctrl-C, cancel, a deadline, a spend
cap) is final.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .store import PREEMPTED
from .types import ExecutionStatus, TrainingStatus

#: how many times `--recover` with no number recovers a run
DEFAULT_RECOVERIES = 3
#: why an attempt ended, when another may follow
LOST, FAILED = "lost", "failed"


@dataclass(frozen=True)
class Recovery:
    """At most ``times`` recoveries (0: none); ``retry_on_failure`` counts a job's own
    non-zero exit on a healthy machine as one too."""

    times: int = 0
    retry_on_failure: bool = False

    def allows(self, attempt: int, why: str) -> bool:
        """Whether attempt ``attempt`` (1 for the first), ended by ``why``, is followed
        by another."""
        if attempt > self.times:
            return False
        return why in (PREEMPTED, LOST) or (why == FAILED and self.retry_on_failure)


def ended_by(status: TrainingStatus | None) -> str | None:
    """Why a job that ended on a machine still answering may be tried again: its
    guard saw a preemption notice, the runtime lost it (the machine restarted under
    it), or it failed by itself. None for an ending that is final."""
    if status is None:
        return None
    if status.ended_by == PREEMPTED:
        return PREEMPTED
    if status.ended_by:  # a deadline or a spend cap: what the user asked for
        return None
    if status.status is ExecutionStatus.LOST:
        return LOST
    if status.status is ExecutionStatus.FAILED:
        return FAILED
    return None


def _complete(directory: Path) -> list[Path]:
    """The complete files brought home to ``directory`` (names starting with a dot are
    staged or partial)."""
    if not directory.is_dir():
        return []
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]


def newest_checkpoint(directory: Path) -> tuple[str, float] | None:
    """The newest complete file brought home to ``directory``, and how many seconds
    ago it came (what the job did since is what a recovery does again)."""
    found = _complete(directory)
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    return str(newest.relative_to(directory)), max(time.time() - newest.stat().st_mtime, 0.0)


def files_in(directory: Path) -> dict[str, int]:
    """What a restore sends from ``directory``: relative POSIX path -> size."""
    return {p.relative_to(directory).as_posix(): p.stat().st_size for p in _complete(directory)}

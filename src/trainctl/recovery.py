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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import NotFound, TrainctlError
from .following import GONE, seconds_setting
from .home import load_config
from .store import PREEMPTED
from .types import ExecutionStatus, ResourceState, TrainingStatus

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


#: seconds between two looks at the machine's state while a recovering run follows it
#: (``[recover] watch_interval`` in the config file)
WATCH_SECONDS = 10.0


class Watch:
    """While a recovering run follows its job, ask the provider every ``every``
    seconds whether the machine still runs; once it says stopped or gone, call
    ``cut`` (which ends the connection the log streams over, so that following
    notices now, not when its keepalives time out) and stop looking."""

    def __init__(self, state: Callable[[], ResourceState], cut: Callable[[], None], every: float):
        self.state = state
        self.cut = cut
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainctl-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                state = self.state()
            except NotFound:
                state = ResourceState.TERMINATED
            except TrainctlError:
                continue  # the provider cannot say: following goes on as it is
            if state in GONE and not self._stop.is_set():
                self.cut()
                return


def watch_interval() -> float:
    table = load_config().get("recover", {})
    table = table if isinstance(table, dict) else {}
    return seconds_setting(
        None, table.get("watch_interval"), WATCH_SECONDS, "[recover] watch_interval"
    ) or WATCH_SECONDS

"""Checkpoints brought home while the job runs.

A ``CheckpointPuller`` watches the job's checkpoint directory on the machine and brings
home each file that is new or changed, once it is *settled*: closed by every writer and
left alone for a moment (``runtime/files.py``). A file still being written is taken on a
later pass. One ``JobRuntime.files`` call waits on the machine until something settles
(or ``interval`` seconds, or the job's end), so a checkpoint comes home about a second
after it was closed, for one round trip per change.

A file at home is never partial nor torn: ``Remote.get`` writes it under a temporary
name, and it lands beside its final name (as ``.NAME.trainctl-part-pull``, a name no
sync sends) until the next look at the machine shows it unchanged since it was listed;
only then is it moved into place. One that changed during its download is taken again.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BadInput, NotFound, TrainctlError
from .guards import NEVER, parse_duration
from .home import load_config
from .remote.base import Progress, TransferEvent, human_bytes
from .runtime.client import JobRuntime

#: seconds between two looks at the checkpoint directory at most (``[checkpoints]
#: interval`` in the config file, ``--checkpoint-sync``); a look answers as soon as a
#: file settles, so this bounds only the wait when nothing changes, and the retries
DEFAULT_INTERVAL = 5.0
OFF = "off"
#: how long the last pass waits for files written just before the job ended to settle
FINAL_SETTLE_SECONDS = 10.0
#: what a file brought home is called until it is confirmed unchanged (a name that
#: ``sync.DOWNLOAD_LEFTOVERS`` keeps out of every sync)
STAGED_SUFFIX = ".trainctl-part-pull"
#: how long closing waits for the background thread between two of its steps
JOIN_SECONDS = 2.0


def home_dir(output_dir: Path, checkpoint_dir: str) -> Path:
    """Where a job's checkpoint directory comes home: its last part, in ``output_dir``."""
    return output_dir / (PurePosixPath(checkpoint_dir.rstrip("/")).name or "checkpoints")


def interval(value: Any = None) -> float | None:
    """Seconds between two looks at the checkpoint directory, or None when off:
    ``value`` (a duration such as ``5s`` or ``2m``, seconds as a number, or ``off``),
    else ``interval`` under ``[checkpoints]`` in the config file (seconds, or "off"),
    else ``DEFAULT_INTERVAL``."""
    if value is None:
        table = load_config().get("checkpoints", {})
        configured = table.get("interval") if isinstance(table, dict) else None
        if configured is None:
            return DEFAULT_INTERVAL
        if _off(configured):
            return None
        if _seconds(configured) is None:
            raise BadInput(
                f"bad [checkpoints] interval {configured!r} in the config file: expected "
                'seconds more than 0, or "off"'
            )
        return float(configured)
    if _off(value):
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    parsed = parse_duration(value, "--checkpoint-sync")
    if parsed == NEVER:
        return None
    assert isinstance(parsed, float)
    return parsed


def _off(value: Any) -> bool:
    if value is False:  # a task file's unquoted `off` is YAML's false
        return True
    return isinstance(value, str) and value.strip().lower() in (OFF, NEVER)


def _seconds(value: Any) -> float | None:
    """``value`` as seconds when it is a number more than 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 and not math.isinf(value) else None


@dataclass
class Pulled:
    """What a puller brought home: files (a file brought home again after it changed
    counts again) and their bytes, into ``dir``."""

    dir: Path
    files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"dir": str(self.dir), "files": self.files, "bytes": self.bytes}

    def summary(self) -> str:
        if not self.files:
            return f"checkpoints: none brought home to {self.dir}"
        plural = "s" if self.files != 1 else ""
        return (
            f"checkpoints: {self.files:,} file{plural}, {human_bytes(self.bytes)} brought "
            f"home to {self.dir}"
        )


class CheckpointPuller:
    """Brings ``source`` (a directory on the machine, absolute) home to ``dest`` while
    job ``job_id`` runs: ``start`` looks in a background thread, ``finish`` stops it
    and makes a last pass in the calling thread, ``close`` only stops it.

    Each file brought home is reported to ``progress`` in one line (its name, size
    and seconds). A pass that fails (a lost connection) is reported once and tried
    again ``interval`` seconds later; it never raises out of the thread."""

    def __init__(
        self,
        rt: JobRuntime,
        source: str,
        dest: Path,
        *,
        interval: float,
        job_id: str | None = None,
        name: str | None = None,
        progress: Progress | None = None,
        restored: dict[str, int] | None = None,
    ) -> None:
        self.rt = rt
        self.source = source.rstrip("/") or "/"
        self.dest = Path(dest)
        self.interval = interval
        self.job_id = job_id
        self.name = name or posixpath.basename(self.source)
        self.say: Progress = progress or (lambda _message: None)
        self.result = Pulled(self.dest)
        #: relative path -> (size, mtime_ns) of the version at home
        self._home: dict[str, tuple[int, int]] = {}
        #: relative path -> (size, mtime_ns, seconds) brought home, not yet confirmed
        self._staged: dict[str, tuple[int, int, float]] = {}
        #: relative path -> size of the files sent from home to the machine before the
        #: job began (a recovered run's): not brought back while they are unchanged
        self._restored = dict(restored or {})
        self._digest: str | None = None
        self._failing = False
        self._lock = threading.Lock()  # one pass at a time, the thread's or the last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the background thread ---------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trainctl-checkpoints")
        self._thread.daemon = True  # never holds the process up, whatever happens
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # what the last pass brought is confirmed at once; otherwise wait there
                answer = self.rt.files(
                    self.source,
                    unless=None if self._staged else self._digest,
                    wait=0 if self._staged else self.interval,
                    job=self.job_id,
                )
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._take(answer, stoppable=True)
                self._failing = False
            except (TrainctlError, OSError) as e:
                self._failed(e)
                if self._stop.wait(self.interval):
                    return
                continue
            if answer.get("job_ended") and not self._staged:
                return  # the last pass, after following, takes what is left

    def _failed(self, error: Exception) -> None:
        self._digest = None  # the next look answers at once
        if not self._failing:
            self._failing = True
            self.say(
                f"checkpoints: could not bring {self.name} home ({error}); trying again "
                f"every {self.interval:g}s"
            )

    # --- one pass ----------------------------------------------------------------

    def _take(self, answer: dict[str, Any], *, stoppable: bool = False) -> None:
        """Move into place what the previous pass brought and this answer shows
        unchanged; then bring home every settled file that is new or changed (into
        its staged name). With ``stoppable``, stop between two files once asked."""
        files: dict[str, list[Any]] = answer.get("files") or {}
        self._digest = answer.get("digest")
        for rel, (size, mtime_ns, seconds) in list(self._staged.items()):
            del self._staged[rel]
            staged = self._staged_path(rel)
            now = files.get(rel)
            if now is None or (now[0], now[1]) != (size, mtime_ns):
                staged.unlink(missing_ok=True)  # changed meanwhile: taken again once settled
                continue
            os.replace(staged, self._home_path(rel))
            self._home[rel] = (size, mtime_ns)
            self.result.files += 1
            self.result.bytes += size
            self.say(TransferEvent(f"checkpoint {rel}", size, seconds=seconds, finished=True))
        for rel, (size, mtime_ns, settled) in sorted(files.items()):
            if not settled or self._home.get(rel) == (size, mtime_ns) or not _safe(rel):
                continue
            if self._restored.pop(rel, None) == size:
                self._home[rel] = (size, mtime_ns)  # the copy at home is where it came from
                continue
            if stoppable and self._stop.is_set():
                return
            began = time.monotonic()
            try:
                self.rt.remote.get(posixpath.join(self.source, rel), self._staged_path(rel))
            except NotFound:
                continue  # removed meanwhile (a checkpoint the job rotated out)
            self._staged[rel] = (size, mtime_ns, time.monotonic() - began)

    def _home_path(self, rel: str) -> Path:
        return self.dest.joinpath(*PurePosixPath(rel).parts)

    def _staged_path(self, rel: str) -> Path:
        home = self._home_path(rel)
        return home.with_name(f".{home.name}{STAGED_SUFFIX}")

    # --- the end -----------------------------------------------------------------

    def finish(self, settle: float = FINAL_SETTLE_SECONDS) -> Pulled:
        """Stop the background thread and make the last pass here, once the job has
        ended: files written just before the end are brought home once they settle
        (waited for up to ``settle`` seconds); what is still being written then is
        said and left on the machine."""
        self._stop.set()
        deadline = time.monotonic() + settle
        with self._lock:
            unless, wait = None, 0.0
            while True:
                try:
                    answer = self.rt.files(self.source, unless=unless, wait=wait)
                    self._take(answer)
                except (TrainctlError, OSError) as e:
                    self.say(f"checkpoints: the last look at {self.name} failed ({e})")
                    break
                busy = sorted(rel for rel, v in answer.get("files", {}).items() if not v[2])
                if not self._staged and not busy:
                    break
                left = deadline - time.monotonic()
                if not self._staged and left <= 0:
                    self.say(
                        f"checkpoints: {', '.join(busy)} still being written; left on the machine"
                    )
                    break
                # confirm what was just brought at once, else wait for the busy to settle
                unless, wait = (None, 0.0) if self._staged else (self._digest, max(left, 0.1))
        self.close()
        return self.result

    def stop(self) -> None:
        """Ask the background thread to stop (it takes no new file after this)."""
        self._stop.set()

    def close(self, timeout: float = JOIN_SECONDS) -> None:
        """Stop the background thread and wait for it (up to ``timeout`` seconds:
        after ``stop`` it only finishes the look it is waiting on, which brings
        nothing home). Files brought home but never confirmed are removed."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                return  # a look still waits on the machine; the thread ends after it
        for rel in list(self._staged):
            with contextlib.suppress(OSError):
                self._staged_path(rel).unlink(missing_ok=True)
        self._staged.clear()


def _safe(rel: str) -> bool:
    """A relative path that stays inside the destination (the machine says which)."""
    parts = PurePosixPath(rel).parts
    return bool(parts) and not rel.startswith("/") and ".." not in parts

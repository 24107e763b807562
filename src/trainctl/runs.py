"""What a run keeps at home, under the trainctl home: ``runs/<job-id>/log``, the job's
log as far as trainctl has read it, and the commit of the code it ran.

The log is written as it is read (``LogCopy`` wraps the sink of every log read), so
that following a job is what brings it home; what following missed is fetched on a
later contact with the machine, and before trainctl releases it (``api``).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from .errors import BadInput
from .home import home
from .runtime.client import OutputSink

#: job ids trainctl makes are ``j-`` and hex; one given through the API may be any
#: name that is safe as a directory name
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def run_dir(job_id: str) -> Path:
    """The run's directory at home."""
    if not _SAFE_ID.match(job_id):
        raise BadInput(f"job id {job_id!r} cannot name a directory")
    return home() / "runs" / job_id


def log_path(job_id: str) -> Path:
    return run_dir(job_id) / "log"


def saved(job_id: str) -> int:
    """Bytes of the job's log at home."""
    return saved_size(log_path(job_id))


class LogCopy:
    """A log sink that also appends what it passes on to the run's log at home. It
    knows the offset of every chunk, so a read that starts before the end of the copy
    adds only what is new, and one that starts after it (a gap) adds nothing: the gap
    is fetched later, and bytes are never written out of place."""

    def __init__(self, job_id: str, offset: int, sink: OutputSink | None) -> None:
        self.path = log_path(job_id)
        self.path.parent.parent.mkdir(mode=0o700, exist_ok=True)
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        self.sink = sink
        self.offset = offset

    def __call__(self, chunk: bytes) -> None:
        if self.sink:
            self.sink(chunk)
        have = saved_size(self.path)
        end = self.offset + len(chunk)
        if self.offset <= have < end:
            with self.path.open("ab") as f:
                f.write(chunk[have - self.offset :])
        self.offset = end


def append_from(copy: LogCopy, get: Callable[[str, Path], Path], remote: str, have: int) -> None:
    """Bring the log at ``remote`` home in one copy (``get``: a Remote's), then add
    what the copy at home lacks from byte ``have`` on."""
    fetched = copy.path.with_name(".log.fetched")
    try:
        get(remote, fetched)
        with fetched.open("rb") as f:
            f.seek(have)
            copy.offset = have
            while data := f.read(1 << 20):
                copy(data)
    finally:
        fetched.unlink(missing_ok=True)


def saved_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_saved(job_id: str, offset: int, sink: OutputSink, chunk: int = 1 << 20) -> int:
    """Pass the saved log from ``offset`` to ``sink``; returns the bytes passed."""
    passed = 0
    try:
        f = log_path(job_id).open("rb")
    except FileNotFoundError:
        return 0
    with f:
        f.seek(offset)
        while data := f.read(chunk):
            sink(data)
            passed += len(data)
    return passed


def git_state(workdir: str | None) -> tuple[str, bool] | None:
    """The commit checked out in ``workdir`` and whether the tree differs from it
    (untracked files count, ignored ones do not); None outside a git repository or
    without git."""
    if workdir is None:
        return None

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", "-C", workdir, *args],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    changes = git("status", "--porcelain")
    return commit.strip(), bool(changes and changes.strip())

"""Wait for a new machine to become usable, and release it if it never does.

Every cloud provider has the same last step of ``create_resource``: poll the
machine until it is ready, report progress, and on a timeout, an error state, a
failed poll or Ctrl-C terminate it (nothing left billing) and say why.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from .errors import OperationFailed, ResourceLeft, TrainctlError
from .interrupts import Interrupt, Released
from .remote.base import Progress

T = TypeVar("T")


_thread = threading.local()


@contextmanager
def cancelled_by(event: threading.Event) -> Iterator[None]:
    """Within the block, a wait in this thread ends as a Ctrl-C would end it (the
    machine released) once ``event`` is set: signals reach the main thread only, so
    a create running in another thread (a node of a group) is cancelled this way."""
    _thread.cancel = event
    try:
        yield
    finally:
        _thread.cancel = None


def _cancelled() -> None:
    event = getattr(_thread, "cancel", None)
    if event is not None and event.is_set():
        raise Interrupt(signal.SIGINT)


@dataclass(frozen=True)
class Seen:
    """What one poll found: ``state`` is shown in progress lines and errors;
    ``failure`` (a reason) means the machine will never become ready."""

    state: str
    ready: bool = False
    failure: str | None = None


def wait_ready(
    what: str,
    poll: Callable[[], T],
    look: Callable[[T], Seen],
    *,
    release: Callable[[], object] | None,
    resource_id: str | None = None,
    timeout: float,
    interval: float,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Poll until ``look(poll())`` is ready and return that poll's value.

    ``what`` names the machine in messages ("pod abc123"). On a failure state, a
    timeout, an error raised by ``poll`` or an interrupt, ``release()`` (which
    terminates the machine) is called first and the error then says what happened
    and whether terminating worked. ``release=None`` leaves the machine alone (for
    waits on a machine that already existed, e.g. after a start).
    A ``TrainctlError`` from ``poll`` keeps its class (and exit code), unless the
    release fails too: then ``ResourceLeft`` (carrying ``resource_id``) says that
    the machine may still be billing, so that its record is kept."""
    start = clock()
    shown = None
    try:
        while True:
            _cancelled()
            value = poll()
            seen = look(value)
            waited = clock() - start
            if seen.state != shown and progress:
                progress(f"{what}: {seen.state} ({waited:.0f} s)")
            shown = seen.state
            if seen.ready:
                return value
            if seen.failure:
                raise OperationFailed(f"{what} failed: {seen.failure}")
            if waited >= timeout:
                raise OperationFailed(
                    f"{what} was not ready after {timeout:g} s (still {seen.state})"
                )
            sleep(min(interval, timeout - waited))
            _cancelled()
    except (Exception, KeyboardInterrupt) as e:
        if release is None:
            raise
        released, ok = _release(release, progress, what)
        if not ok:
            if isinstance(e, KeyboardInterrupt) and progress:
                progress(f"interrupted: {released}")
            message = e.message if isinstance(e, TrainctlError) else f"{type(e).__name__}: {e}"
            raise ResourceLeft(f"{message}; {released}", resource_id=resource_id) from None
        if isinstance(e, TrainctlError):
            # amended in place: a copy would rebuild the error from its message alone,
            # which errors with more required fields (``ApiError.status``) cannot take
            e.message = f"{e.message}; {released}"
            e.args = (e.message,)
            raise e from None
        if isinstance(e, KeyboardInterrupt):
            if progress:
                progress(f"interrupted: {released}")
            raise Released(getattr(e, "signum", signal.SIGINT)) from None
        raise OperationFailed(f"{what}: {type(e).__name__}: {e}; {released}") from e


def _release(
    release: Callable[[], object], progress: Progress | None, what: str
) -> tuple[str, bool]:
    if progress:
        progress(f"terminating {what}")
    try:
        release()
    except Exception as e:  # report, never mask the original error
        return f"terminating {what} failed too ({e}): it may still be billing", False
    return f"{what} was terminated", True

"""Ctrl-C, SIGTERM and SIGHUP, all handled as one interrupt.

A CI job cancelled, ``timeout`` or a closed terminal sends SIGTERM or SIGHUP, not
SIGINT; each of them must take the same graceful path as Ctrl-C, so while
``signals_interrupt()`` is active every one of them raises ``Interrupt`` (a
``KeyboardInterrupt`` that remembers its signal), and ``deferred()`` holds them all
while a machine is being released.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import TrainctlError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupt(KeyboardInterrupt):
    """An interrupting signal, raised where the main thread was."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


class Released(Interrupt):
    """An interrupt that stopped a create after the machine it made was released:
    nothing is left of that create, so its intent can go."""


class Interrupted(TrainctlError):
    """A command stopped by an interrupt, having said what it left as it was."""

    exit_code = 130
    kind = "interrupted"


def name(exc: BaseException) -> str:
    """How to say which signal interrupted: ``Ctrl-C``, ``SIGTERM`` or ``SIGHUP``."""
    signum = getattr(exc, "signum", signal.SIGINT)
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupt(signum)


@contextmanager
def _handlers(handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP each raise ``Interrupt``."""
    with _handlers(_raise):
        yield


@contextmanager
def deferred() -> Iterator[None]:
    """Let a release finish: an interrupting signal during it is held and raised
    afterwards, so an impatient Ctrl-C (or a second SIGTERM) cannot leave a machine
    billing."""
    caught: list[int] = []
    with _handlers(lambda signum, _frame: caught.append(signum)):
        yield
    if caught:
        raise Interrupt(caught[0])

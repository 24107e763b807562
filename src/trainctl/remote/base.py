"""The data-plane interface: run a command, move files, stream output.

Commands are argv lists, never shell strings: each Remote quotes them for its
transport, so arguments reach the program verbatim.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CapabilityError

if TYPE_CHECKING:  # `trainctl --help` loads this module: sockets and sessions wait
    from .ports import Forwarding, PortForward
    from .sessions import Session

Progress = Callable[[str], None]
"""Receives one human-readable progress line at a time (some are ``TransferEvent``s)."""


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class TransferEvent(str):
    """A progress line of a file transfer that also carries its numbers.

    It is a ``str``, so any ``Progress`` callable can print it as it is; the CLI's
    printer draws a bar from the numbers on a terminal. ``finished`` marks the one
    summary line of a transfer (files, bytes, time)."""

    what: str
    done: int
    total: int | None
    files: int
    seconds: float
    finished: bool

    def __new__(
        cls,
        what: str,
        done: int,
        total: int | None = None,
        *,
        files: int = 0,
        seconds: float = 0.0,
        finished: bool = False,
    ) -> TransferEvent:
        if finished:
            count = f"{files:,} file{'s' if files != 1 else ''}, " if files else ""
            line = f"{what}: {count}{human_bytes(done)} in {seconds:.1f} s"
        elif total:
            line = f"{what}: {human_bytes(done)} of {human_bytes(total)} ({100 * done // total}%)"
        else:
            line = f"{what}: {human_bytes(done)}"
        event = super().__new__(cls, line)
        event.what, event.done, event.total = what, done, total
        event.files, event.seconds, event.finished = files, seconds, finished
        return event


@dataclass
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def error_text(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


@dataclass
class SyncResult:
    files_sent: int = 0
    bytes_sent: int = 0
    total_bytes: int = 0
    transferred_bytes: int = 0  # size of the files sent, before compression


class Remote(ABC):
    """One machine. ``runtime_root`` is where the job runtime lives on it.

    A relative ``runtime_root`` is relative to the home directory of the user that
    commands run as.
    """

    #: interpreter used on the machine for the job runtime
    python: str = "python3"
    #: most log bytes one read may return (transports with output limits set it)
    max_read: int | None = None
    #: False when command output is carried as text: binary data then travels base64-encoded
    binary_output: bool = True

    @property
    @abstractmethod
    def description(self) -> str:
        """Short human name of the machine, used in messages (never holds secrets)."""

    @property
    @abstractmethod
    def runtime_root(self) -> str: ...

    @abstractmethod
    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``argv`` on the machine. A non-zero exit is returned, not raised;
        failing to reach the machine raises ``RemoteError``."""

    @abstractmethod
    def put_tree(
        self,
        src: Path,
        dest: str,
        *,
        delete: bool = False,
        protect: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> SyncResult:
        """Make ``dest`` on the machine hold ``src``'s files, honouring ``.gitignore``
        and ``.trainctlignore``. With ``delete``, files gone locally are removed, except
        paths in ``protect`` (relative to ``dest``)."""

    def session(self, argv: Sequence[str] | None, *, tty: bool) -> Session:
        """The local program that runs ``argv`` on the machine, or a login shell when
        it is None or empty (see ``sessions``): in the job's work directory, with the
        job's environment file sourced. ``tty``: whether stdin is a terminal."""
        raise CapabilityError(f"{self.description} offers no shell")

    def ssh_host_options(self) -> dict[str, str]:
        """The ``ssh_config`` options (HostName, Port, User, IdentityFile...) that let
        the user's own ssh, scp or editor reach the machine by a Host name; raises
        ``CapabilityError``, saying why, for a machine ssh does not reach."""
        raise CapabilityError(f"{self.description} is not reached over SSH")

    def forward(self, ports: Sequence[PortForward]) -> Forwarding:
        """Forward each of the machine's ``ports`` to its local port here, up until the
        ``Forwarding`` is closed. Callers refuse local ports in use first
        (``ports.check_free``), so that the error is a clear one."""
        raise CapabilityError(f"{self.description} cannot forward ports")

    def close(self) -> None:
        """End the connection shared by this Remote's commands, under whatever uses it
        (none by default: each command is its own)."""
        return None

    @abstractmethod
    def get(self, src: str, dest: Path, *, progress: Progress | None = None) -> Path:
        """Copy ``src`` (absolute on the machine) here. A directory's contents land in
        ``dest`` (created if needed); a file lands at ``dest``, or inside it when
        ``dest`` is an existing directory. Returns where it landed."""


class StreamingRemote(Remote):
    """A Remote that can stream a command's stdout as it is produced."""

    @abstractmethod
    def stream(self, argv: Sequence[str]) -> Iterator[bytes]:
        """Yield ``argv``'s stdout in chunks as they arrive. Raises ``RemoteError``
        if the connection drops before the command ends."""

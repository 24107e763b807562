"""Ports of a machine forwarded to this one: `trainctl forward` and `--port`."""

from __future__ import annotations

import errno
import socket
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..errors import BadInput

#: forwarded ports listen on this machine's loopback only
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class PortForward:
    """The machine's port ``remote`` reached at localhost:``local`` here."""

    remote: int
    local: int

    @classmethod
    def parse(cls, text: str) -> PortForward:
        """``PORT`` or ``PORT:LOCAL``, each 1 to 65535."""
        head, sep, tail = text.partition(":")
        values = [head, tail] if sep else [head]
        if not all(v.isdigit() and 0 < int(v) < 65536 for v in values):
            raise BadInput(
                f"bad port {text!r}: expected PORT or PORT:LOCAL, each from 1 to 65535"
            )
        remote = int(head)
        return cls(remote, int(tail) if sep else remote)


def parse_ports(values: tuple[str, ...] | list[str]) -> list[PortForward]:
    """Specs given on a command line; each local port once."""
    ports = [PortForward.parse(v) for v in values]
    locals_ = [p.local for p in ports]
    twice = sorted({p for p in locals_ if locals_.count(p) > 1})
    if twice:
        raise BadInput(f"local port {twice[0]} is given twice")
    return ports


def check_free(ports: list[PortForward]) -> None:
    """Refuse, before anything is set up, a local port something here already uses."""
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind((LOCALHOST, p.local))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                raise BadInput(
                    f"local port {p.local} is already in use on this machine",
                    hint=f"pick another: {p.remote}:LOCAL forwards port {p.remote} to LOCAL",
                ) from None


class Forwarding(ABC):
    """Forwarded ports, up until ``close``."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Return after ``timeout`` seconds (None: never) while the ports stay
        forwarded; raise ``RemoteError`` once they are not (the connection is lost)."""

    @abstractmethod
    def close(self) -> None:
        """Remove the forwards. Idempotent."""

    def __enter__(self) -> Forwarding:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Unneeded(Forwarding):
    """Ports already here: the machine is this one."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def wait(self, timeout: float | None = None) -> None:
        self._closed.wait(timeout)

    def close(self) -> None:
        self._closed.set()

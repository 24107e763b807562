"""Ports forwarded over an SSH machine's shared connection (``ssh -O forward``).

The forwards are added to the ControlMaster that every command to the machine
shares, and cancelled (``ssh -O cancel``) when closed. A listening forward does not
count as a client of the master (OpenSSH's ``channel_still_open`` skips port
listeners), so ``ControlPersist`` would end the master, and the forwards with it, a
few minutes after the last command: a session that runs ``cat`` with nothing to read
holds it open meanwhile, and its end is how a lost connection shows.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import sshkeys
from ..errors import RemoteError
from .ports import LOCALHOST, Forwarding, PortForward

if TYPE_CHECKING:
    from .ssh import SSHRemote

#: seconds one ``ssh -O`` request to the master may take
CONTROL_TIMEOUT = 30


class SSHForwarding(Forwarding):
    def __init__(self, remote: SSHRemote, ports: Sequence[PortForward]) -> None:
        self.remote = remote
        self.ports = list(ports)
        self._added: list[PortForward] = []
        remote.run(["true"])  # the shared connection, made now if there is none
        self._holder: subprocess.Popen[bytes] | None = subprocess.Popen(
            remote.command_line(["cat"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for port in self.ports:
                self._control("forward", port)
                self._added.append(port)
        except BaseException:
            self.close()
            raise

    def _control(self, action: str, port: PortForward) -> subprocess.CompletedProcess[str]:
        spec = f"{LOCALHOST}:{port.local}:localhost:{port.remote}"
        argv = [
            sshkeys.require_tool("ssh"),
            *self.remote.ssh_options(forwarding=True),
            "-O",
            action,
            "-L",
            spec,
            "--",
            self.remote.endpoint.host,
        ]
        p = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CONTROL_TIMEOUT
        )
        if p.returncode != 0 and action == "forward":
            why = p.stderr.strip().splitlines()[-1:] or [f"ssh exit {p.returncode}"]
            raise RemoteError(
                f"cannot forward port {port.remote} of {self.remote.description} to "
                f"localhost:{port.local}: {why[0]}"
            )
        return p

    def wait(self, timeout: float | None = None) -> None:
        if self._holder is None:
            raise RemoteError(f"the forwards to {self.remote.description} are closed")
        try:
            self._holder.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        raise RemoteError(f"the connection to {self.remote.description} was lost")

    def close(self) -> None:
        for port in reversed(self._added):
            # a failure means the master is gone, and its forwards with it
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._control("cancel", port)
        self._added = []
        holder, self._holder = self._holder, None
        if holder is not None:
            assert holder.stdin is not None
            holder.stdin.close()  # cat ends at the end of its input
            try:
                holder.wait(5)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()

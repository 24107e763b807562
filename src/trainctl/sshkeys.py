"""trainctl's own SSH key pair and known_hosts, kept under the trainctl home.

The key (ed25519, no passphrase, private half mode 0600) is made on first use with
``ssh-keygen``. Providers that create machines authorize its public half there; the
``ssh`` provider offers it when the user names no key of their own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from .errors import OperationFailed
from .home import home

KEY_NAME = "id_ed25519"


def ssh_dir() -> Path:
    d = home() / "ssh"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def known_hosts_path() -> Path:
    """trainctl's own known_hosts: host keys of the machines it has reached."""
    return ssh_dir() / "known_hosts"


def private_key_path() -> Path:
    """The private key, created on first use."""
    path = ssh_dir() / KEY_NAME
    if not path.exists():
        _generate(path)
    return path


def public_key() -> str:
    """The public key as one ``authorized_keys`` line (no trailing newline)."""
    return Path(str(private_key_path()) + ".pub").read_text().strip()


def forget_host(name: str) -> None:
    """Drop the keys of ``name`` (``host`` or ``[host]:port``) from trainctl's known_hosts.

    For providers that have just created or deleted a machine: its address may come back
    with another machine, and a new key, behind it."""
    path = known_hosts_path()
    if path.exists():
        subprocess.run(
            [require_tool("ssh-keygen"), "-R", name, "-f", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise OperationFailed(
            f"{name} is not installed on this machine",
            hint="install the OpenSSH client, e.g. apt-get install openssh-client",
        )
    return path


def _generate(path: Path) -> None:
    # A lock file keeps two processes from each writing half of a pair.
    with (path.parent / ".keygen.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            tmp_key = Path(tmp) / KEY_NAME
            p = subprocess.run(
                [
                    require_tool("ssh-keygen"),
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"trainctl@{socket.gethostname()}",
                    "-f",
                    str(tmp_key),
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
            if p.returncode != 0:
                raise OperationFailed(f"ssh-keygen could not make a key: {p.stderr.strip()}")
            os.chmod(tmp_key, 0o600)
            os.replace(str(tmp_key) + ".pub", str(path) + ".pub")
            os.replace(tmp_key, path)

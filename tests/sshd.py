"""A real OpenSSH server on 127.0.0.1 for tests, with one Unix user per "machine".

``SSHServer`` runs Debian's ``sshd`` as root on a free unprivileged port with a
generated host key, in a private temporary directory, logging to ``server.log``.
``server.new_machine()`` creates a dedicated Unix user whose home lies under that
directory: each machine is isolated from the others and nothing is written to
/root. ``machine.destroy()`` kills the user's processes and removes the user and
its home, which is what deleting a cloud VM does.

Also a pytest plugin (``pytest_plugins = ["sshd"]`` in the root conftest):

- ``sshd`` (session): the running server;
- ``ssh_machine``: a fresh machine that accepts ``sshd.client_key``;
- ``sshd_factory``: start extra servers (torn down after the test).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_PREFIX = "trainctl-sshd-"
# Serializes useradd / userdel between concurrent test processes on this machine:
# both lock /etc/passwd and fail instead of waiting when another holds it.
USERS_LOCK = Path(tempfile.gettempdir()) / "trainctl-sshd-users.lock"


def find_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SBIN_PATH)
    if not path:
        pytest.skip(f"{name} is not installed (apt-get install openssh-server openssh-client)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        [find_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path


@contextmanager
def users_lock() -> Iterator[None]:
    with USERS_LOCK.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_admin(argv: list[str]) -> None:
    """Run useradd / userdel, retrying while another process holds the passwd lock."""
    deadline = time.monotonic() + 30
    while True:
        with users_lock():
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if p.returncode == 0:
            return
        if time.monotonic() > deadline or "lock" not in p.stderr.lower():
            raise RuntimeError(f"{' '.join(argv)} failed: {p.stderr.strip()}")
        time.sleep(0.1)


def pids_of_uid(uid: int) -> list[int]:
    """Live processes running as ``uid`` (zombies, already dead, are left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields.get("State", "").strip().startswith("Z"):
            continue
        uids = fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid:
            found.append(int(entry))
    return found


def kill_uid(uid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process running as ``uid`` (one test user), by pid, until none is left."""
    deadline = time.monotonic() + timeout
    while pids := pids_of_uid(uid):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of uid {uid} survive SIGKILL: {pids}")
        time.sleep(0.05)


def reap_stale() -> None:
    """Remove what the servers of test processes that died without teardown left:
    their sshd, their users and their directory (only when the owner is gone)."""
    for base in Path(tempfile.gettempdir()).glob(BASE_PREFIX + "*"):
        try:
            owner = int((base / "owner").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
            continue
        except ProcessLookupError:
            pass
        try:
            daemon = int((base / "sshd.pid").read_text())
            if str(base).encode() in Path(f"/proc/{daemon}/cmdline").read_bytes():
                os.kill(daemon, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        for line in Path("/proc/mounts").read_text().splitlines():
            mountpoint = line.split()[1]
            if mountpoint.startswith(str(base) + "/"):
                subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        homes = base / "homes"
        for home in homes.iterdir() if homes.is_dir() else ():
            try:
                pw = pwd.getpwnam(home.name)
            except KeyError:
                continue
            if pw.pw_dir == str(home):
                kill_uid(pw.pw_uid)
                run_admin(["userdel", "--force", home.name])
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Machine:
    """One isolated machine: a Unix user reachable as ``user@host:port``."""

    host: str
    port: int
    user: str
    home: Path
    uid: int
    gid: int
    server: SSHServer = field(repr=False)
    destroyed: bool = False

    @property
    def target(self) -> str:
        """``user@host:port``, as ``trainctl create --provider ssh --host`` takes it."""
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def runtime_root(self) -> Path:
        return self.home / ".trainctl"

    def authorize(self, pubkey_text: str, options: str = "") -> None:
        """Let the holder of this public key log in (``options``: authorized_keys options)."""
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        line = f"{options} {pubkey_text.strip()}".strip()
        with keys.open("a") as f:
            f.write(line + "\n")
        for path in (ssh_dir, keys):
            os.chown(path, self.uid, self.gid)
        keys.chmod(0o600)

    def write(self, relpath: str, data: bytes | str, mode: int = 0o644) -> Path:
        """Create a file in the home, owned by the machine's user."""
        path = self.home / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)
        path.chmod(mode)
        p = path
        while p != self.home:
            os.chown(p, self.uid, self.gid)
            p = p.parent
        return path

    def processes(self) -> list[int]:
        return pids_of_uid(self.uid)

    def drop_connections(self) -> int:
        """Kill the server side of every SSH session to this machine (as a network
        drop does); the machine's other processes live on. Returns how many died."""
        killed = 0
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "sshd":
                        continue
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (OSError, ProcessLookupError):
                continue
        return killed

    def halt(self) -> None:
        """Kill the machine's processes, as a stopped machine runs nothing; its user
        and home stay for when it runs again."""
        if not self.destroyed:
            kill_uid(self.uid)

    def destroy(self) -> None:
        """Kill the machine's processes and remove its user and home. Idempotent."""
        if self.destroyed:
            return
        self.destroyed = True
        kill_uid(self.uid)
        for mount in self.server.mounts_under(self.home):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        run_admin(["userdel", "--force", self.user])
        shutil.rmtree(self.home, ignore_errors=True)


class SSHServer:
    """sshd on 127.0.0.1:``port``; stop() kills it, its sessions and its machines."""

    def __init__(self) -> None:
        reap_stale()
        self.tag = secrets.token_hex(3)
        self.base = Path(tempfile.mkdtemp(prefix=BASE_PREFIX))
        (self.base / "owner").write_text(str(os.getpid()))
        # users must traverse the base to reach their homes
        self.base.chmod(0o755)
        self.homes = self.base / "homes"
        self.homes.mkdir(mode=0o755, exist_ok=True)
        self.config = self.base / "sshd_config"
        self.log = self.base / "server.log"
        self.host_key = self.base / "ssh_host_ed25519_key"
        self.client_key = keygen(self.base / "client_key", "trainctl-test-client")
        self.host = "127.0.0.1"
        self.port = 0
        self.machines: list[Machine] = []
        self._mounts: list[Path] = []
        self._proc: subprocess.Popen | None = None
        self._count = 0

    # -- lifecycle ----------------------------------------------------------------

    def start(self, port: int | None = None) -> SSHServer:
        sshd = find_tool("sshd")  # sshd refuses to run unless started by absolute path
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        if not self.host_key.exists():
            keygen(self.host_key, "trainctl-test-host")
        for _attempt in range(5):
            self.port = port or free_port()
            self._write_config()
            seen = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [sshd, "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            (self.base / "sshd.pid").write_text(str(self._proc.pid))
            if self._wait_listening(seen):
                return self
            self._kill_daemon()
            if port:
                break
        raise RuntimeError(f"sshd did not start; see {self.log}:\n{self.log.read_text()[-2000:]}")

    def _write_config(self) -> None:
        self.config.write_text(
            f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile none
UsePAM no
StrictModes yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
PermitUserEnvironment PATH
PermitRootLogin no
AllowUsers tc{self.tag}*
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
        )

    def _wait_listening(self, seen: int, timeout: float = 10.0) -> bool:
        """Wait for this start's "listening" line (past the ``seen`` bytes of the log)."""
        needle = f"Server listening on {self.host} port {self.port}".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log.read_bytes()[seen:]:
                return True
            if self._proc is not None and self._proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def _kill_daemon(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def restart(self, *, new_host_key: bool = False) -> None:
        """Stop sshd (dropping every connection) and start it on the same port,
        optionally with a new host key, as when a machine is rebuilt."""
        for m in self.machines:
            if not m.destroyed:
                kill_uid(m.uid)
        self._kill_daemon()
        if new_host_key:
            self.host_key.unlink()
            self.host_key.with_suffix(".pub").unlink()
        self.start(self.port)

    def stop(self) -> None:
        for m in self.machines:
            m.destroy()
        self._kill_daemon()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- machines -----------------------------------------------------------------

    def new_machine(self, *, authorize_client_key: bool = True) -> Machine:
        self._count += 1
        user = f"tc{self.tag}m{self._count}"
        home = self.homes / user
        run_admin(
            [
                "useradd",
                "--create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/bin/bash",
                "--password",
                "*",  # no password, not locked: sshd without PAM refuses locked accounts
                "--user-group",
                user,
            ]
        )
        pw = pwd.getpwnam(user)
        home.chmod(0o700)  # private to the machine; StrictModes wants it not group-writable
        machine = Machine(self.host, self.port, user, home, pw.pw_uid, pw.pw_gid, self)
        self.machines.append(machine)
        if authorize_client_key:
            machine.authorize(self.client_key.with_suffix(".pub").read_text())
        return machine

    def mount_tmpfs(self, path: Path, size: str, owner: Machine) -> bool:
        """Mount a small tmpfs at ``path`` (for disk-full tests); False if not permitted."""
        path.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
        )
        if p.returncode != 0:
            return False
        self._mounts.append(path)
        os.chown(path, owner.uid, owner.gid)
        return True

    def mounts_under(self, root: Path) -> list[Path]:
        found = [m for m in self._mounts if m.is_relative_to(root)]
        self._mounts = [m for m in self._mounts if m not in found]
        return found

    def ssh_argv(self, machine: Machine, *command: str) -> list[str]:
        """A plain ``ssh`` command line to the machine with the client key (for checks)."""
        return [
            find_tool("ssh"),
            "-F",
            "/dev/null",
            "-i",
            str(self.client_key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.base / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "LogLevel=ERROR",
            f"{machine.user}@{self.host}",
            *command,
        ]


# -- pytest plugin ------------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture runs sshd and creates Unix users: it needs root")


@pytest.fixture(scope="session")
def sshd() -> Iterator[SSHServer]:
    require_root()
    server = SSHServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ssh_machine(sshd: SSHServer) -> Iterator[Machine]:
    machine = sshd.new_machine()
    try:
        yield machine
    finally:
        machine.destroy()


@pytest.fixture
def sshd_factory() -> Iterator[Callable[[], SSHServer]]:
    """Starts private servers (for tests that restart or re-key them)."""
    started: list[SSHServer] = []

    def make() -> SSHServer:
        require_root()
        server = SSHServer()
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()

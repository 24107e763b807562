"""A machine reached over SSH: the system OpenSSH client, files moved with rsync.

Every command shares one connection per machine (ControlMaster, kept for
``CONTROL_PERSIST`` seconds after the last use, so a second command costs a few
milliseconds). Host keys go to trainctl's own known_hosts: a new machine's key is
accepted on first contact (``accept-new``), a changed key is refused. Commands are
argv lists joined with ``shlex.join`` for the login shell on the machine, so every
argument reaches the program verbatim.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import sshkeys, sync
from ..errors import BadInput, CredentialsError, NotFound, OperationFailed, RemoteError
from ..home import home
from .base import CommandResult, Progress, StreamingRemote, SyncResult, TransferEvent
from .ports import Forwarding, PortForward
from .sessions import Session, session_command

CONTROL_PERSIST = 300
CONNECT_TIMEOUT = 10
SSH_FAILED = 255  # ssh's exit code for its own failures
RSYNC_FILE_IO = 11  # rsync's exit code for an error in file I/O
# A Unix socket path holds at most 107 characters on Linux, 103 on macOS; ssh adds a
# 17-character suffix while it sets up a master socket.
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
_SOCKET_NAME_LEN = 16

_HOSTNAME = re.compile(r"^[A-Za-z0-9_.:%\-]+$")


@dataclass(frozen=True)
class Endpoint:
    """``user@host:port``; a missing user or port is left to ssh and its config."""

    host: str
    port: int | None = None
    user: str | None = None

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``[user@]host[:port]`` (IPv6 addresses in brackets when a port follows)."""
        bad = BadInput(f"bad SSH host {text!r}: expected user@host or user@host:port")
        raw = (text or "").strip()
        user, _, rest = raw.rpartition("@")
        port: str | None = None
        if rest.startswith("["):
            host, sep, tail = rest[1:].partition("]")
            if not sep or (tail and not tail.startswith(":")):
                raise bad
            port = tail[1:] if tail else None
        elif rest.count(":") == 1:
            host, port = rest.split(":")
        else:
            host = rest
        if not host or host.startswith("-") or not _HOSTNAME.match(host):
            raise bad
        if user and (user.startswith("-") or any(c.isspace() or c in "@:/" for c in user)):
            raise bad
        if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
            raise bad
        return cls(host, int(port) if port else None, user or None)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        text = f"{self.user}@{host}" if self.user else host
        return f"{text}:{self.port}" if self.port else text

    @property
    def known_hosts_name(self) -> str:
        """How the host appears in known_hosts."""
        return f"[{self.host}]:{self.port}" if self.port and self.port != 22 else self.host


def _ssh_value(value: str) -> str:
    """Quote a path for an ``ssh -o Key=value`` option (ssh splits and expands % there)."""
    value = value.replace("%", "%%")
    if re.search(r"[\s\"'\\]", value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _rsync_quote(arg: str) -> str:
    """Quote one word of rsync's ``-e`` command: single quotes, doubled inside."""
    if arg and re.fullmatch(r"[\w@%+=:,./-]+", arg):
        return arg
    return "'" + arg.replace("'", "''") + "'"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OperationFailed(
            f"{path} must be a directory private to this user",
            hint=f"remove it or run: chmod 700 {path}",
        )
    return path


def control_dir() -> Path:
    """Where the shared-connection sockets live: under the trainctl home, or in a short
    private directory when that path is too long for a Unix socket."""
    preferred = home() / "ssh" / "cm"
    if len(str(preferred)) + 1 + _SOCKET_NAME_LEN + 17 <= MAX_SOCKET_PATH:
        return _private_dir(preferred)
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    tag = hashlib.sha256(str(home()).encode()).hexdigest()[:12]
    return _private_dir(_private_dir(Path(base) / f"trainctl-{os.getuid()}") / tag)


# (phrases in ssh's stderr, kind): the first match decides.
_SSH_FAILURES = (
    (("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed"), "hostkey"),
    (("Permission denied (", "Too many authentication failures"), "auth"),
    (
        (
            "Connection refused",
            "No route to host",
            "Could not resolve hostname",
            "Name or service not known",
            "Connection timed out",
            "Operation timed out",
            "Network is unreachable",
            "banner exchange",
            "kex_exchange_identification",
        ),
        "unreachable",
    ),
    (
        (
            "closed by remote host",
            "Connection closed by",
            "Connection reset",
            "Broken pipe",
            "client_loop:",
            "not responding",
            "mux_client",
            "Control socket connect",
        ),
        "lost",
    ),
)


def _first_line_with(text: str, phrase: str) -> str:
    for line in text.splitlines():
        if phrase in line:
            return line.strip().removeprefix("ssh: ")
    return phrase


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


#: how long one login of ``probe_login`` may take
LOGIN_PROBE_TIMEOUT = 15.0


class SSHRemote(StreamingRemote):
    """One machine reached as ``endpoint`` with ``key`` (trainctl's own by default).

    With ``identities_only`` (the default) ssh offers that key alone; without it,
    the user's agent and ssh config identities are tried too.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        key: str | Path | None = None,
        identities_only: bool = True,
        runtime_root: str = ".trainctl",
        python: str = "python3",
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.endpoint = Endpoint.parse(endpoint) if isinstance(endpoint, str) else endpoint
        self.key = Path(key).expanduser() if key else None
        self.identities_only = identities_only
        self._runtime_root = runtime_root
        self.python = python
        self.connect_timeout = connect_timeout

    @property
    def description(self) -> str:
        return str(self.endpoint)

    @property
    def runtime_root(self) -> str:
        return self._runtime_root

    # -- the ssh command line -------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.key or sshkeys.private_key_path()

    def _control_path(self) -> Path:
        ident = f"{self.endpoint}\0{self.key_path}\0{self.identities_only}"
        name = hashlib.sha256(ident.encode()).hexdigest()[:_SOCKET_NAME_LEN]
        return control_dir() / name

    def ssh_options(self, *, forwarding: bool = False) -> list[str]:
        """Options shared by every ssh call to this machine, rsync's included. Commands
        clear any forwarding the user's ssh config asks for; ``forwarding`` keeps what
        the call gives (``ssh -O forward -L``: ClearAllForwardings would clear it too)."""
        e = self.endpoint
        opts = {
            "BatchMode": "yes",
            "ControlMaster": "auto",
            "ControlPath": _ssh_value(str(self._control_path())),
            "ControlPersist": str(CONTROL_PERSIST),
            "StrictHostKeyChecking": "accept-new",
            "UserKnownHostsFile": _ssh_value(str(sshkeys.known_hosts_path())),
            "ConnectTimeout": str(max(1, round(self.connect_timeout))),
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "3",
            "ClearAllForwardings": "no" if forwarding else "yes",
            "LogLevel": "ERROR",
        }
        if self.identities_only:
            opts["IdentitiesOnly"] = "yes"
        argv = ["-T"]
        for name, value in opts.items():
            argv += ["-o", f"{name}={value}"]
        argv += ["-i", str(self.key_path)]
        if e.port:
            argv += ["-p", str(e.port)]
        if e.user:
            argv += ["-l", e.user]
        return argv

    def _ssh(self, *args: str) -> list[str]:
        return [sshkeys.require_tool("ssh"), *self.ssh_options(), *args]

    def command_line(self, argv: Sequence[str]) -> list[str]:
        """The local ssh argv that runs ``argv`` on the machine."""
        if not argv:
            raise BadInput("empty remote command")
        return self._ssh("--", self.endpoint.host, shlex.join(argv))

    def session(self, argv: Sequence[str] | None, *, tty: bool) -> Session:
        """ssh over the shared connection, with a terminal for a shell typed into one;
        ssh itself passes the command's exit code through (255: its own failure)."""
        options = self.ssh_options()
        if tty and not argv:
            options[options.index("-T")] = "-t"
        command = shlex.join(session_command(self.runtime_root, argv))
        return Session([sshkeys.require_tool("ssh"), *options, "--", self.endpoint.host, command])

    def ssh_host_options(self) -> dict[str, str]:
        """trainctl's key and known_hosts: what ``ssh_options`` uses, for the user's ssh."""
        e = self.endpoint
        options = {"HostName": e.host}
        if e.port:
            options["Port"] = str(e.port)
        if e.user:
            options["User"] = e.user
        options.update(
            IdentityFile=_ssh_value(str(self.key_path)),
            IdentitiesOnly="yes" if self.identities_only else "no",
            UserKnownHostsFile=_ssh_value(str(sshkeys.known_hosts_path())),
            StrictHostKeyChecking="accept-new",
        )
        return options

    def forward(self, ports: Sequence[PortForward]) -> Forwarding:
        from .sshforward import SSHForwarding

        return SSHForwarding(self, ports)

    # -- errors ---------------------------------------------------------------------

    def transport_error(self, stderr: str) -> Exception | None:
        """The error ssh's own failure in ``stderr`` means, or None."""
        for phrases, kind in _SSH_FAILURES:
            for phrase in phrases:
                if phrase in stderr:
                    return self._error(kind, _first_line_with(stderr, phrase))
        first = stderr.strip().splitlines()[0] if stderr.strip() else ""
        if first.startswith("ssh:") or first.startswith("command-line"):
            return RemoteError(f"ssh to {self.description} failed: {first}")
        return None

    def _failure(self, stderr: str) -> Exception | None:
        """Why a command ended with ssh's exit code 255: ssh's own failure, or the shared
        connection gone (its clients then exit 255 without a word), or None when the
        command itself exited 255."""
        error = self.transport_error(stderr)
        if error is None and not stderr.strip() and not self._master_alive():
            error = self._error("lost", "the connection closed")
        return error

    def _master_alive(self) -> bool:
        p = subprocess.run(
            self._ssh("-O", "check", "--", self.endpoint.host),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        return p.returncode == 0

    def _error(self, kind: str, detail: str) -> Exception:
        d = self.description
        if kind == "hostkey":
            forget = shlex.join(
                [
                    "ssh-keygen",
                    "-f",
                    str(sshkeys.known_hosts_path()),
                    "-R",
                    self.endpoint.known_hosts_name,
                ]
            )
            return OperationFailed(
                f"the host key of {d} has changed since trainctl first connected: refusing "
                "to connect (the machine was rebuilt, or someone is in between)",
                hint=f"if the machine was rebuilt, forget its old key with: {forget}",
            )
        if kind == "auth":
            return CredentialsError(
                f"{d} refused the SSH key {self.key_path}",
                hint=f"add {self.key_path}.pub to ~/.ssh/authorized_keys there, or give the "
                "key that machine accepts with --key",
            )
        if kind == "unreachable":
            return RemoteError(
                f"cannot reach {d}: {detail}",
                hint="check that the machine is running and the host and port are right",
            )
        return RemoteError(f"lost the connection to {d}: {detail}")

    def _disk_full(self) -> RemoteError:
        return RemoteError(
            f"the disk of {self.description} is full",
            hint="free space there (df -h shows where) and try again",
        )

    # -- commands -------------------------------------------------------------------

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            p = subprocess.run(
                self.command_line(argv),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise RemoteError(
                f"command {argv[0]!r} on {self.description} timed out after {timeout} s"
            ) from None
        if p.returncode == SSH_FAILED:
            error = self._failure(p.stderr.decode("utf-8", "replace"))
            if error:
                raise error
        return CommandResult(p.returncode, p.stdout, p.stderr)

    def stream(self, argv: Sequence[str]) -> Iterator[bytes]:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                self.command_line(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
            assert proc.stdout is not None
            try:
                while chunk := os.read(proc.stdout.fileno(), 65536):
                    yield chunk
            finally:
                proc.stdout.close()
                if proc.poll() is None:
                    proc.terminate()
                proc.wait()
            if proc.returncode != 0:
                err.seek(0)
                text = err.read().decode("utf-8", "replace")
                failure = self._failure(text) if proc.returncode == SSH_FAILED else None
                raise failure or RemoteError(
                    f"{argv[0]} on {self.description} ended with exit {proc.returncode}: "
                    f"{_last_line(text)}"
                )

    def check(self, timeout: float | None = None) -> None:
        """Raise the matching clear error unless the machine answers."""
        r = self.run(["true"], timeout=timeout)
        if not r.ok:
            raise RemoteError(
                f"{self.description} answered but cannot run commands: "
                f"{r.error_text() or f'exit {r.returncode}'}"
            )

    def probe_login(self, probed: set[str], timeout: float = LOGIN_PROBE_TIMEOUT) -> str | None:
        """One login to a machine the provider has just made: ``None`` when it
        worked, else why not (a message). The first probe of an address forgets the
        host key kept for it (an earlier machine's); ``probed`` (one set per new
        machine) remembers which addresses were probed already. Providers call this
        while waiting for a new machine, until it lets trainctl in."""
        name = self.endpoint.known_hosts_name
        if name not in probed:
            probed.add(name)
            self.forget_host_key()
        try:
            self.check(timeout=timeout)
        except (RemoteError, CredentialsError) as e:
            return e.message
        return None

    def forget_host_key(self) -> None:
        """Forget the machine's host key: call it when the provider has just created or
        deleted the machine, so that the next machine at this address is accepted."""
        sshkeys.forget_host(self.endpoint.known_hosts_name)

    def close(self) -> None:
        """End the shared connection, if one is open."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                self._ssh("-O", "exit", "--", self.endpoint.host),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )

    # -- files ----------------------------------------------------------------------

    def _rsync(self, *args: str) -> list[str]:
        shell = " ".join(_rsync_quote(a) for a in self._ssh())
        # -s: paths travel inside rsync's protocol, never through the remote shell
        return [sync.require_rsync(), "-e", shell, "-s", *args]

    def _remote_path(self, path: str) -> str:
        host = self.endpoint.host
        return f"[{host}]:{path}" if ":" in host else f"{host}:{path}"

    def _rsync_error(self, stderr: str, code: int, what: str, upload: bool) -> Exception:
        if "No space left on device" in stderr or "Disk quota exceeded" in stderr:
            if upload:
                return self._disk_full()
            return OperationFailed(f"the local disk is full: {what} did not complete")
        if code == 127 or re.search(r"rsync: (command )?not found", stderr):
            return RemoteError(
                f"rsync is not installed on {self.description}",
                hint="install it there, e.g. apt-get install rsync",
            )
        error = self.transport_error(stderr) if code in (SSH_FAILED, 12) else None
        if error:
            return error
        return OperationFailed(f"{what} failed: {_last_line(stderr) or f'rsync exit {code}'}")

    def put_tree(
        self,
        src: Path,
        dest: str,
        *,
        delete: bool = False,
        protect: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> SyncResult:
        r = self.run(["mkdir", "-p", "--", dest])
        if not r.ok:
            if "No space left" in r.error_text():
                raise self._disk_full()
            raise RemoteError(f"cannot create {dest} on {self.description}: {r.error_text()}")
        argv = self._rsync(
            *sync.tree_args(str(src), self._remote_path(dest), delete=delete, protect=protect)
        )
        code, out, err = sync.run_rsync(argv, progress=progress, what="sync")
        if code == RSYNC_FILE_IO and self._nearly_full(dest):
            # the receiver can die of a full disk before its message reaches us
            raise self._disk_full()
        if code != 0:
            raise self._rsync_error(err, code, f"sync of {src} to {self.description}", True)
        return sync.parse_stats(out)

    def _nearly_full(self, path: str) -> bool:
        """Whether the file system of ``path`` on the machine has under 1 MiB free."""
        r = self.run(["df", "-Pk", "--", path])
        lines = r.text().splitlines() if r.ok else []
        fields = lines[-1].split() if len(lines) > 1 else []
        return len(fields) >= 4 and fields[3].isdigit() and int(fields[3]) < 1024

    def _kind(self, path: str) -> tuple[str, int | None]:
        """'d' for a directory, 'f' for anything else that exists, 'n' for nothing;
        with the size of a regular file."""
        script = (
            'if [ -d "$1" ]; then echo d; elif [ -f "$1" ]; then echo f $(wc -c < "$1"); '
            'elif [ -e "$1" ]; then echo f; else echo n; fi'
        )
        r = self.run(["sh", "-c", script, "sh", path])
        kind, _, size = r.text().strip().partition(" ")
        if not r.ok or kind not in ("d", "f", "n") or (size and not size.isdigit()):
            raise RemoteError(f"cannot inspect {path} on {self.description}: {r.error_text()}")
        return kind, int(size) if size else None

    def get(self, src: str, dest: Path, *, progress: Progress | None = None) -> Path:
        kind, size = self._kind(src)
        if kind == "n":
            raise NotFound(f"{src} does not exist on {self.description}")
        target, args = self._download_args(src, dest, directory=kind == "d")
        if kind == "f" and self._streams(src, target):
            self._stream_file(src, target, size, progress)
            return target
        code, _, err = sync.run_rsync(self._rsync(*args), progress=progress, what="download")
        if code != 0:
            raise self._rsync_error(err, code, f"download of {src} from {self.description}", False)
        return target

    @staticmethod
    def _streams(src: str, target: Path) -> bool:
        """Whether the file ``src`` is copied as a plain stream (``_stream_file``): a
        checkpoint (``sync.incompressible``) with no partial data of a cut download
        to resume from."""
        partial = target.parent / sync.PARTIAL_DIR / target.name
        return sync.incompressible(src) and not partial.exists()

    def _stream_file(
        self, src: str, target: Path, size: int | None, progress: Progress | None
    ) -> None:
        """Copy one checkpoint as a plain byte stream (``cat``) over the shared
        connection: rsync's three processes take a quarter to a half longer than
        ``scp`` on a large incompressible file, a stream a little less than scp
        (``bench/download.py``). It is written into ``sync.PARTIAL_DIR`` and renamed
        into place once complete, so a complete copy already there survives a cut
        download (the client's own death included), and the next download's rsync
        resumes from what arrived."""
        partial_dir = target.parent / sync.PARTIAL_DIR
        partial_dir.mkdir(exist_ok=True)
        partial = partial_dir / target.name
        began = time.monotonic()
        with tempfile.TemporaryFile() as errors, partial.open("wb") as out:
            proc = subprocess.Popen(
                self.command_line(["cat", "--", src]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=errors,
            )
            try:
                while True:
                    try:
                        code = proc.wait(timeout=sync.EVENT_INTERVAL)
                        break
                    except subprocess.TimeoutExpired:
                        if progress:
                            done = os.fstat(out.fileno()).st_size
                            progress(TransferEvent("download", done, size))
            finally:
                if proc.poll() is None:  # interrupted: ssh ends with the client
                    proc.kill()
                    proc.wait()
            errors.seek(0)
            err = errors.read().decode("utf-8", "replace")
            got = os.fstat(out.fileno()).st_size
        if code != 0:
            if got == 0:
                partial.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    partial_dir.rmdir()
            raise self._rsync_error(err, code, f"download of {src} from {self.description}", False)
        os.replace(partial, target)
        with contextlib.suppress(OSError):
            partial_dir.rmdir()
        if progress:
            progress(
                TransferEvent(
                    "download", got, files=1, seconds=time.monotonic() - began, finished=True
                )
            )

    def _download_args(self, src: str, dest: Path, *, directory: bool) -> tuple[Path, list[str]]:
        """Where a download of ``src`` lands, and the rsync arguments that copy it there.

        A file with a suffix of ``sync.INCOMPRESSIBLE_SUFFIXES`` (a checkpoint) goes
        uncompressed; rsync takes it only to resume a cut download (otherwise it is
        streamed, ``_stream_file``), so it keeps the delta algorithm, whose basis is
        the partial data. A directory may mix logs and checkpoints (one rsync run
        cannot choose per file): it keeps compression, which logs need on a slow
        link, and goes whole unless a cut download left partial data in it, since
        the delta algorithm costs several times the copy on a rewritten checkpoint
        and saves little on a log."""
        if directory:
            dest.mkdir(parents=True, exist_ok=True)
            resuming = any(p.is_dir() for p in dest.rglob(sync.PARTIAL_DIR))
            return dest, sync.copy_args(
                self._remote_path(src.rstrip("/") + "/"), str(dest) + "/", whole_file=not resuming
            )
        target = dest / Path(src).name if dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        heavy = sync.incompressible(src)
        return target, sync.copy_args(self._remote_path(src), str(target), compress=not heavy)

"""This machine as a Remote: commands run as subprocesses, files move with rsync."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import sync
from ..errors import CapabilityError, NotFound, OperationFailed, RemoteError
from .base import CommandResult, Progress, StreamingRemote, SyncResult, TransferEvent
from .ports import Forwarding, PortForward, Unneeded
from .sessions import Session, session_command


class _Copier:
    """Copies files for one download, reporting ``TransferEvent``s: the bytes so far
    (at most every ``sync.EVENT_INTERVAL``), then one summary line, as rsync does.

    Each file is written under a temporary name beside it, then renamed: an
    interrupted copy never leaves a truncated file under the final name nor destroys
    the one there."""

    CHUNK = 1 << 20

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress = total, progress
        self.done = self.files = 0
        self.began = self.shown = time.monotonic()

    def __call__(self, src: str | Path, dst: str | Path) -> None:
        dst = Path(dst)
        tmp = dst.with_name(f".{dst.name}.trainctl-part-{os.getpid()}")
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(self.CHUNK):
                    fout.write(chunk)
                    self.done += len(chunk)
                    self._report()
            shutil.copystat(src, tmp)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        self.files += 1

    def _report(self) -> None:
        now = time.monotonic()
        if self.progress and now - self.shown >= sync.EVENT_INTERVAL:
            self.shown = now
            self.progress(TransferEvent("download", self.done, self.total or None))

    def finish(self) -> None:
        if self.progress:
            seconds = time.monotonic() - self.began
            self.progress(
                TransferEvent(
                    "download", self.done, files=self.files, seconds=seconds, finished=True
                )
            )


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class LocalRemote(StreamingRemote):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = sys.executable or "python3"

    @property
    def description(self) -> str:
        return f"local:{self.root}"

    @property
    def runtime_root(self) -> str:
        return str(self.root)

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        if not self.root.is_dir():
            raise RemoteError(f"workspace {self.root} does not exist")
        try:
            p = subprocess.run(
                list(argv),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                cwd=self.root,
            )
        except FileNotFoundError as e:
            raise RemoteError(f"cannot run {argv[0]!r} on this machine: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"command {argv[0]!r} timed out after {timeout} s") from None
        return CommandResult(p.returncode, p.stdout, p.stderr)

    def session(self, argv: Sequence[str] | None, *, tty: bool) -> Session:
        if not self.root.is_dir():
            raise RemoteError(f"workspace {self.root} does not exist")
        command = session_command(str(self.root), argv)
        return Session([shutil.which("sh") or "/bin/sh", *command[1:]])

    def ssh_host_options(self) -> dict[str, str]:
        raise CapabilityError(f"{self.description} is this machine: no SSH needed")

    def forward(self, ports: Sequence[PortForward]) -> Forwarding:
        """Nothing to do: the machine's ports are this machine's."""
        moved = [p for p in ports if p.local != p.remote]
        if moved:
            raise CapabilityError(
                f"{self.description} is this machine: its port {moved[0].remote} is "
                f"localhost:{moved[0].remote} already",
                hint=f"give {moved[0].remote}, not {moved[0].remote}:{moved[0].local}",
            )
        return Unneeded()

    def stream(self, argv: Sequence[str]) -> Iterator[bytes]:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=self.root
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
            raise RemoteError(f"log stream on {self.description} ended with code {proc.returncode}")

    def put_tree(
        self,
        src: Path,
        dest: str,
        *,
        delete: bool = False,
        protect: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> SyncResult:
        argv = [
            sync.require_rsync(),
            *sync.tree_args(str(src), dest, delete=delete, protect=protect),
        ]
        Path(dest).mkdir(parents=True, exist_ok=True)
        code, out, err = sync.run_rsync(argv, progress=progress, what="sync")
        if code != 0:
            raise OperationFailed(f"sync of {src} failed: {err.strip() or f'rsync exit {code}'}")
        return sync.parse_stats(out)

    def get(self, src: str, dest: Path, *, progress: Progress | None = None) -> Path:
        source = Path(src)
        if not source.exists():
            raise NotFound(f"{src} does not exist on {self.description}")
        copy = _Copier(_size(source), progress)
        if source.is_dir():
            target = dest
            shutil.copytree(source, target, dirs_exist_ok=True, copy_function=copy)
        else:
            target = dest / source.name if dest.is_dir() else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            copy(source, target)
        copy.finish()
        return target

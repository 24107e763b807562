"""Drives the job runtime (``jobrunner.py`` and its guard) on a machine through any Remote."""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from functools import cached_property
from importlib import resources
from typing import Any

from ..errors import CredentialsError, NotFound, RemoteError
from ..remote.base import CommandResult, Remote, StreamingRemote
from ..types import ExecutionStatus, TrainingStatus

# Writes the runtime's files (stdin: a JSON map of name to base64 content) into the
# given directory unless it is already there; a directory appears whole or not at all.
_INSTALL = (
    "import base64,json,os,shutil,sys\n"
    "d=os.path.expanduser(sys.argv[1])\n"
    "if not os.path.isdir(d):\n"
    "    files=json.loads(sys.stdin.read())\n"
    "    t=d+'.%d'%os.getpid()\n"
    "    os.makedirs(t)\n"
    "    for n,b in files.items():\n"
    "        open(os.path.join(t,n),'wb').write(base64.b64decode(b))\n"
    "    try:\n"
    "        os.rename(t,d)\n"
    "    except OSError:\n"
    "        shutil.rmtree(t)\n"
)
#: the files of the runtime, installed together in one directory
RUNTIME_FILES = (
    "jobrunner.py",
    "guard.py",
    "release.py",
    "files.py",
    "objstore.py",
    "launch.py",
)

READ_CHUNK = 1 << 20
POLL_SECONDS = 1.0
#: seconds between the "still here" commands of a long transfer (see ``attached``)
KEEPALIVE_SECONDS = 60.0

OutputSink = Callable[[bytes], None]
#: ``on_drop`` of ``JobRuntime.follow``: (the error, consecutive failures so far)
DropHandler = Callable[[RemoteError | CredentialsError, int], None]


def new_job_id() -> str:
    return "j-" + secrets.token_hex(4)


def _retry_briefly(error: RemoteError | CredentialsError, failures: int) -> None:
    """Following's default on a lost connection: a few quick tries, then give up; a
    refused key is not tried again."""
    if isinstance(error, CredentialsError) or failures > 5:
        raise error
    time.sleep(min(2.0, 0.2 * 2**failures))


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


def _files() -> dict[str, bytes]:
    here = resources.files("trainctl.runtime")
    return {name: here.joinpath(name).read_bytes() for name in RUNTIME_FILES}


class JobRuntime:
    """The runtime on one machine: start, inspect, cancel and read jobs.

    Jobs are started for ``resource_id`` and listed or cancelled in bulk for it
    alone, so two registrations of one machine never touch each other's jobs."""

    def __init__(self, remote: Remote, resource_id: str) -> None:
        self.remote = remote
        self.resource_id = resource_id
        self._installed = False

    @cached_property
    def _script_path(self) -> str:
        h = hashlib.sha256()
        for name, data in sorted(_files().items()):
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return f"{self.remote.runtime_root}/bin/runtime-{h.hexdigest()[:12]}/jobrunner.py"

    def _argv(self, *args: str) -> list[str]:
        return [self.remote.python, self._script_path, "--root", self.remote.runtime_root, *args]

    def ensure_installed(self) -> None:
        if self._installed:
            return
        files = {n: base64.b64encode(b).decode() for n, b in _files().items()}
        r = self.remote.run(
            [self.remote.python, "-c", _INSTALL, posixpath.dirname(self._script_path)],
            input=json.dumps(files).encode(),
        )
        if not r.ok:
            raise self._failure(
                r, "cannot install the job runtime", hint="the machine needs python3"
            )
        self._installed = True

    def _run(self, *args: str, input: bytes | None = None) -> CommandResult:
        """Run a runtime sub-command, installing the runtime first if the machine lacks it.

        The script's path carries its digest, so it is either there and current or
        missing: trying first saves a round trip on every call but the first."""
        r = self.remote.run(self._argv(*args), input=input)
        if not self._installed and r.returncode == 2 and b"can't open file" in r.stderr:
            self.ensure_installed()
            r = self.remote.run(self._argv(*args), input=input)
        self._installed = self._installed or r.ok
        return r

    def _call(self, *args: str, input: bytes | None = None) -> Any:
        r = self._run(*args, input=input)
        try:
            data = json.loads(r.stdout)
        except ValueError:
            raise self._failure(r, "job runtime failed") from None
        if isinstance(data, dict) and "error" in data:
            raise RemoteError(f"job runtime on {self.remote.description}: {data['error']}")
        return data

    def _failure(self, r: CommandResult, what: str, hint: str | None = None) -> RemoteError:
        """One line for a failed runtime command: its stderr's last line (a Python
        traceback ends with the exception), or a full disk said plainly."""
        where = self.remote.description
        text = r.error_text() or r.text().strip()
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return RemoteError(
                f"the disk of {where} is full", hint="free space there (df -h shows where)"
            )
        lines = text.splitlines()
        return RemoteError(
            f"{what} on {where}: {lines[-1] if lines else f'exit {r.returncode}'}", hint=hint
        )

    @cached_property
    def info(self) -> dict[str, Any]:
        """Absolute ``root`` and ``work`` directories on the machine."""
        return self._call("info")

    @property
    def workdir(self) -> str:
        return self.info["work"]

    def home_path(self, path: str) -> str:
        """A path on the machine: absolute as it is, else under its user's home."""
        if path.startswith("/"):
            return path
        rest = path[1:].lstrip("/") if path.startswith("~") else path
        return f"{self.info['home'].rstrip('/')}/{rest}".rstrip("/")

    def resolve(self, path: str) -> str:
        """A path on the machine: relative paths resolve in the synced work directory."""
        return path if path.startswith("/") else f"{self.workdir}/{path}"

    def start(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        job_id: str | None = None,
        checkpoint_dir: str = "checkpoints",
        setup: str | None = None,
        image: str | None = None,
        setup_errexit: bool = True,
        mounts: list[str] | None = None,
    ) -> TrainingStatus:
        """Start ``argv`` (after ``setup``, a shell script, and in container ``image``
        when given, with ``mounts``, directories on the machine, mounted in it too: see
        runtime/launch.py)."""
        spec = {
            "job_id": job_id or new_job_id(),
            "argv": list(argv),
            "env": dict(env or {}),
            "checkpoint_dir": checkpoint_dir,
            "owner": self.resource_id,
        }
        if setup:
            spec["setup"] = setup
            if not setup_errexit:
                spec["setup_errexit"] = False
        if image:
            spec["image"] = image
            if mounts:
                spec["mounts"] = list(mounts)
        # The spec, env included, travels on stdin: never on a command line.
        return self._status(self._call("start", input=json.dumps(spec).encode()))

    def status(self, job_id: str) -> TrainingStatus:
        (raw,) = self._call("status", job_id)
        if raw.get("status") == "unknown":
            raise NotFound(f"no job {job_id} on {self.resource_id}")
        return self._status(raw)

    def list(self) -> list[TrainingStatus]:
        """This resource's jobs, oldest first."""
        return [self._status(raw) for raw in self._call("status", "--owner", self.resource_id)]

    def running(self) -> list[dict[str, Any]]:
        """Every running or pending job on this runtime root, whoever started it, as
        the runtime reports it (``checkpoint_dir`` included, absolute)."""
        return self._call("status", "--running")

    def cancel(self, job_id: str, grace: float = 10.0) -> TrainingStatus:
        raw = self._call("cancel", job_id, str(grace))
        if raw.get("status") == "unknown":
            raise NotFound(f"no job {job_id} on {self.resource_id}")
        return self._status(raw)

    def cancel_all(self, grace: float = 10.0) -> list[TrainingStatus]:
        """End every process this resource's jobs still have, running or left behind."""
        raws = self._call("cancel", "--all", str(grace), "--owner", self.resource_id)
        return [self._status(raw) for raw in raws]

    # --- the machine's guard (guard.py) ------------------------------------------

    def guard_set(
        self,
        policy: dict[str, Any],
        secret: str | None = None,
        store_secret: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Merge ``policy`` into the guard's (a None value switches that limit off) and
        start the guard; ``secret`` (the release's) and ``store_secret`` (the object
        store's access key) travel on stdin and are kept mode 0600 there."""
        spec = dict(policy)
        if secret is not None:
            spec["secret"] = secret
        if store_secret is not None:
            spec["store_secret"] = store_secret
        return self._call("guard-set", input=json.dumps(spec).encode())

    def guard_status(self) -> dict[str, Any]:
        return self._call("guard-status")

    @contextmanager
    def attached(self, every: float = KEEPALIVE_SECONDS) -> Iterator[None]:
        """While the block runs (an upload or a download, which are no runtime
        commands), one every ``every`` seconds tells the machine's guard that a client
        is still there, so that a long transfer is not taken for idleness."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(every):
                with suppress(RemoteError):
                    self._run("touch")

        beating = threading.Thread(target=beat, name="trainctl-keepalive", daemon=True)
        beating.start()
        try:
            yield
        finally:
            done.set()
            beating.join()

    def guard_stop(self) -> dict[str, Any]:
        """Disarm the guard; it ends within its interval."""
        return self._call("guard-stop")

    def files(
        self,
        path: str,
        *,
        unless: str | None = None,
        wait: float = 0.0,
        job: str | None = None,
    ) -> dict[str, Any]:
        """The files under ``path`` on the machine (relative: in the work directory)
        and which are settled, complete enough to take (``runtime/files.py``): with
        ``unless`` and ``wait``, answered once they differ from the answer with that
        digest, or after ``wait`` seconds, or once ``job`` has ended (the answer's
        ``job_ended`` then says so)."""
        args = ["files", path]
        if unless:
            args += ["--unless", unless]
        if wait:
            args += ["--wait", f"{wait:g}"]
        if job:
            args += ["--job", job]
        return self._call(*args)

    def log_path(self, job_id: str) -> str:
        """Where the job's log is on the machine."""
        return f"{self.info['root']}/jobs/{job_id}/log"

    def read(self, job_id: str, offset: int = 0, limit: int = READ_CHUNK) -> bytes:
        """Log bytes from ``offset``: at most ``limit``, and no more than the Remote's
        ``max_read`` (base64-encoded in transit where output is text)."""
        limit = min(limit, self.remote.max_read or limit)
        args = ["read", job_id, str(offset), str(limit)]
        if not self.remote.binary_output:
            args.append("--b64")
        r = self._run(*args)
        if not r.ok:
            raise self._failure(r, f"cannot read the log of {job_id}")
        return r.stdout if self.remote.binary_output else base64.b64decode(r.stdout)

    def follow(
        self,
        job_id: str,
        sink: OutputSink,
        offset: int = 0,
        *,
        on_drop: DropHandler | None = None,
    ) -> TrainingStatus:
        """Pass the log from ``offset`` to ``sink`` until the job ends; return its status.

        Streams where the Remote can, else polls. A dropped stream resumes from the
        last byte delivered, so no byte is lost or repeated. When the machine cannot
        be reached, ``on_drop(error, failures)`` decides: it returns (after waiting)
        to try again, or raises to give up; by default following gives up after a
        few quick tries."""
        drop = on_drop or _retry_briefly
        streaming = isinstance(self.remote, StreamingRemote)
        failures = 0
        while True:
            try:
                if streaming:
                    self.ensure_installed()
                    for chunk in self.remote.stream(self._argv("tail", job_id, str(offset))):
                        sink(chunk)
                        offset += len(chunk)
                        failures = 0
                else:
                    while chunk := self.read(job_id, offset):
                        sink(chunk)
                        offset += len(chunk)
                st = self.status(job_id)
            except (RemoteError, CredentialsError) as e:
                failures += 1
                drop(e, failures)
                continue
            failures = 0
            if st.status.is_final and st.log_size <= offset:
                return st
            if not streaming:
                time.sleep(POLL_SECONDS)

    def _status(self, raw: dict[str, Any]) -> TrainingStatus:
        return TrainingStatus(
            job_id=raw["job_id"],
            resource_id=self.resource_id,
            status=ExecutionStatus(raw["status"]),
            exit_code=raw.get("exit_code"),
            reason=raw.get("reason"),
            command=raw.get("command") or [],
            started_at=_ts(raw.get("started_at")),
            ended_at=_ts(raw.get("ended_at")),
            heartbeat_age=raw.get("heartbeat_age"),
            log_size=raw.get("log_size") or 0,
            ended_by=raw.get("ended_by"),
        )

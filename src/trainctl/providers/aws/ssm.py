"""An EC2 instance as a Remote, reached through SSM Run Command; bulk data through S3.

No open port and no SSH key: each command is one ``AWS-RunShellScript`` invocation
(run by ``sh`` as root, possibly without HOME). What the design rests on:

- ``GetCommandInvocation`` returns at most 24,000 characters of stdout and 8,000 of
  stderr, and only once the command has ended: there is no streaming. The agent cuts
  any output of 24,000 bytes *or more* to 23,980 bytes plus ``--output truncated--``
  (amazon-ssm-agent, ``pluginutil.StringPrefix``), so the wrapper around every command
  keeps stdout in a file and, when it has 24,000 bytes or more, uploads it to the
  staging bucket and prints a marker instead; the client fetches it from there. Log
  reads are sized so that they never need this.
- The agent adds ``failed to run commands: exit status N`` to the stderr of every
  command that exits non-zero; that line is dropped, so that a command's own last
  line (``python3: not found``, the job's error) is what errors show.
- SSM keeps command text in its history, so ``input`` (job specs carry the user's
  environment) never goes into it: it is sealed to the machine's own key pair
  (``sealbox``: a leftover object, after a ``kill -9`` between upload and clean-up,
  is readable by nobody else), uploaded to the machine's prefix of the staging
  bucket, fetched and opened by the machine into a private temporary directory, fed
  to the command's stdin, and both copies are deleted when the command ends.
- Code goes up as one bundle of changed files (``treesync``), downloads come back
  through a staging prefix with boto3's managed transfer. Staging objects are
  deleted after use; the bucket also expires anything left behind after a day.

boto3 is imported inside functions only.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import CapabilityError, NotFound, OperationFailed, RemoteError
from ...remote import treesync
from ...remote.base import CommandResult, Progress, Remote, SyncResult, TransferEvent
from ...remote.ports import Forwarding, PortForward
from ...remote.sessions import Session, new_exit_marker, session_command
from . import sealbox, sessionmanager
from .session import aws_errors, client, client_error, error_code, sdk_errors
from .setup import STORE_PART

log = logging.getLogger(__name__)

#: output limits of GetCommandInvocation, in characters: the agent cuts output of
#: STDOUT_LIMIT bytes or more (MaxStdoutLength of amazon-ssm-agent's iohandler)
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
#: what the agent puts at the end of output it cut (OutputTruncatedSuffix)
TRUNCATED_SUFFIX = "--output truncated--"
#: the line the agent's runscript plugin adds to stderr when a command fails: Go's
#: ``exec.ExitError`` text after ``failed to run commands: ``
_AGENT_FAILURE = re.compile(
    r"(?:\A|\n)failed to run commands: (?:exit status -?\d+|signal: [^\n]+)\Z"
)
#: log bytes per read: base64 (4 characters per 3 bytes) plus a newline stays under
#: STDOUT_LIMIT, so reads never take the slower way through the bucket
READ_LIMIT = (STDOUT_LIMIT - 8) // 4 * 3
#: seconds SSM may take to deliver a command before giving up on it
DELIVERY_TIMEOUT = 60
#: executionTimeout of commands given no timeout (SSM's own default)
DEFAULT_EXECUTION_TIMEOUT = 3600
#: seconds a fresh command may be unknown to GetCommandInvocation
INVOCATION_GRACE = 15.0
#: the machine's input key pair (relative to root's home, where commands start)
INPUT_KEY = ".trainctl/input.key"
#: what the machine says when a sealed input does not open (sealed to an older key)
_NOT_OPENED = "cannot open the command input"
_RUNNING = {"Pending", "InProgress", "Delayed", "Cancelling"}
_STOPPED_STATES = {"stopping", "stopped", "shutting-down", "terminated"}

# Uploads what `get` asked for to the staging prefix and says what it was.
_GET_SCRIPT = """\
src=$1 url=$2 region=$3
if [ -d "$src" ]; then
  aws s3 cp --recursive --only-show-errors --region "$region" "$src" "$url" >&2 || exit 1
  echo dir
elif [ -f "$src" ]; then
  aws s3 cp --only-show-errors --region "$region" "$src" "${url}file" >&2 || exit 1
  echo file
else
  echo missing
fi
"""


class _StaleKey(Exception):
    """The machine could not open a sealed input: it holds another key than the one
    cached here."""


def sealbox_source() -> str:
    """Source of the machine side of ``sealbox``, run as ``python3 -c SOURCE``."""
    return resources.files("trainctl.providers.aws").joinpath("sealbox.py").read_text()


def _log_progress(line: str) -> None:
    """Progress with no caller to show it: trainctl's log (seen with --debug)."""
    log.info("%s", line)


class SSMRemote(Remote):
    """``session`` is a boto3 session; ``prefix`` is the machine's own part of the
    staging bucket (the only one its role may use); ``instance_state`` (optional)
    returns the instance's EC2 state, so that waiting for the agent stops early on a
    machine that is going away."""

    max_read = READ_LIMIT
    binary_output = False

    def __init__(
        self,
        session: Any,
        instance_id: str,
        *,
        region: str,
        bucket: str,
        prefix: str,
        state_dir: Path,
        progress: Progress | None = None,
        online_timeout: float = 600.0,
        poll_interval: float = 1.0,
        instance_state: Callable[[], str | None] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.region = region
        self._session = session
        self.bucket = bucket
        self.prefix = prefix
        self.progress = progress or _log_progress
        self.online_timeout = online_timeout
        self.poll_interval = poll_interval
        self.instance_state = instance_state
        self.manifest = treesync.Manifest(state_dir / f"{instance_id}.json")
        self._ssm = client(session, "ssm", region)
        self._s3 = client(session, "s3", region)
        self._online = False
        self._recipient: bytes | None = None

    @property
    def description(self) -> str:
        return f"{self.instance_id} (SSM, {self.region})"

    @property
    def runtime_root(self) -> str:
        return ".trainctl"  # commands start in root's home directory

    # --- sessions (Session Manager) -----------------------------------------------

    def session(self, argv: Sequence[str] | None, *, tty: bool) -> Session:
        """A Session Manager session as root; a command's exit code comes back after
        a marker (the plugin does not pass it through)."""
        marker = new_exit_marker() if argv else None
        command = ["sudo", "-H", *session_command(self.runtime_root, argv, exit_marker=marker)]
        program = sessionmanager.start_session(
            self.instance_id,
            self.region,
            sessionmanager.INTERACTIVE,
            {"command": [shlex.join(command)]},
        )
        env = sessionmanager.cli_environment(self._session)
        return Session(program, env=env, exit_marker=marker)

    def ssh_host_options(self) -> dict[str, str]:
        """Refused: the instance has no SSH port open, and a ProxyCommand through SSM
        would need a key of the user's own on it."""
        raise CapabilityError(f"{self.description} is reached through SSM Session Manager")

    def forward(self, ports: Sequence[PortForward]) -> Forwarding:
        env = sessionmanager.cli_environment(self._session)
        return sessionmanager.PortSessions(
            self.instance_id, self.region, env, ports, self.description
        )

    # --- commands ------------------------------------------------------------------

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        self.wait_online()
        try:
            return self._run(argv, input, timeout)
        except _StaleKey:
            # the machine has another key than the one cached here: ask it again, once
            self._recipient = None
            self._key_file.unlink(missing_ok=True)
        try:
            return self._run(argv, input, timeout)
        except _StaleKey:
            raise RemoteError(f"on {self.description}: {_NOT_OPENED}") from None

    @property
    def _key_file(self) -> Path:
        return self.manifest.path.with_suffix(".pub")

    def _public_key(self) -> bytes:
        """The machine's input public key: cached here, else asked for (the machine
        makes its key pair on first use)."""
        if self._recipient is None:
            try:
                self._recipient = bytes.fromhex(self._key_file.read_text().strip())
            except (OSError, ValueError):
                self._recipient = self._keygen()
                self._key_file.parent.mkdir(parents=True, exist_ok=True)
                self._key_file.write_text(self._recipient.hex() + "\n")
        return self._recipient

    def _keygen(self) -> bytes:
        r = self._run([self.python, "-c", sealbox_source(), "keygen", INPUT_KEY], None, 60)
        text = r.text().strip()
        if r.ok and len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return bytes.fromhex(text)
        raise RemoteError(
            f"cannot make the input key on {self.description}: "
            f"{r.error_text() or text or f'exit {r.returncode}'}",
            hint="the machine needs python3",
        )

    def _run(
        self, argv: Sequence[str], input: bytes | None, timeout: float | None
    ) -> CommandResult:
        nonce = secrets.token_hex(8)
        in_key, out_key = self._key("in", nonce), self._key("out", nonce)
        cleanup = [in_key] if input is not None else []
        try:
            sealed = None if input is None else sealbox.seal(self._public_key(), input)
            with aws_errors(f"run a command on {self.instance_id}"):
                if sealed is not None:
                    self._s3.upload_fileobj(io.BytesIO(sealed), self.bucket, in_key)
                script = self._script(argv, nonce, in_key if input is not None else None, out_key)
                inv = self._invoke(script, timeout)
                stdout = inv.get("StandardOutputContent", "")
                stderr = inv.get("StandardErrorContent", "")
                mark = f"trainctl-{nonce}"
                for line in stderr.splitlines():
                    if line == f"{mark}: {_NOT_OPENED}":
                        raise _StaleKey
                    if line.startswith(mark + ": "):
                        raise RemoteError(f"on {self.description}: {line[len(mark) + 2 :]}")
                if stdout == f"{mark}-spilled\n":
                    cleanup.append(out_key)
                    data = self._s3.get_object(Bucket=self.bucket, Key=out_key)["Body"].read()
                elif stdout.endswith(TRUNCATED_SUFFIX) and len(stdout.encode()) >= STDOUT_LIMIT:
                    raise RemoteError(f"SSM cut the output of a command on {self.description}")
                else:
                    data = stdout.encode()
            stderr = _AGENT_FAILURE.sub("", stderr)
            return CommandResult(int(inv["ResponseCode"]), data, stderr.encode())
        except BaseException:
            cleanup.append(out_key)
            raise
        finally:
            self._discard(sorted(set(cleanup)))

    def _script(self, argv: Sequence[str], nonce: str, in_key: str | None, out_key: str) -> str:
        """The shell text SSM runs: ``argv`` with stdin from the staged input (or
        /dev/null) and stdout kept aside, spilled to the bucket when too large."""
        mark = f"trainctl-{nonce}"
        cp = f"aws s3 cp --only-show-errors --region {shlex.quote(self.region)}"
        command = shlex.join(argv)
        lines = [
            'export HOME="${HOME:-/root}" PATH="$PATH:/usr/local/bin:/snap/bin"',
            f'fail() {{ echo "{mark}: $*" >&2; exit 1; }}',
            'cd "$HOME" || fail "no home directory $HOME"',
            't=$(mktemp -d) || fail "cannot make a temporary directory"',
            "trap 'rm -rf \"$t\"' EXIT",
        ]
        if in_key is not None:
            lines += [
                f'{cp} {shlex.quote(self._url(in_key))} "$t/sealed" >&2 '
                '|| fail "cannot fetch the command input from the staging bucket"',
                f"{shlex.quote(self.python)} -c {shlex.quote(sealbox_source())} open {INPUT_KEY} "
                f'<"$t/sealed" >"$t/in" || fail "{_NOT_OPENED}"',
                f'{command} <"$t/in" >"$t/out"',
            ]
        else:
            lines.append(f'{command} </dev/null >"$t/out"')
        lines += [
            "rc=$?",
            f'if [ "$(wc -c <"$t/out")" -ge {STDOUT_LIMIT} ]; then',
            f'  {cp} "$t/out" {shlex.quote(self._url(out_key))} >&2 '
            '|| fail "cannot upload the command output to the staging bucket"',
            f"  echo {mark}-spilled",
            'else cat "$t/out"; fi',
            "exit $rc",
        ]
        return "\n".join(lines) + "\n"

    def _invoke(self, script: str, timeout: float | None) -> dict[str, Any]:
        execution = max(1, math.ceil(timeout)) if timeout else DEFAULT_EXECUTION_TIMEOUT
        try:
            sent = self._ssm.send_command(
                InstanceIds=[self.instance_id],
                DocumentName="AWS-RunShellScript",
                Comment="trainctl",
                TimeoutSeconds=DELIVERY_TIMEOUT,
                Parameters={"commands": [script], "executionTimeout": [str(execution)]},
            )
        except client_error() as e:
            if error_code(e) == "InvalidInstanceId":
                self._online = False
                raise RemoteError(
                    f"{self.instance_id} is not reachable through SSM",
                    hint="the instance must be running with the trainctl instance profile",
                ) from None
            raise
        command_id = sent["Command"]["CommandId"]
        started = time.monotonic()
        deadline = started + execution + DELIVERY_TIMEOUT + 30
        delay = 0.05
        while True:
            time.sleep(delay)
            delay = min(delay * 2, self.poll_interval)
            try:
                inv = self._ssm.get_command_invocation(
                    CommandId=command_id, InstanceId=self.instance_id
                )
            except client_error() as e:
                if error_code(e) != "InvocationDoesNotExist":
                    raise
                if time.monotonic() - started > INVOCATION_GRACE:
                    raise RemoteError(
                        f"SSM lost command {command_id} on {self.instance_id}"
                    ) from None
                continue
            status = inv.get("Status")
            if status not in _RUNNING:
                break
            if time.monotonic() > deadline:
                self._ssm.cancel_command(CommandId=command_id, InstanceIds=[self.instance_id])
                raise RemoteError(
                    f"command on {self.description} did not finish within {execution} s"
                )
        code = int(inv.get("ResponseCode", -1))
        if status == "Success" or (status == "Failed" and code >= 0):
            return inv
        if status == "TimedOut":
            raise RemoteError(f"command on {self.description} timed out after {execution} s")
        details = inv.get("StatusDetails") or status
        raise RemoteError(f"SSM command {command_id} on {self.description} ended: {details}")

    def wait_online(self) -> None:
        """Block until the SSM agent on the machine reports Online, with progress."""
        if self._online:
            return
        started = time.monotonic()
        next_report = started
        next_state_check = started + 10
        ping = None
        while True:
            with aws_errors(f"ask SSM about {self.instance_id}"):
                found = self._ssm.describe_instance_information(
                    Filters=[{"Key": "InstanceIds", "Values": [self.instance_id]}]
                )["InstanceInformationList"]
            ping = found[0].get("PingStatus") if found else None
            if ping == "Online":
                self._online = True
                return
            now = time.monotonic()
            waited = now - started
            if waited >= self.online_timeout:
                raise RemoteError(
                    f"the SSM agent on {self.instance_id} did not come online within "
                    f"{self.online_timeout:.0f} s (last seen: {ping or 'never registered'})",
                    hint="the instance needs the trainctl instance profile and outbound "
                    "HTTPS to SSM; check `trainctl status`, or wait and retry",
                )
            if self.instance_state and now >= next_state_check:
                next_state_check = now + 10
                state = self.instance_state()
                if state in _STOPPED_STATES or state is None:
                    raise RemoteError(f"{self.instance_id} is {state or 'gone'}")
            if now >= next_report:
                next_report = now + 10
                self.progress(
                    f"waiting for the SSM agent on {self.instance_id} "
                    f"({ping or 'not registered yet'}, {waited:.0f} s)"
                )
            time.sleep(min(self.poll_interval * 2, max(0.0, self.online_timeout - waited)))

    # --- files ---------------------------------------------------------------------

    def put_tree(
        self,
        src: Path,
        dest: str,
        *,
        delete: bool = False,
        protect: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> SyncResult:
        previous = self.manifest.load(dest)
        snap = treesync.scan(src, previous)
        send = treesync.changed(snap, previous)
        result = SyncResult(total_bytes=snap.total_bytes)
        began = time.monotonic()
        for _ in range(2):
            data = treesync.bundle(src, snap, send, delete=delete, protect=list(protect))
            r = self.run([self.python, "-c", treesync.apply_script(), dest], input=data)
            if not r.ok:
                raise OperationFailed(
                    f"sync of {src} to {self.description} failed: "
                    f"{r.error_text() or f'exit {r.returncode}'}"
                )
            result.files_sent += sum("link" not in snap.files[rel] for rel in send)
            result.bytes_sent += len(data)
            send = json.loads(r.stdout)["stale"]
            if not send:
                self.manifest.save(dest, snap)
                if progress:
                    progress(
                        TransferEvent(
                            "sync",
                            result.bytes_sent,
                            files=result.files_sent,
                            seconds=time.monotonic() - began,
                            finished=True,
                        )
                    )
                return result
            delete = False  # done in the first round
        raise OperationFailed(f"sync of {src} to {self.description}: files keep changing there")

    def get(self, src: str, dest: Path, *, progress: Progress | None = None) -> Path:
        prefix = self._key("get", secrets.token_hex(8)) + "/"
        try:
            r = self.run(["sh", "-c", _GET_SCRIPT, "sh", src, self._url(prefix), self.region])
            kind = r.text().strip()
            if kind == "missing":
                raise NotFound(f"{src} does not exist on {self.description}")
            if not r.ok or kind not in ("dir", "file"):
                raise RemoteError(
                    f"cannot upload {src} from {self.description}: "
                    f"{r.error_text() or f'exit {r.returncode}'}"
                )
            if kind == "dir":
                target = dest
                target.mkdir(parents=True, exist_ok=True)
            else:
                target = dest / PurePosixPath(src).name if dest.is_dir() else dest
                target.parent.mkdir(parents=True, exist_ok=True)
            self._download(prefix, target, single=kind == "file", progress=progress)
            return target
        finally:
            self._discard([], prefix)

    def _download(
        self, prefix: str, target: Path, *, single: bool, progress: Progress | None
    ) -> None:
        """Fetch every object under ``prefix``, several at once: large ones with boto3's
        managed transfer (multipart, parallel ranges), small ones in one GET each (the
        listing already gave their size, so no HEAD is needed)."""
        from boto3.s3.transfer import TransferConfig

        began = time.monotonic()
        objects = self._list(prefix)
        total = sum(o["Size"] for o in objects)
        if progress:
            progress(f"downloading {len(objects)} files, {total} bytes")
        config = TransferConfig(
            multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=8
        )
        lock = threading.Lock()
        done = [0]

        def fetch(obj: dict[str, Any]) -> None:
            rel = obj["Key"][len(prefix) :]
            if single:
                path = target
            else:
                parts = rel.split("/")
                if ".." in parts or not rel or rel.startswith("/"):
                    raise RemoteError(f"refusing to write {rel!r} outside {target}")
                path = target.joinpath(*parts)
                path.parent.mkdir(parents=True, exist_ok=True)
            # into a temporary name, renamed once complete: a cut download never
            # leaves a truncated file under the final name nor destroys the one there
            tmp = path.with_name(f".{path.name}.trainctl-part-{secrets.token_hex(4)}")
            try:
                if obj["Size"] >= config.multipart_threshold:
                    self._s3.download_file(self.bucket, obj["Key"], str(tmp), Config=config)
                else:
                    body = self._s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"]
                    with tmp.open("wb") as f:
                        for block in body.iter_chunks(1 << 20):
                            f.write(block)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            with lock:
                done[0] += obj["Size"]
                if progress:
                    progress(TransferEvent("download", done[0], total))

        with (
            aws_errors(f"download from the staging bucket {self.bucket}"),
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            for future in [pool.submit(fetch, o) for o in objects]:
                future.result()
        if progress:
            seconds = time.monotonic() - began
            progress(
                TransferEvent("download", total, files=len(objects), seconds=seconds, finished=True)
            )

    # --- staging bucket ------------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}/{kind}/{name}"

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [o for page in pages for o in page.get("Contents", [])]

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _delete_prefix(self, prefix: str) -> None:
        self._delete_keys([o["Key"] for o in self._list(prefix)])

    def _discard(self, keys: list[str], prefix: str | None = None) -> None:
        """Delete staging objects after use; a failure is reported, never raised (the
        bucket's lifecycle rule removes what is left within a day)."""
        try:
            if prefix is not None:
                keys = keys + [o["Key"] for o in self._list(prefix)]
            if keys:
                self._delete_keys(keys)
        except sdk_errors() as e:
            self.progress(f"could not delete staging objects in {self.bucket}: {e}")

    def forget(self) -> None:
        """Drop what this machine left: staged objects and the local sync manifest.
        What its guard saved for ``--store default`` (``setup.STORE_PART``) stays.

        The manifest goes even when the bucket cannot be cleaned, which raises a
        trainctl error (the bucket's lifecycle rule removes what is left)."""
        kept = f"{self.prefix}/{STORE_PART}/"
        try:
            with aws_errors(f"clean up {self.instance_id}'s objects in {self.bucket}"):
                listed = self._list(f"{self.prefix}/")
                self._delete_keys([o["Key"] for o in listed if not o["Key"].startswith(kept)])
        finally:
            self.manifest.forget()
            self._key_file.unlink(missing_ok=True)

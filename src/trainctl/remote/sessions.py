"""Sessions on a machine: a shell, or one command, the way `trainctl ssh` opens them.

Every transport runs the same script on the machine (``session_command``): it
changes to the job's work directory (``<runtime root>/work``), sources
``<runtime root>/job.env`` when the job runtime wrote one, and then runs the
command, or a login shell when there is none. A Remote turns that into the local
program that carries it there (``Remote.session``), and ``run_session`` runs it:
``exec`` when the program passes the command's exit code through by itself (ssh),
else with its output filtered for the line the script prints with the exit code.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import RemoteError

#: ``sh -c`` script: $1 the runtime root (relative: to the home directory), $2 the
#: exit marker ('' for none), then the command (none: a login shell)
_SCRIPT = """\
cd "${HOME:-/}" 2>/dev/null
mkdir -p -- "$1/work" && cd -- "$1" && root=$(pwd -P) && cd work || exit 1
mark=$2
shift 2
if [ -f "$root/job.env" ]; then . "$root/job.env"; fi
if [ $# -eq 0 ]; then exec "${SHELL:-/bin/sh}" -l; fi
if [ -z "$mark" ]; then exec "$@"; fi
"$@"
rc=$?
printf '%s%d\\n' "$mark" "$rc"
exit "$rc"
"""


def session_command(
    runtime_root: str, argv: Sequence[str] | None, *, exit_marker: str | None = None
) -> list[str]:
    """The argv that runs ``argv`` (a login shell when None or empty) on the machine
    in the work directory with the job's environment file sourced; with
    ``exit_marker``, the command's exit code is printed after it as
    ``<marker><code>`` on a line of its own."""
    return ["sh", "-c", _SCRIPT, "trainctl-session", runtime_root, exit_marker or "", *(argv or [])]


def new_exit_marker() -> str:
    return f"trainctl-exit-{secrets.token_hex(8)}:"


@dataclass
class Session:
    """A local program that opens a session on a machine.

    ``env`` replaces this process's environment when set (it may hold credentials:
    it never goes to a command line or a log). ``exit_marker`` is set when the
    program does not pass the command's exit code through: the session script
    prints it after that marker instead."""

    argv: list[str]
    env: dict[str, str] | None = None
    exit_marker: str | None = None


def run_session(session: Session) -> int:
    """Run ``session`` with this terminal; returns the command's exit code (without
    an exit marker this process becomes the program and never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    env = session.env if session.env is not None else dict(os.environ)
    if session.exit_marker is None:
        os.execve(session.argv[0], session.argv, env)
    return _filtered(session.argv, env, session.exit_marker.encode())


_CODE = re.compile(rb"(\d+)\r?\n")


def _held(data: bytes, mark: bytes) -> int:
    """How many bytes at the end of ``data`` could be the start of ``mark``."""
    for n in range(min(len(mark) - 1, len(data)), 0, -1):
        if data.endswith(mark[:n]):
            return n
    return 0


def _filtered(argv: list[str], env: dict[str, str], mark: bytes) -> int:
    """Run ``argv`` with its stdout copied to ours as it comes, minus the exit marker's
    line, whose code is returned."""
    out = sys.stdout.buffer
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    pending = b""
    code: int | None = None
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            pending += chunk
            if code is None and (i := pending.find(mark)) >= 0:
                found = _CODE.match(pending, i + len(mark))
                if found is None:
                    out.write(pending[:i])
                    pending = pending[i:]
                    out.flush()
                    continue
                code = int(found.group(1))
                out.write(pending[:i])
                pending = pending[found.end() :]
            keep = 0 if code is not None else _held(pending, mark)
            out.write(pending[: len(pending) - keep])
            out.flush()
            pending = pending[len(pending) - keep :]
        out.write(pending)
        out.flush()
        returned = proc.wait()
    finally:
        proc.stdout.close()
        if proc.poll() is None:  # interrupted: the program ends with us
            proc.terminate()
            proc.wait()
    if code is not None:
        return code
    if returned != 0:
        return returned
    raise RemoteError("the session ended before its command did (its exit code is unknown)")

"""The exit marker of a session whose program does not pass exit codes through."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from trainctl.errors import RemoteError
from trainctl.remote.sessions import Session, run_session
pieces = sys.argv[1:]
program = "import sys, time\\n" + "".join(
    f"sys.stdout.write({p!r}); sys.stdout.flush(); time.sleep(0.05)\\n" for p in pieces
)
try:
    code = run_session(Session([sys.executable, "-c", program], exit_marker="tc-exit-01:"))
except RemoteError as e:
    print(e, file=sys.stderr)
    code = 99
sys.exit(code)
"""


def session(*pieces: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, *pieces], capture_output=True, text=True)


def test_the_marker_is_found_across_reads_and_taken_out():
    p = session("out", "put tc", "-ex", "it-01:4", "2\r\n", "after tc-\n")
    assert (p.returncode, p.stdout) == (42, "output after tc-\n"), p.stderr


def test_without_the_marker_the_exit_code_is_unknown():
    p = session("out tc-exit-0", "\n")
    assert (p.returncode, p.stdout) == (99, "out tc-exit-0\n")
    assert "exit code is unknown" in p.stderr

"""Code sync and file copies with rsync, shared by every rsync-based Remote.

Ignore rules: ``.gitignore`` and ``.trainctlignore`` files in any directory of the
tree (rsync's per-directory merge, exclude-only), and the ``.git`` directory.
rsync does not support gitignore's ``!`` re-include lines; those lines are ignored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from .errors import OperationFailed
from .remote.base import Progress, SyncResult

IGNORE_FILES = (".gitignore", ".trainctlignore")


def filter_args(protect: Sequence[str] = ()) -> list[str]:
    args = ["--exclude=/.git/"]
    args += [f"--filter=:- {name}" for name in IGNORE_FILES]
    args += [f"--filter=P /{p.strip('/')}/" for p in protect]
    return args


def require_rsync() -> str:
    path = shutil.which("rsync")
    if not path:
        raise OperationFailed(
            "rsync is not installed on this machine", hint="install it, e.g. apt-get install rsync"
        )
    return path


def tree_args(
    src: str, dest: str, *, delete: bool = False, protect: Sequence[str] = ()
) -> list[str]:
    """rsync arguments that make ``dest`` hold the tree at ``src`` (a directory)."""
    args = ["-rlptz", "--stats", "--out-format=%n"]
    if delete:
        args.append("--delete")
    return args + filter_args(protect) + [src.rstrip("/") + "/", dest.rstrip("/") + "/"]


def copy_args(src: str, dest: str) -> list[str]:
    """rsync arguments that copy ``src`` (a file, or a directory's contents when it ends
    with ``/``) to ``dest``, keeping partial files so that a new try resumes."""
    return ["-rlptz", "--partial", "--stats", "--out-format=%n", src, dest]


_STAT_PATTERNS = {
    "files_sent": re.compile(r"Number of regular files transferred:\s*([\d,]+)"),
    "bytes_sent": re.compile(r"Total bytes sent:\s*([\d,]+)"),
    "total_bytes": re.compile(r"Total file size:\s*([\d,]+)"),
}


def parse_stats(output: str) -> SyncResult:
    values = {}
    for key, pattern in _STAT_PATTERNS.items():
        m = pattern.search(output)
        values[key] = int(m.group(1).replace(",", "")) if m else 0
    return SyncResult(**values)


def run_rsync(
    argv: Sequence[str], *, progress: Progress | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run rsync, passing each transferred file name to ``progress``.

    Returns (returncode, stdout, stderr)."""
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
    )
    out_lines: list[str] = []
    assert proc.stdout is not None
    in_stats = False
    for line in proc.stdout:
        out_lines.append(line)
        stripped = line.rstrip("\n")
        if stripped.startswith("Number of files:"):
            in_stats = True
        if progress and stripped and not in_stats and not stripped.endswith("/"):
            progress(stripped)
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    return proc.returncode, "".join(out_lines), stderr

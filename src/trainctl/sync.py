"""Code sync and file copies with rsync, shared by every rsync-based Remote.

Ignore rules: ``.gitignore`` and ``.trainctlignore`` files in any directory of the
tree (rsync's per-directory merge, exclude-only), and the ``.git`` directory.
rsync does not support gitignore's ``!`` re-include lines; those lines are ignored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
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


def list_tree(src: str) -> list[str]:
    """Paths under ``src`` that a sync would send, relative, under the same ignore rules
    as ``tree_args`` (rsync itself decides). Directories end with ``/``; symlinks are
    listed, not followed. For transports that move files without rsync."""
    with tempfile.TemporaryDirectory(prefix="trainctl-list-") as empty:
        argv = [require_rsync(), "-rl", "--dry-run", "-8", "--out-format=%n", *filter_args()]
        proc = subprocess.run(
            [*argv, src.rstrip("/") + "/", empty + "/"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise OperationFailed(f"cannot list {src}: {err or f'rsync exit {proc.returncode}'}")
    paths = []
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        name = _unescape(line)
        if name and name != "./":
            paths.append(name)
    return paths


def _unescape(name: str) -> str:
    """Undo rsync's ``\\#ooo`` escapes of unprintable characters (e.g. newlines)."""
    return re.sub(r"\\#([0-7]{3})", lambda m: chr(int(m.group(1), 8)), name)


#: where rsync keeps a cut download's partial file, in the file's own directory
PARTIAL_DIR = ".trainctl-partial"


def copy_args(src: str, dest: str) -> list[str]:
    """rsync arguments that copy ``src`` (a file, or a directory's contents when it ends
    with ``/``) to ``dest``. A file is written under a temporary name and renamed into
    place once complete; a cut transfer leaves its partial data in ``PARTIAL_DIR`` (never
    under the final name, so a complete copy already there survives) for the next try
    to resume from."""
    return ["-rlptz", f"--partial-dir={PARTIAL_DIR}", "--stats", "--out-format=%n", src, dest]


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

    Returns (returncode, stdout, stderr). stderr goes to a file while stdout is
    read, so a long stream of warnings cannot fill a pipe and stall rsync."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=errors,
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
        proc.wait()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    return proc.returncode, "".join(out_lines), stderr

"""Code sync and file copies with rsync, shared by every rsync-based Remote.

Ignore rules: ``.gitignore`` and ``.trainctlignore`` files in any directory of the
tree (rsync's per-directory merge, exclude-only), the ``.git`` directory, trainctl's
own output directories (``trainctl-runs/``, and any directory holding the
``.trainctlignore`` that ``run`` writes into its output directory), and well-known
secret files, wherever they are in the tree (``SECRET_PATTERNS``): they are never
sent, whatever the ignore files say. rsync does not support gitignore's ``!``
re-include lines; those lines are ignored.

Every transport uses these rules: rsync through ``filter_args`` and the SSM tree
sync through ``list_tree``.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence

from .errors import OperationFailed
from .remote.base import Progress, SyncResult, TransferEvent

IGNORE_FILES = (".gitignore", ".trainctlignore")

#: default output directory of `run`, relative to where it is started
OUTPUT_DIR = "trainctl-runs"

#: rsync patterns of credentials never synced (a trailing / means a directory; a
#: pattern without / matches a name at any depth). ``.env`` files hold secrets by
#: convention: `--env-file .env` gives their values to the job instead.
SECRET_PATTERNS = (
    ".ssh/",
    ".aws/",
    ".runpod/",
    ".lyceum/",
    ".gnupg/",
    ".trainctl/",
    ".azure/",
    ".kube/",
    ".config/gcloud/",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    ".env",
    ".env.*",
)


#: what a cut download leaves beside the file (``PARTIAL_DIR`` over rsync, a
#: ``.NAME.trainctl-part-*`` file from a local or SSM copy that was killed): partial
#: data of trainctl's own, never sent back to a machine
DOWNLOAD_LEFTOVERS = (".trainctl-partial/", ".*.trainctl-part-*")


def filter_args(protect: Sequence[str] = ()) -> list[str]:
    args = ["--exclude=/.git/", f"--exclude={OUTPUT_DIR}/"]
    args += [f"--exclude={pattern}" for pattern in DOWNLOAD_LEFTOVERS]
    args += [f"--exclude={pattern}" for pattern in SECRET_PATTERNS]
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


@functools.cache
def progress_args() -> tuple[str, ...]:
    """``--info=progress2`` where this rsync has it (3.1 and later; macOS's rsync
    2.6.9 and openrsync do not): transfers then report bytes as they go."""
    proc = subprocess.run(
        [require_rsync(), "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    m = re.search(r"rsync\s+version\s+v?(\d+)\.(\d+)", proc.stdout)
    return ("--info=progress2",) if m and (int(m[1]), int(m[2])) >= (3, 1) else ()


def tree_args(
    src: str, dest: str, *, delete: bool = False, protect: Sequence[str] = ()
) -> list[str]:
    """rsync arguments that make ``dest`` hold the tree at ``src`` (a directory)."""
    args = ["-rlptz", "--stats", "--out-format=%n", *progress_args()]
    if delete:
        args.append("--delete")
    return args + filter_args(protect) + [src.rstrip("/") + "/", dest.rstrip("/") + "/"]


def list_tree(src: str) -> list[str]:
    """Paths under ``src`` that a sync would send, relative, under the same ignore rules
    as ``tree_args`` (rsync itself decides). Directories end with ``/``; symlinks are
    listed, not followed. For transports that move files without rsync."""
    paths = []
    out = _dry_run(src, "-8", "--out-format=%n")
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        name = _unescape(line)
        if name and name != "./":
            paths.append(name)
    return paths


def measure_tree(src: str) -> tuple[int, int]:
    """(files, bytes) a sync of ``src`` would send to an empty machine, under the same
    rules as ``tree_args``: measured before a sync to warn about a huge one."""
    stats = parse_stats(_dry_run(src, "--stats").decode("utf-8", "replace"))
    return stats.files_sent, stats.total_bytes


def _dry_run(src: str, *options: str) -> bytes:
    """What rsync, under the sync rules, would send of ``src`` to an empty directory
    (its stdout with ``options``): nothing is copied."""
    with tempfile.TemporaryDirectory(prefix="trainctl-dry-") as empty:
        argv = [require_rsync(), "-rl", "--dry-run", *options, *filter_args()]
        proc = subprocess.run(
            [*argv, src.rstrip("/") + "/", empty + "/"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise OperationFailed(f"cannot list {src}: {err or f'rsync exit {proc.returncode}'}")
    return proc.stdout


def mark_output_dir(path: str) -> None:
    """Make ``path`` (an output directory) one that no sync sends: a ``.trainctlignore``
    in it that excludes everything, itself included."""
    import os

    os.makedirs(path, exist_ok=True)
    marker = os.path.join(path, ".trainctlignore")
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("# trainctl output directory: never synced to a machine\n*\n")


def _unescape(name: str) -> str:
    """Undo rsync's ``\\#ooo`` escapes of unprintable characters (e.g. newlines)."""
    return re.sub(r"\\#([0-7]{3})", lambda m: chr(int(m.group(1), 8)), name)


#: where rsync keeps a cut download's partial file, in the file's own directory
PARTIAL_DIR = DOWNLOAD_LEFTOVERS[0].rstrip("/")


#: suffixes of files whose bytes do not compress (checkpoints, weights, arrays,
#: archives, media): downloads of them skip rsync's compression and delta algorithm
INCOMPRESSIBLE_SUFFIXES = frozenset({
    ".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".npz", ".npy", ".h5", ".hdf5",
    ".onnx", ".gguf", ".tflite", ".msgpack", ".parquet", ".arrow", ".tfrecord",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".lz4", ".7z",
    ".jpg", ".jpeg", ".png", ".webp", ".mp4",
})  # fmt: skip


def incompressible(name: str) -> bool:
    """Whether ``name`` is a file that compressing in transit would only slow down."""
    suffix = name.rstrip("/").rpartition("/")[2].rpartition(".")
    return bool(suffix[0]) and f".{suffix[2].lower()}" in INCOMPRESSIBLE_SUFFIXES


def copy_args(src: str, dest: str, *, compress: bool = True, whole_file: bool = False) -> list[str]:
    """rsync arguments that copy ``src`` (a file, or a directory's contents when it ends
    with ``/``) to ``dest``. A file is written under a temporary name and renamed into
    place once complete; a cut transfer leaves its partial data in ``PARTIAL_DIR`` (never
    under the final name, so a complete copy already there survives) for the next try
    to resume from.

    ``compress=False`` leaves out ``-z``: on incompressible data (a checkpoint) it costs
    CPU on both ends for nothing, and an rsync older than 3.2 falls back to zlib, many
    times slower than the link. ``whole_file`` sends the file without the delta
    algorithm, whose search for matching blocks in a rewritten checkpoint finds none
    and costs several times the copy itself; a resume from ``PARTIAL_DIR`` needs the
    delta algorithm (the partial data is its basis), so callers leave it off then.
    ``--skip-compress`` is no substitute: rsync 3.2 still compresses those suffixes on
    a pull (measured with zstd and zlib)."""
    flags = "-rlpt" + ("z" if compress else "") + ("W" if whole_file else "")
    return [
        flags,
        f"--partial-dir={PARTIAL_DIR}",
        "--stats",
        "--out-format=%n",
        *progress_args(),
        src,
        dest,
    ]


_STAT_PATTERNS = {
    "files_sent": re.compile(r"Number of regular files transferred:\s*([\d,]+)"),
    "bytes_sent": re.compile(r"Total bytes sent:\s*([\d,]+)"),
    "total_bytes": re.compile(r"Total file size:\s*([\d,]+)"),
    "transferred_bytes": re.compile(r"Total transferred file size:\s*([\d,]+)"),
}


def parse_stats(output: str) -> SyncResult:
    values = {}
    for key, pattern in _STAT_PATTERNS.items():
        m = pattern.search(output)
        values[key] = int(m.group(1).replace(",", "")) if m else 0
    return SyncResult(**values)


#: a line of rsync's --info=progress2: bytes so far, percent of the whole transfer
_PROGRESS2 = re.compile(r"^\s*([\d,]+)\s+(\d+)%\s+\S+/s\s+\d+:\d+:\d+")
#: least seconds between two progress events of one transfer
EVENT_INTERVAL = 0.2


def run_rsync(
    argv: Sequence[str],
    *,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
    what: str = "transfer",
) -> tuple[int, str, str]:
    """Run rsync, reporting to ``progress`` as ``TransferEvent``s named ``what``: the
    bytes so far (from ``--info=progress2``, at most every ``EVENT_INTERVAL``), then
    one summary line (files, bytes, time). File names are not reported one by one.

    Returns (returncode, stdout, stderr). stderr goes to a file while stdout is
    read, so a long stream of warnings cannot fill a pipe and stall rsync."""
    began = time.monotonic()
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
        shown = 0.0
        for line in proc.stdout:  # text mode: rsync's \r progress updates are lines too
            m = _PROGRESS2.match(line)
            if not m:
                out_lines.append(line)
                continue
            now = time.monotonic()
            if progress and now - shown >= EVENT_INTERVAL:
                shown = now
                done, percent = int(m.group(1).replace(",", "")), int(m.group(2))
                total = done * 100 // percent if percent else None
                progress(TransferEvent(what, done, total))
        proc.wait()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if progress and proc.returncode == 0:
        stats = parse_stats("".join(out_lines))
        progress(
            TransferEvent(
                what,
                stats.transferred_bytes,
                files=stats.files_sent,
                seconds=time.monotonic() - began,
                finished=True,
            )
        )
    return proc.returncode, "".join(out_lines), stderr

"""Incremental tree sync for transports that move files without rsync (SSM + S3).

The tree is listed under the same ignore rules as every other sync (rsync decides,
see ``trainctl.sync.list_tree``). A manifest kept on this machine records, per
destination, what was last sent: each file's content hash, and its size and
modification time when sent. Only files whose content changed since are bundled,
with a header describing the whole tree; ``treeapply.py`` applies the bundle on the
machine and names any file that is not as the manifest says (changed or removed
there), which is then sent again. A file whose modification time changed but whose
content did not is not sent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .. import sync
from ..home import write_private

HEADER = ".trainctl-sync.json"


def apply_script() -> str:
    """Source of the machine side, run as ``python3 -c SOURCE DEST``."""
    return resources.files("trainctl.remote").joinpath("treeapply.py").read_text()


@dataclass
class Snapshot:
    """The tree as it is here: ``files`` maps a relative path to its entry."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(e.get("size", 0) for e in self.files.values())


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan(src: Path, previous: dict[str, dict[str, Any]]) -> Snapshot:
    """List and hash ``src``; files whose size and mtime match ``previous`` keep their
    recorded hash and sent-mtime without being read again."""
    snap = Snapshot()
    for rel in sync.list_tree(str(src)):
        if rel.endswith("/"):
            snap.dirs.append(rel.rstrip("/"))
            continue
        path = src / rel
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            snap.files[rel] = {"link": os.readlink(path)}
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        old = previous.get(rel, {})
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "mtime": int(st.st_mtime)}
        if old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
            entry["sha256"] = old["sha256"]
        else:
            entry["sha256"] = _digest(path)
        if old.get("sha256") == entry["sha256"] and "sent_mtime" in old:
            entry["sent_mtime"] = old["sent_mtime"]
        snap.files[rel] = entry
    return snap


def changed(snap: Snapshot, previous: dict[str, dict[str, Any]]) -> list[str]:
    """Paths whose content (or link target) differs from what was last sent."""
    out = []
    for rel, entry in snap.files.items():
        old = previous.get(rel, {})
        same = (
            old.get("link") == entry["link"]
            if "link" in entry
            else old.get("sha256") == entry["sha256"] and "sent_mtime" in entry
        )
        if not same:
            out.append(rel)
    return sorted(out)


def bundle(
    src: Path,
    snap: Snapshot,
    send: list[str],
    *,
    delete: bool,
    protect: list[str],
) -> bytes:
    """A gzip'd tar: the header (the whole tree), then the files in ``send``.

    Files sent now get their current mtime as ``sent_mtime`` in ``snap``."""
    for rel in send:
        if "link" not in snap.files[rel]:
            snap.files[rel]["sent_mtime"] = snap.files[rel]["mtime"]
    files: dict[str, dict[str, Any]] = {}
    for rel, entry in snap.files.items():
        if "link" in entry:
            files[rel] = {"link": entry["link"]}
        else:
            files[rel] = {"size": entry["size"], "mtime": entry["sent_mtime"]}
    header = json.dumps(
        {"dirs": snap.dirs, "files": files, "delete": delete, "protect": protect}
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        info = tarfile.TarInfo(HEADER)
        info.size = len(header)
        tar.addfile(info, io.BytesIO(header))
        for rel in send:
            entry = snap.files[rel]
            info = tarfile.TarInfo(rel)
            if "link" in entry:
                info.type = tarfile.SYMTYPE
                info.linkname = entry["link"]
                tar.addfile(info)
                continue
            path = src / rel
            info.size = entry["size"]
            info.mtime = entry["sent_mtime"]
            info.mode = stat.S_IMODE(os.lstat(path).st_mode)
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


class Manifest:
    """What was last sent to each destination on one machine (a JSON file here)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _all(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, dest: str) -> dict[str, dict[str, Any]]:
        return self._all().get(dest, {})

    def save(self, dest: str, snap: Snapshot) -> None:
        data = self._all()
        data[dest] = {rel: e for rel, e in snap.files.items() if "link" in e or "sent_mtime" in e}
        write_private(self.path, json.dumps(data))

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

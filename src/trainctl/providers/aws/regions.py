"""The regions trainctl has launched in, kept under the trainctl home so that
listing looks at every region that may hold a trainctl machine.

A region is remembered before the launch that uses it, so a machine never runs in
a region the list does not look at.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ...home import home


def _path() -> Path:
    return home() / "aws" / "regions.json"


def remembered() -> list[str]:
    """Every region remembered so far (sorted; empty when none)."""
    try:
        data = json.loads(_path().read_text())
    except (OSError, ValueError):
        return []
    return sorted(r for r in data if isinstance(r, str)) if isinstance(data, list) else []


def remember(region: str) -> None:
    """Add ``region`` (under a lock, written whole through a temporary file, so two
    launches at once neither lose a region nor leave half a file)."""
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (path.parent / "regions.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = remembered()
        if region in known:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted({*known, region})))
        os.replace(tmp, path)

"""What the benchmarks that drive the test fakes share: the tests' helper modules on
``sys.path``, a fresh trainctl home, and the environment setter ``aws_support``
expects (pytest's monkeypatch, here writing ``os.environ`` for good)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
for _path in (TESTS, *(TESTS / "providers" / p for p in ("aws", "runpod", "lyceum"))):
    sys.path.insert(0, str(_path))


def fresh_home() -> Path:
    """A new trainctl home and user home (under one temporary directory)."""
    home = Path(tempfile.mkdtemp(prefix="trainctl-bench-"))
    os.environ["TRAINCTL_HOME"] = str(home / "trainctl")
    (home / "user").mkdir()
    os.environ["HOME"] = str(home / "user")
    return home


class Env:
    """``monkeypatch``'s ``setenv``/``delenv``, for ``aws_support.set_up``."""

    def setenv(self, key: str, value: str) -> None:
        os.environ[key] = value

    def delenv(self, key: str, raising: bool = True) -> None:
        os.environ.pop(key, None)

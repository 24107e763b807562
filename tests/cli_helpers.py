"""Run the real entry point in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        return json.loads(self.err.strip().splitlines()[-1])["error"]


def trainctl(*args: str, cwd=None, input: str | None = None, timeout: float = 120) -> Result:
    p = subprocess.run(
        [sys.executable, "-m", "trainctl", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=input,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)

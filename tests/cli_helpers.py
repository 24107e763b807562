"""Run the real entry point in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
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


class Cli:
    """`trainctl ARGS` running in the background, both streams read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainctl", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for raw in stream:
            lines.append(raw.decode("utf-8", "replace"))

    def wait_for(self, lines: list[str], needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {needle!r}: {self.out} {self.err}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)  # the trainctl process this test started

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # the process this helper started
            self.proc.wait()
            raise AssertionError(f"still running after {timeout}s: {self.stderr}") from None
        for t in self._readers:
            t.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)

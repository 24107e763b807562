"""Printing: tables and progress for people, one JSON document for programs.

rich is imported only when a table is drawn. Colour follows rich's detection:
none when stdout is not a terminal or ``NO_COLOR`` is set.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click


class Output:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode

    def emit(self, document: Any) -> None:
        """The one JSON document of a --json run."""
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def info(self, message: str) -> None:
        """A line for people; in --json mode it goes to stderr."""
        click.echo(message, err=self.json_mode)

    def progress(self, message: str) -> None:
        """Progress of a long wait, always on stderr so stdout stays parseable."""
        click.echo(f"  {message}", err=True)

    def log_bytes(self, chunk: bytes) -> None:
        """Job output: stdout normally, stderr in --json mode."""
        stream = sys.stderr if self.json_mode else sys.stdout
        stream.buffer.write(chunk)
        stream.flush()

    def table(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
    ) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, header_style="bold", box=None, pad_edge=False)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        # piped output keeps one line per row, however wide
        width = None if sys.stdout.isatty() else 1000
        Console(soft_wrap=False, width=width).print(table)


def error_document(kind: str, message: str, exit_code: int, hint: str | None = None) -> str:
    err = {"type": kind, "message": message, "exit_code": exit_code}
    if hint:
        err["hint"] = hint
    return json.dumps({"error": err})


def ago(hours: float) -> str:
    minutes = int(hours * 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes // (24 * 60)}d"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}" if value >= 0.1 else f"${value:,.3f}"

"""Printing: tables and progress for people, one JSON document for programs.

rich is imported only when a table or a progress bar is drawn. Colour follows rich's
detection (none when stdout is not a terminal), and ``NO_COLOR`` turns off every
style, bold included. Tables fit the terminal's width (``COLUMNS`` when set);
piped, a row is one line however wide. Progress goes to stderr:
a transfer is a bar on a terminal, else a line every ``PLAIN_INTERVAL`` seconds, and
one summary line when it ends.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from ..remote.base import TransferEvent

#: seconds between two plain progress lines of one transfer when stderr is no terminal
PLAIN_INTERVAL = 5.0


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def _plain(plain: bool) -> dict[str, Any]:
    """rich Console arguments: no colour and no bold, underline or other style."""
    return {"color_system": None} if plain else {}


def table_width() -> int | None:
    """Columns a table may use on a terminal (``COLUMNS`` first, as the shell sets
    it), or None when piped: then one line per row, however wide."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def fit_columns(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    width: int | None,
    droppable: Sequence[str],
) -> list[int]:
    """Indexes of the columns to show: all, or without the ``droppable`` ones (the first
    named goes first) until the widest cells fit in ``width`` (two spaces apart)."""
    keep = list(range(len(columns)))

    def needed() -> int:
        widest = [max([len(str(columns[i]))] + [len(str(r[i])) for r in rows]) for i in keep]
        return sum(widest) + 2 * (len(keep) - 1)

    for name in droppable:
        if width is None or needed() <= width:
            break
        if name in columns:
            keep.remove(columns.index(name))
    return keep


class Output:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self._bar: Any = None  # rich Progress of the transfer under way, on a terminal
        self._task: Any = None
        self._plain_at = 0.0

    def emit(self, document: Any) -> None:
        """The one JSON document of a --json run."""
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def info(self, message: str) -> None:
        """A line for people; in --json mode it goes to stderr."""
        click.echo(message, err=self.json_mode)

    def progress(self, message: str) -> None:
        """Progress of a long wait, always on stderr so stdout stays parseable."""
        if isinstance(message, TransferEvent) and not message.finished:
            now = time.monotonic()
            if sys.stderr.isatty():
                self._draw(message)
            elif not self._plain_at:
                self._plain_at = now  # a short transfer shows only its summary
            elif now - self._plain_at >= PLAIN_INTERVAL:
                self._plain_at = now
                click.echo(f"  {message}", err=True)
            return
        self._end_bar()
        self._plain_at = 0.0
        click.echo(f"  {message}", err=True)

    def _draw(self, event: TransferEvent) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        if self._bar is None:
            console = Console(stderr=True, **_plain(no_color()))
            self._bar = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=console,
                transient=True,
            )
            self._bar.start()
            atexit.register(self._end_bar)  # an error mid-transfer still clears the bar
            self._task = self._bar.add_task(event.what, total=event.total)
        self._bar.update(self._task, completed=event.done, total=event.total)

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None

    def log_bytes(self, chunk: bytes) -> None:
        """Job output: stdout normally, stderr in --json mode."""
        stream = sys.stderr if self.json_mode else sys.stdout
        stream.buffer.write(chunk)
        stream.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        droppable: Sequence[str] = (),
    ) -> None:
        """Rows under ``columns``; where the width is short, the ``droppable`` columns
        go (the first named first) before the cells are folded."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        width = table_width()
        keep = fit_columns(columns, rows, width, droppable)
        plain = no_color()
        table = Table(title=title, header_style="" if plain else "bold", box=None, pad_edge=False)
        for i in keep:
            table.add_column(columns[i], overflow="fold")
        for row in rows:
            # Text: a cell is shown as it is, never read as rich markup
            table.add_row(*(Text("" if row[i] is None else str(row[i])) for i in keep))
        # piped output keeps one line per row, however wide; NO_COLOR: no styles at all
        console = Console(soft_wrap=False, width=width or 1000, highlight=False, **_plain(plain))
        console.print(table)


class Tail:
    """A sink that keeps only the last ``lines`` lines of what it is given."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.seen = 0  # bytes given, kept or not
        self._buf = bytearray()

    def __call__(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        self._buf += chunk
        if len(self._buf) > 1 << 20:
            self._buf = bytearray(self.text())

    def text(self) -> bytes:
        """The last lines (a last line without its newline counts as one)."""
        if self.lines <= 0:
            return b""
        parts = bytes(self._buf).split(b"\n")
        if parts and parts[-1] == b"":
            return b"\n".join(parts[-self.lines - 1 :])
        return b"\n".join(parts[-self.lines :])


def error_document(kind: str, message: str, exit_code: int, hint: str | None = None) -> str:
    err = {"type": kind, "message": message, "exit_code": exit_code, "hint": hint}
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

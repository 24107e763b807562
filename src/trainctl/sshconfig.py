"""trainctl's ssh_config include file: a ``Host`` entry per machine reached over SSH,
so that the user's own ``ssh NAME``, ``scp`` and editors (VS Code Remote-SSH) reach
it with trainctl's key and known_hosts.

The file lives in trainctl's home and is replaced whole (written beside it, then
renamed) each time; ``~/.ssh/config`` includes it with one ``Include`` line, which
must come before any ``Host`` line there (an ``Include`` after one belongs to that
host's block).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .home import home

HEADER = (
    "# Written by `trainctl ssh-config`; rewritten each time it runs, edits are lost.\n"
    "# Include it from ~/.ssh/config, before any Host line there:\n"
)


def path() -> Path:
    return home() / "ssh_config"


def include_line() -> str:
    return f'Include "{path()}"' if " " in str(path()) else f"Include {path()}"


def render(entries: dict[str, dict[str, str]]) -> str:
    """The file's text: one ``Host`` block per name, its options in order."""
    blocks = [HEADER + f"#   {include_line()}\n"]
    for name, options in entries.items():
        lines = [f"Host {name}"] + [f"    {key} {value}" for key, value in options.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write(entries: dict[str, dict[str, str]]) -> Path:
    """Replace the file with ``entries`` at once (mode 0600); returns its path."""
    target = path()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".ssh_config.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(render(entries))
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def included(user_config: Path | None = None) -> bool:
    """Whether the user's ssh config already has the ``Include`` line."""
    config = user_config or Path.home() / ".ssh" / "config"
    try:
        lines = config.read_text(errors="replace").splitlines()
    except OSError:
        return False
    wanted = include_line().split(None, 1)[1].strip('"')
    for line in lines:
        words = line.strip().split(None, 1)
        if (
            len(words) == 2
            and words[0].lower() == "include"
            and os.path.expanduser(words[1].strip('"')) == wanted
        ):
            return True
    return False

"""Where trainctl keeps its state and reads its configuration."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import BadInput, OperationFailed


def home() -> Path:
    """``TRAINCTL_HOME`` if set, else the platform's user data directory.

    It holds the state store, trainctl's SSH key and provider records, so it is
    private: created 0700, and an existing one that is trainctl's (the user's, with
    nothing in it but what trainctl keeps there) is tightened to 0700. A directory
    that holds other things (``TRAINCTL_HOME=~``) keeps its mode: trainctl's own
    files in it are private anyway."""
    env = os.environ.get("TRAINCTL_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("trainctl", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077 and _only_ours(path):
            path.chmod(0o700)
    except OSError as e:
        raise OperationFailed(
            f"cannot use {path} as trainctl's home: {e.strerror or type(e).__name__}",
            hint="point TRAINCTL_HOME at a directory you can write",
        ) from None
    return path


#: what trainctl keeps in its home
_OURS = frozenset({"aws", "cache", "catalog", "local", "runs", "ssh", "config.toml"})


def _only_ours(path: Path) -> bool:
    return all(p.name in _OURS or p.name.startswith("state.db") for p in path.iterdir())


def config_path() -> Path:
    """``$TRAINCTL_HOME/config.toml`` when the home is set, else the user config dir."""
    env = os.environ.get("TRAINCTL_HOME")
    if env:
        return Path(env).expanduser() / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir("trainctl", appauthor=False)) / "config.toml"


def load_config() -> dict[str, Any]:
    path = config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"config file {path} is not valid TOML: {e}") from None


def provider_config(name: str) -> dict[str, Any]:
    """The ``[providers.NAME]`` table of the config file, or an empty one."""
    table = load_config().get("providers", {}).get(name, {})
    return table if isinstance(table, dict) else {}


def write_private(path: Path, text: str) -> None:
    """Write a file that may hold secrets: created with mode 0600, never wider."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)

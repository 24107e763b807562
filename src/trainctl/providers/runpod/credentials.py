"""Where RunPod's API key comes from: ``RUNPOD_API_KEY``, else RunPod's own config file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from ...errors import BadInput

#: runpodctl hides its ``config`` command ("deprecated: use 'runpodctl doctor'");
#: ``doctor`` asks for the key and saves it in ~/.runpod/config.toml
CREDENTIALS_HINT = (
    "set RUNPOD_API_KEY (create a key under API Keys at "
    "https://www.runpod.io/console/user/settings), or run `runpodctl doctor` or "
    "`runpod config`, which ask for one and save it in ~/.runpod/config.toml"
)


def config_file() -> Path:
    """Where RunPod's own tools keep the key."""
    return Path.home() / ".runpod" / "config.toml"


def read_config_key(path: Path, profile: str = "default") -> str | None:
    """The API key in a RunPod config file, or None.

    RunPod's command-line tool (runpodctl, through viper, which lower-cases keys)
    writes a top-level ``apikey = "..."`` (``apiKey`` in older files); RunPod's
    Python library writes ``api_key = "..."`` under a profile table, ``[default]``
    unless another profile was chosen. Raises ``OSError`` / ``TOMLDecodeError``."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    section = data.get(profile)
    if profile != "default" and isinstance(section, dict):
        return _text(section.get("api_key"))
    for k, v in data.items():
        if k.lower() == "apikey" and _text(v):
            return _text(v)
    return _text(section.get("api_key")) if isinstance(section, dict) else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def find_api_key(profile: str = "default") -> tuple[str, str] | None:
    """``(key, where it came from)``, or None when there is none."""
    env = _text(os.environ.get("RUNPOD_API_KEY"))
    if env:
        return env, "RUNPOD_API_KEY"
    path = config_file()
    try:
        key = read_config_key(path, profile)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{path} could not be read: {e}", hint=CREDENTIALS_HINT) from None
    return (key, str(path)) if key else None

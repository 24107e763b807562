"""Task files: `trainctl run -f task.yaml` reads the same settings as the flags.

    name: exp1
    provider: local
    gpu: A100:1
    workdir: .            # relative to the task file
    env: {LR: "0.01"}
    command: [python, train.py, --epochs, "5"]   # or a string, run with sh -c
    outputs: [checkpoints]

A flag given on the command line wins over the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..errors import BadInput

#: task-file key -> (parameter of `run`, accepted Python types)
FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "name": ("name", (str,)),
    "provider": ("provider", (str,)),
    "gpu": ("gpu", (str,)),
    "instance_type": ("instance_type", (str,)),
    "spot": ("spot", (bool,)),
    "spot_fallback": ("spot_fallback", (bool,)),
    "max_price": ("max_price", (int, float)),
    "image": ("image", (str,)),
    "disk": ("disk_gb", (int,)),
    "region": ("region", (str,)),
    "tags": ("tags", (dict,)),
    "host": ("host", (str,)),
    "key": ("key", (str,)),
    "price_per_hour": ("price_per_hour", (int, float)),
    "cloud": ("cloud", (str,)),
    "volume_gb": ("volume_gb", (int,)),
    "workdir": ("workdir", (str,)),
    "env": ("envs", (dict,)),
    "checkpoint_dir": ("checkpoint_dir", (str,)),
    "delete": ("delete", (bool,)),
    "outputs": ("outputs", (list, str)),
    "output_dir": ("output_dir", (str,)),
    "keep": ("keep", (bool,)),
    "command": ("command", (list, str)),
}


def load(path: str) -> dict[str, Any]:
    """The file's settings as `run` parameter values."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BadInput(f"cannot read task file {path}: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise BadInput(f"task file {path} must be a mapping of settings, e.g. command: [...]")
    values: dict[str, Any] = {}
    base = Path(path).resolve().parent
    for key, value in data.items():
        if key not in FIELDS:
            raise BadInput(f"task file {path}: unknown key {key!r} (known: {', '.join(FIELDS)})")
        param, types = FIELDS[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise BadInput(f"task file {path}: {key} must be a {wanted}")
        values[param] = _convert(key, value, base)
    return values


def _convert(key: str, value: Any, base: Path) -> Any:
    if key in ("env", "tags"):
        return tuple(f"{k}={v}" for k, v in value.items())
    if key == "outputs":
        return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if key == "command":
        return ("sh", "-c", value) if isinstance(value, str) else tuple(str(v) for v in value)
    if key in ("workdir", "output_dir"):
        return str(base / value)
    return value


def merge(ctx: click.Context, params: dict[str, Any], path: str) -> dict[str, Any]:
    """``params`` with the file's values where no flag was given."""
    merged = dict(params)
    for param, value in load(path).items():
        given = (
            bool(params.get("command"))
            if param == "command"
            else ctx.get_parameter_source(param) not in (ParameterSource.DEFAULT, None)
        )
        if not given:
            merged[param] = value
    return merged

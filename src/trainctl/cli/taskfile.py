"""Task files: `trainctl run -f task.yaml` reads the same settings as the flags.

    name: exp1
    provider: local
    gpu: A100:1
    workdir: .            # relative to the task file
    env: {LR: "0.01"}
    env_file: .env       # NAME=VALUE lines, relative to the task file
    setup: pip install -r requirements.txt   # before the command; cached per machine
    command: [python, train.py, --epochs, "5"]   # or a string, run with sh -c
    ports: [6006, "8888:9999"]   # the machine's PORT, or PORT:LOCAL, forwarded here
    outputs: [checkpoints]
    store: s3://bucket/runs   # where the machine saves checkpoints and logs (--store)
    checkpoint_sync: 10s      # how often checkpoints come home during run, or off
    recover: 3                # a preempted or lost machine is replaced up to 3 times
    retry_on_failure: false   # with recover: a job's own failure is retried too

A flag given on the command line wins over the file. SkyPilot's task format is read
too (see ``skypilot``). A task file is at most
1 MiB of UTF-8 YAML without anchors or aliases (an alias can make a few hundred bytes
expand to gigabytes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .. import registry
from ..errors import BadInput
from ..recovery import DEFAULT_RECOVERIES
from . import skypilot
from .envfile import read_env_file

#: task-file key -> (parameter of `run`, accepted Python types); each provider's own
#: flags are keys too (see ``fields``)
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
    "idle_stop": ("idle_stop", (str, int, float)),
    "max_duration": ("max_duration", (str, int, float)),
    "max_spend": ("max_spend", (str, int, float)),
    "release": ("release", (str,)),
    "store": ("store", (str,)),
    "workdir": ("workdir", (str,)),
    "env": ("envs", (dict,)),
    "env_file": ("env_files", (str, list)),
    "checkpoint_dir": ("checkpoint_dir", (str,)),
    "setup": ("setup", (str,)),
    "delete": ("delete", (bool,)),
    "outputs": ("outputs", (list, str)),
    "output_dir": ("output_dir", (str,)),
    "keep": ("keep", (bool,)),
    "checkpoint_sync": ("checkpoint_sync", (str, int, float, bool)),
    "recover": ("recover", (int, bool)),
    "retry_on_failure": ("retry_on_failure", (bool,)),
    "command": ("command", (list, str)),
    "ports": ("ports", (list, int, str)),
    "nodes": ("nodes", (int,)),
}


#: largest task file read; a settings file is a few hundred bytes
MAX_BYTES = 1024 * 1024


def _read(path: str) -> Any:
    """The file's YAML document, every failure a ``BadInput`` naming where it is."""
    import yaml

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise BadInput(f"cannot read task file {path}: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise BadInput(f"task file {path} is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BadInput(
            f"task file {path} is not UTF-8 text (byte {e.start + 1}, line {line})"
        ) from None
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = e.problem or e.context or "invalid YAML"
        raise BadInput(f"task file {path}: {what}{where}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise BadInput(f"task file {path}: invalid YAML: {e}".splitlines()[0]) from None


def _loader() -> type:
    """A SafeLoader that refuses anchors and aliases."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise yaml.MarkedYAMLError(
                    problem="anchors and aliases (& and *) are not allowed in task files",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def load(path: str) -> dict[str, Any]:
    """The file's settings as `run` parameter values."""
    data = _read(path)
    if not isinstance(data, dict):
        raise BadInput(f"task file {path} must be a mapping of settings, e.g. command: [...]")
    values: dict[str, Any] = {}
    base = Path(path).resolve().parent
    known = fields()
    if skypilot.detected(data):
        return skypilot.load(path, data, base, set(known))
    for key, value in data.items():
        if not isinstance(key, str) or key not in known:
            raise BadInput(f"task file {path}: unknown key {key!r} (known: {', '.join(known)})")
        param, types = known[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise BadInput(f"task file {path}: {key} must be a {wanted}")
        if not _flat(value):
            raise BadInput(f"task file {path}: {key} must hold only strings and numbers")
        values[param] = _convert(key, value, base)
    return values


def fields() -> dict[str, tuple[str, tuple[type, ...]]]:
    """Every task-file key: the common ones, then each provider's flags."""
    found = dict(FIELDS)
    for flag, _owners in registry.flags():
        if flag.cli:
            kinds: tuple[type, ...] = (int, float) if flag.kind is float else (flag.kind,)
            found.setdefault(flag.name, (flag.name, kinds))
    return found


def _flat(value: Any) -> bool:
    """A list of scalars, or a mapping of string keys to scalars (or not a container)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and _flat(list(value.values()))
    if isinstance(value, list):
        return all(isinstance(v, str | int | float) for v in value)
    return True


def _convert(key: str, value: Any, base: Path) -> Any:
    if key in ("env", "tags"):
        return tuple(f"{k}={v}" for k, v in value.items())
    if key == "env_file":
        return tuple(str(base / v) for v in ([value] if isinstance(value, str) else value))
    if key == "ports":
        return ports(value)
    if key == "outputs":
        return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if key == "command":
        return ("sh", "-c", value) if isinstance(value, str) else tuple(str(v) for v in value)
    if key in ("workdir", "output_dir"):
        return str(base / value)
    if key == "checkpoint_sync" and not isinstance(value, bool | str):
        return str(value)  # a bare number is refused as on the command line: 30s or 30m?
    if key == "recover" and isinstance(value, bool):
        return DEFAULT_RECOVERIES if value else 0
    if key == "recover" and value < 0:
        raise BadInput(f"recover must be a number of recoveries (0 or more), not {value}")
    if key == "checkpoint_sync" and value is True:
        return None  # on, at the default interval
    return value


_PORT = re.compile(r"^(\d{1,5})(?::(\d{1,5}))?$")


def ports(value: Any) -> tuple[str, ...]:
    """``ports:`` as strings ``PORT`` or ``PORT:LOCAL`` (each 1 to 65535): the
    machine's port, and the local one it is forwarded to (the same by default)."""
    found = []
    for item in value if isinstance(value, list) else [value]:
        text = str(item).strip()
        m = _PORT.match(text) if not isinstance(item, bool | float) else None
        if not m or not all(1 <= int(n) <= 65535 for n in m.groups() if n is not None):
            raise BadInput(
                f"ports: {item!r} is not a port (1-65535) or PORT:LOCAL "
                '(in YAML, quote PORT:LOCAL: "8888:9999")'
            )
        found.append(text)
    return tuple(found)


def merge(ctx: click.Context, params: dict[str, Any], path: str) -> dict[str, Any]:
    """``params`` with the file's values where no flag was given; a setting this
    command has no parameter for is refused rather than dropped. A SkyPilot task
    comes as ``skypilot`` (``skypilot.SkyTask``), its candidates without the fields a
    flag gave, and its envs under the command line's ``--env`` and ``--env-file``."""
    merged = dict(params)
    accepted = {p.name for p in ctx.command.params}
    values = load(path)
    sky = values.pop("skypilot", None)

    def given(param: str) -> bool:
        if param == "command":
            return bool(params.get("command"))
        return ctx.get_parameter_source(param) not in (ParameterSource.DEFAULT, None)

    if sky is not None:
        merged["skypilot"] = sky
        left: list[dict[str, Any]] = []  # the candidates a flag did not make one
        for choice in sky.choices:
            own = {k: v for k, v in choice.items() if not given(k)}
            if own not in left:
                left.append(own)
        sky.choices = left if len(left) > 1 else []
        values.update(left[0] if len(left) == 1 else {})
        merged["envs"] = sky_envs(
            path, sky, values.pop("envs", ()), params.get("envs", ()), params.get("env_files", ())
        )
    for param, value in values.items():
        if param not in accepted:
            raise BadInput(f"task file {path}: {param} is not supported by `trainctl run` yet")
        if not given(param):
            merged[param] = value
    return merged


def sky_envs(
    path: str,
    sky: skypilot.SkyTask,
    from_file: tuple[str, ...],
    flags: tuple[str, ...],
    env_files: tuple[str, ...],
) -> tuple[str, ...]:
    """A SkyPilot task's envs and secrets, then ``--env`` (a later one wins): a name
    given with ``--env`` or in an ``--env-file`` replaces the file's value, as
    ``sky launch --env`` does; one the file leaves null must be given."""
    named = {item.partition("=")[0] for item in flags}
    for env_file in env_files:
        named |= set(read_env_file(env_file))
    missing = [n for n in sky.required if n not in named]
    if missing:
        raise BadInput(
            f"task file {path}: {', '.join(missing)} must be given (null in envs or "
            "secrets): --env NAME=VALUE, or -e NAME with NAME set in this shell"
        )
    return (*(i for i in from_file if i.partition("=")[0] not in named), *flags)

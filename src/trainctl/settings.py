"""A provider's settings: its ``[providers.NAME]`` config table, read once into a typed,
frozen dataclass whose fields carry the defaults and say what each setting means.

Every provider reads its table the same way: a value of the wrong type, or a
negative number, is a one-line ``BadInput`` naming the table and the key; a key the
dataclass lacks is a warning (a typo would otherwise be silently ignored, and an old
setting should not stop a command).
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from typing import Any, TypeVar

from .errors import BadInput
from .home import provider_config

T = TypeVar("T")

log = logging.getLogger(__name__)


def load(cls: type[T], provider: str, table: dict[str, Any] | None = None, **given: Any) -> T:
    """``cls`` from ``[providers.PROVIDER]`` (or ``table``); ``given`` values that are
    not None (constructor arguments, environment) win over the file."""
    raw = dict(provider_config(provider) if table is None else table)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k in raw if k not in names)
    if unknown:
        log.warning(
            "[providers.%s] has no setting %s (known: %s); ignored",
            provider,
            ", ".join(map(repr, unknown)),
            ", ".join(sorted(names)),
        )
    raw = {k: v for k, v in raw.items() if k in names}
    raw.update({k: v for k, v in given.items() if v is not None})
    values = {k: _convert(provider, k, v, hints[k]) for k, v in raw.items()}
    return cls(**values)


def _convert(provider: str, key: str, value: Any, hint: Any) -> Any:
    where = f"[providers.{provider}] {key}"
    if typing.get_origin(hint) is tuple:  # a list of strings
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise BadInput(f"{where} must be a list of strings, not {value!r}")
        return tuple(value)
    kinds = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    kind = kinds[0]
    if kind is float or kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadInput(f"{where} must be a number, not {value!r}")
        if value < 0:
            raise BadInput(f"{where} cannot be negative ({value:g})")
        if kind is int and value != int(value):
            raise BadInput(f"{where} must be a whole number, not {value:g}")
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise BadInput(f"{where} must be a string, not {value!r}")
        if not value.strip() and type(None) in typing.get_args(hint):
            return None
        if not value.strip():
            raise BadInput(f"{where} cannot be empty")
        return value.strip()
    return value

"""Provider registry: built-ins, programmatic registrations and entry points.

Provider modules are imported on first use only; a provider module itself imports
its SDK (boto3, httpx) inside the functions that need it, so listing or
auto-detecting providers stays fast.
"""

from __future__ import annotations

import importlib
import os

from .errors import BadInput, OperationFailed
from .home import load_config
from .provider import ProviderFlag, TrainingProvider
from .types import ResourceState

ENTRY_POINT_GROUP = "trainctl.providers"

#: name -> "module:Class"
BUILTIN: dict[str, str] = {
    "aws": "trainctl.providers.aws:AwsProvider",
    "runpod": "trainctl.providers.runpod:RunPodProvider",
    "lyceum": "trainctl.providers.lyceum:LyceumProvider",
    "ssh": "trainctl.providers.ssh:SSHProvider",
    "local": "trainctl.providers.local:LocalProvider",
}

#: providers picked by auto-detection are the cloud ones; `local` is the fallback
FALLBACK = "local"

_registered: dict[str, type[TrainingProvider]] = {}
_entry_points: dict[str, str] | None = None


def register(provider_class: type[TrainingProvider], name: str | None = None) -> None:
    """Make a provider class available under ``name`` (default: its ``name``)."""
    _registered[name or provider_class.name] = provider_class


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _discovered() -> dict[str, str]:
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points  # slow to import: only when needed

        _entry_points = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _entry_points


def names() -> list[str]:
    """Every known provider name: built-in, registered, then discovered."""
    seen = dict.fromkeys([*BUILTIN, *_registered, *_discovered()])
    return list(seen)


def get_class(name: str) -> type[TrainingProvider]:
    if name in _registered:
        return _registered[name]
    target = BUILTIN.get(name) or _discovered().get(name)
    if target is None:
        known = ", ".join(names())
        raise BadInput(f"unknown provider {name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise OperationFailed(f"provider {name!r} could not be loaded from {target}: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, TrainingProvider)):
        raise OperationFailed(f"provider {name!r} at {target} is not a TrainingProvider")
    return cls


def loadable() -> list[str]:
    """The known providers whose class loads (a broken plugin is left out here; it
    still fails with its reason when it is asked for by name)."""
    found = []
    for name in names():
        try:
            get_class(name)
        except OperationFailed:
            continue
        found.append(name)
    return found


def state_of(provider: str, raw: str | None) -> ResourceState:
    """``raw`` as ``provider`` reports it, through that provider's own table."""
    try:
        return get_class(provider).state_of(raw)
    except (BadInput, OperationFailed):
        return ResourceState.UNKNOWN


def flags() -> list[tuple[ProviderFlag, list[str]]]:
    """Every provider's own create flags, each with the providers that take it (a
    flag several providers declare alike is one flag)."""
    merged: dict[str, tuple[ProviderFlag, list[str]]] = {}
    for name in loadable():
        for flag in get_class(name).flags:
            known = merged.get(flag.name)
            if known is None:
                merged[flag.name] = (flag, [name])
            elif known[0].kind is flag.kind:
                known[1].append(name)
    return list(merged.values())


def get(name: str) -> TrainingProvider:
    """A ready provider instance by name."""
    return get_class(name)()


def detect() -> list[str]:
    """Providers (other than the fallback) whose credentials are present here."""
    found = []
    for name in names():
        if name == FALLBACK:
            continue
        try:
            if get_class(name).credentials_present():
                found.append(name)
        except OperationFailed:
            continue
    return found


def select(flag: str | None = None) -> str:
    """The provider to use: ``--provider``, then ``TRAINCTL_PROVIDER``, then the
    config default, then the one provider with credentials present (``local`` when
    none)."""
    for choice in (
        flag,
        os.environ.get("TRAINCTL_PROVIDER"),
        load_config().get("default_provider"),
    ):
        if choice:
            get_class(choice)  # unknown names fail here, with the list of known ones
            return choice
    found = detect()
    if not found:
        return FALLBACK
    if len(found) == 1:
        return found[0]
    raise BadInput(
        f"credentials for several providers are present ({', '.join(found)}): "
        "choose one with --provider, TRAINCTL_PROVIDER or default_provider in the config"
    )

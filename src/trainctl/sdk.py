"""Cloud SDKs are optional extras: a missing one is a clear error with the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import OperationFailed


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or say which extra of trainctl brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise OperationFailed(
            f"the Python package {package!r} is not installed",
            hint=f"pip install 'trainctl[{extra}]'",
        ) from None

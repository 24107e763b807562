"""The aws provider's settings: the ``[providers.aws]`` table of ``config.toml``.

Parsed once, when the provider is made, so that a bad value is one clear error up
front instead of a failure in the middle of a launch. What is not set here comes
from the standard AWS chain, which boto3 reads itself: ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` and ``region`` in ``~/.aws/config`` for the region,
``AWS_PROFILE`` for the profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import BadInput
from ...home import provider_config
from .setup import PROFILE_NAME

#: how long a new or started machine may take to run with its SSM agent online
READY_TIMEOUT_SECONDS = 600.0

_TABLE = "[providers.aws]"


@dataclass(frozen=True)
class AwsSettings:
    """``region``: where machines go without ``--region`` (default: the standard
    chain's); ``profile``: the AWS profile (default: ``AWS_PROFILE``, else the default
    profile); ``bucket``: the staging bucket (default:
    ``trainctl-staging-<account>-<region>``); ``instance_profile``: the machines'
    instance profile (default ``trainctl-instance``); ``ready_timeout``: seconds a
    machine may take to become usable (default 600)."""

    region: str | None = None
    profile: str | None = None
    bucket: str | None = None
    instance_profile: str = PROFILE_NAME
    ready_timeout: float = READY_TIMEOUT_SECONDS

    @classmethod
    def load(cls, table: dict[str, Any] | None = None) -> AwsSettings:
        """The settings in ``table`` (default: ``[providers.aws]`` of the config file);
        a value of the wrong kind is ``BadInput`` naming the key. Keys this provider
        does not read are left alone."""
        table = provider_config("aws") if table is None else table
        return cls(
            region=_text(table, "region"),
            profile=_text(table, "profile"),
            bucket=_text(table, "bucket"),
            instance_profile=_text(table, "instance_profile") or PROFILE_NAME,
            ready_timeout=_seconds(table, "ready_timeout", READY_TIMEOUT_SECONDS),
        )


def _text(table: dict[str, Any], key: str) -> str | None:
    """A string setting (None when absent or empty)."""
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{key} in {_TABLE} must be a string, not {value!r}")
    return value.strip() or None


def _seconds(table: dict[str, Any], key: str, default: float) -> float:
    """A positive number of seconds (``default`` when absent)."""
    value = table.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BadInput(f"{key} in {_TABLE} must be a number of seconds above 0, not {value!r}")
    return float(value)

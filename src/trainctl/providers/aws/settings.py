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

from ... import settings
from ...errors import BadInput
from .setup import PROFILE_NAME

#: how long a new or started machine may take to run with its SSM agent online
READY_TIMEOUT_SECONDS = 600.0


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
        a value of the wrong kind is ``BadInput`` naming the key."""
        found = settings.load(cls, "aws", table)
        if not found.ready_timeout > 0:
            raise BadInput(
                f"[providers.aws] ready_timeout must be above 0, not {found.ready_timeout:g}"
            )
        return found

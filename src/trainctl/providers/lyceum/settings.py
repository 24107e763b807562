"""Lyceum settings: the ``[providers.lyceum]`` table of trainctl's config file and
the ``TRAINCTL_LYCEUM_*`` environment, read once into one frozen value.

``[providers.lyceum]`` keys (seconds):

- ``poll_interval`` (10): between status checks while a new VM starts;
- ``ready_timeout`` (900): a VM not usable after this long is deleted.

``TRAINCTL_LYCEUM_API_URL`` points trainctl at another API server (a test server,
a proxy); unset, the ``base_url`` of ``~/.lyceum/config.json`` is used, then
Lyceum's own. The credentials (``LYCEUM_API_KEY``, ``LYCEUM_ORG``) are Lyceum's
variables and are read with the key file (see ``client.Credentials``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...errors import BadInput
from ...home import provider_config

TABLE = "[providers.lyceum]"
URL_VARIABLE = "TRAINCTL_LYCEUM_API_URL"


@dataclass(frozen=True)
class LyceumSettings:
    poll_interval: float = 10.0
    ready_timeout: float = 900.0
    #: the API server from ``TRAINCTL_LYCEUM_API_URL`` (None: not set)
    api_url: str | None = None

    @classmethod
    def load(cls) -> LyceumSettings:
        """The settings of the config file and the environment; ``BadInput`` names
        a value that cannot be used."""
        return cls.parse(provider_config("lyceum"), os.environ)

    @classmethod
    def parse(cls, table: Mapping[str, Any], environ: Mapping[str, str]) -> LyceumSettings:
        return cls(
            poll_interval=_seconds(table, "poll_interval", cls.poll_interval),
            ready_timeout=_seconds(table, "ready_timeout", cls.ready_timeout),
            api_url=_url(environ.get(URL_VARIABLE, "")),
        )


def _seconds(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadInput(f"{TABLE} {key} must be a number of seconds, not {value!r}")
    return float(value)


def _url(value: str) -> str | None:
    """An ``http(s)://host[:port][/path]`` URL without its trailing slash, or None."""
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(
            f"{URL_VARIABLE} must be an http:// or https:// URL, not {value!r}",
            hint=f"unset {URL_VARIABLE} to use Lyceum's own API",
        )
    return value.rstrip("/")

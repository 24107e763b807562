"""The lyceum provider's settings: ``[providers.lyceum]`` in the config file, and the
endpoint (``TRAINCTL_LYCEUM_API_URL``) the tests point at their fake.

The credentials (``LYCEUM_API_KEY``, ``LYCEUM_ORG``, ``~/.lyceum/config.json``) are
Lyceum's own and are read with the key (see ``client.Credentials``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from ... import settings
from ...errors import BadInput

URL_VARIABLE = "TRAINCTL_LYCEUM_API_URL"


@dataclass(frozen=True)
class LyceumSettings:
    #: seconds between status checks while a new VM starts
    poll_interval: float = 10.0
    #: seconds a new VM may take to be usable; after that it is deleted
    ready_timeout: float = 900.0
    #: the API server; None: the ``base_url`` of ``~/.lyceum/config.json``, else
    #: Lyceum's own
    api_url: str | None = None


def load(**given: object) -> LyceumSettings:
    """The settings, constructor arguments first, then the environment, then the file."""
    env = {"api_url": os.environ.get(URL_VARIABLE, "").strip() or None}
    values = {k: v for k, v in env.items() if v is not None}
    values.update({k: v for k, v in given.items() if v is not None})
    loaded = settings.load(LyceumSettings, "lyceum", **values)
    url = loaded.api_url
    if url is None:
        return loaded
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(
            f"the Lyceum API URL ({URL_VARIABLE} or [providers.lyceum] api_url) must be "
            f"an http:// or https:// URL, not {url!r}"
        )
    return replace(loaded, api_url=url.rstrip("/"))

"""The runpod provider's settings: ``[providers.runpod]`` in the config file, and the
endpoints (``TRAINCTL_RUNPOD_API_URL``, ``TRAINCTL_RUNPOD_GRAPHQL_URL``) the tests
point at their fake, and where a pod's guard finds the pod's own key
(``TRAINCTL_RUNPOD_POD_ENV_FILES``, colon-separated; the fake's machines keep theirs
in their home directory)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ... import settings

DEFAULT_API_URL = "https://api.runpod.io"
DEFAULT_GRAPHQL_URL = "https://api.runpod.io/graphql"
DEFAULT_IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


@dataclass(frozen=True)
class RunPodSettings:
    #: REST API v2 base URL (with or without its ``/v2``)
    api_url: str = DEFAULT_API_URL
    #: GraphQL endpoint: spot rentals and spot prices, which v2 lacks
    graphql_url: str = DEFAULT_GRAPHQL_URL
    #: the GPU when ``--gpu`` is not given (e.g. "RTX4090"); none by default
    gpu: str | None = None
    #: secure or community, when ``--cloud`` is not given
    cloud: str = "secure"
    #: the pod image when ``--image`` is not given
    image: str = DEFAULT_IMAGE
    #: container disk in GB when ``--disk`` is not given
    disk_gb: int = 50
    #: seconds a new pod may take to run with SSH reachable
    ready_timeout: float = 900.0
    #: seconds between status polls while waiting
    poll_interval: float = 5.0
    #: seconds a RUNNING pod may lack a direct SSH endpoint before it is given up
    direct_ssh_grace: float = 60.0
    #: the profile of RunPod's config file whose key is used
    profile: str = "default"
    #: files on a pod that hold its environment, its pod-scoped key among it: the
    #: container's first process, then what RunPod's images write for shells
    pod_env_files: tuple[str, ...] = ("/proc/1/environ", "/etc/rp_environment")

    @property
    def rest_base(self) -> str:
        return self.api_url.rstrip("/").removesuffix("/v2")


def load(**given: object) -> RunPodSettings:
    """The settings, constructor arguments first, then the environment, then the file."""
    env = {
        "api_url": os.environ.get("TRAINCTL_RUNPOD_API_URL") or None,
        "graphql_url": os.environ.get("TRAINCTL_RUNPOD_GRAPHQL_URL") or None,
        "pod_env_files": tuple(os.environ["TRAINCTL_RUNPOD_POD_ENV_FILES"].split(":"))
        if os.environ.get("TRAINCTL_RUNPOD_POD_ENV_FILES")
        else None,
    }
    values = {k: v for k, v in env.items() if v is not None}
    values.update({k: v for k, v in given.items() if v is not None})
    return settings.load(RunPodSettings, "runpod", **values)

"""The runpod provider: GPU pods through RunPod's REST API v2, training over SSH."""

from .provider import RunPodProvider

__all__ = ["RunPodProvider"]

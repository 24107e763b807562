"""The lyceum provider: GPU VMs through Lyceum Cloud's HTTP API, training over SSH."""

from .provider import LyceumProvider

__all__ = ["LyceumProvider"]

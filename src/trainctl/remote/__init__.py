"""The data plane: how trainctl reaches one machine (see ``base.Remote``)."""

from .base import CommandResult, Remote, StreamingRemote, SyncResult

__all__ = ["CommandResult", "Remote", "StreamingRemote", "SyncResult"]

"""Errors that reach the user, each with the exit code the CLI documents.

0 success, 1 operation failed, 2 bad usage or input, 3 not found,
4 credentials missing or rejected.
"""

from __future__ import annotations


class TrainctlError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class OperationFailed(TrainctlError):
    exit_code = 1
    kind = "operation_failed"


class BadInput(TrainctlError):
    exit_code = 2
    kind = "bad_input"


class CapabilityError(BadInput):
    kind = "unsupported"


class NotFound(TrainctlError):
    exit_code = 3
    kind = "not_found"


class CredentialsError(TrainctlError):
    exit_code = 4
    kind = "credentials"
    #: the HTTP status that refused the credentials, where an API answered one
    status: int | None = None


class NoCapacity(OperationFailed):
    """The provider has no machine of that kind right now; another offer may."""

    kind = "no_capacity"


class RemoteError(OperationFailed):
    """A machine could not be reached or a command on it failed."""

    kind = "remote"


class ResourceLeft(OperationFailed):
    """A create failed, yet a machine may exist and cost money, so its record is kept
    (with ``resource_id`` when known) for ``trainctl list --refresh`` or
    ``trainctl terminate`` to settle."""

    kind = "resource_left"

    def __init__(
        self, message: str, *, resource_id: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.resource_id = resource_id

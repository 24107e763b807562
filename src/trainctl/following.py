"""Following a job's log across lost connections.

A connection that drops is not the job's end: ``Reconnect`` is the policy
``JobRuntime.follow`` consults on each failure (try again with capped backoff while
the provider says the machine is there), and the errors it ends with say how to
come back to the job that is left running.
"""

from __future__ import annotations

import time

from .errors import BadInput, CredentialsError, NotFound, RemoteError, TrainctlError
from .home import load_config
from .provider import TrainingProvider
from .remote.base import Progress
from .store import ResourceRecord
from .types import ResourceState


class FollowGaveUp(RemoteError):
    """Following a job stopped for lack of a connection; the job and the machine
    are left as they are."""

    def __init__(self, message: str, *, job_id: str, resource: ResourceRecord) -> None:
        super().__init__(message, hint=reattach_hint(job_id, resource.name))
        self.job_id = job_id
        self.resource = resource


class MachineLost(FollowGaveUp):
    """Following a job stopped because its provider says the machine is gone."""


def reattach_hint(job_id: str, resource_name: str) -> str:
    return (
        f"re-attach with `trainctl monitor {job_id} --follow`; end it with "
        f"`trainctl cancel {job_id}`, release the machine with "
        f"`trainctl terminate {resource_name}`"
    )


#: what a provider says of a machine that no job runs on any more
GONE = (ResourceState.STOPPED, ResourceState.TERMINATING, ResourceState.TERMINATED)

#: how long following keeps trying to reach a machine, and the longest pause between
#: two tries; ``[follow] reconnect_timeout`` / ``reconnect_max_interval`` in the config
RECONNECT_TIMEOUT = 900.0
RECONNECT_MAX_INTERVAL = 30.0


class Reconnect:
    """What following does when the machine cannot be reached: a lost connection is
    not the job's end. Try again with backoff (capped at ``max_interval``) while the
    provider says the machine is there; stop with ``MachineLost`` when it says the
    machine is gone, and with ``FollowGaveUp`` after ``timeout`` seconds without a
    connection. Each try is reported to ``report``. A key the machine refuses is not
    tried again: it is ``MachineLost`` when the provider says the machine is gone (its
    address now answers for another), else the error itself."""

    def __init__(
        self,
        provider: TrainingProvider,
        record: ResourceRecord,
        job_id: str,
        *,
        report: Progress | None = None,
        timeout: float | None = None,
        max_interval: float | None = None,
    ) -> None:
        config = load_config().get("follow", {})
        config = config if isinstance(config, dict) else {}
        self.provider = provider
        self.record = record
        self.job_id = job_id
        self.report = report or (lambda _message: None)
        self.timeout = seconds_setting(
            timeout,
            config.get("reconnect_timeout"),
            RECONNECT_TIMEOUT,
            "[follow] reconnect_timeout",
        )
        self.max_interval = seconds_setting(
            max_interval,
            config.get("reconnect_max_interval"),
            RECONNECT_MAX_INTERVAL,
            "[follow] reconnect_max_interval",
        )
        self._since = 0.0

    def __call__(self, error: RemoteError | CredentialsError, failures: int) -> None:
        if isinstance(error, CredentialsError):
            self._check_machine(error)
            raise error
        now = time.monotonic()
        if failures == 1:
            self._since = now
        waited = now - self._since
        name = self.record.name
        if waited >= self.timeout:
            raise FollowGaveUp(
                f"gave up following {self.job_id} after {waited:.0f}s without a connection "
                f"to {name} ({error.message}); the job and {name} are left running",
                job_id=self.job_id,
                resource=self.record,
            )
        self._check_machine(error)
        delay = min(self.max_interval, 0.5 * 2 ** (failures - 1), self.timeout - waited)
        self.report(
            f"lost contact with {name} ({error.message}); reconnecting in {delay:.1f}s "
            f"(try {failures}, giving up after {self.timeout:.0f}s)"
        )
        time.sleep(delay)

    def _check_machine(self, error: RemoteError | CredentialsError) -> None:
        try:
            state = self.provider.get_resource_status(self.record.id).state
        except NotFound:
            state = ResourceState.TERMINATED
        except TrainctlError:
            return  # the provider cannot say either: keep trying
        if state in GONE:
            raise MachineLost(
                f"lost {self.job_id}: {self.record.provider} says {self.record.name} is "
                f"{state.value} ({error.message})",
                job_id=self.job_id,
                resource=self.record,
            )


def seconds_setting(given: float | None, configured: object, default: float, setting: str) -> float:
    """``given``, else the configured ``setting``, else ``default``: seconds, >= 0."""
    value = given if given is not None else configured
    if value is None:
        return default
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:
        raise BadInput(f"bad {setting} {value!r} in the config file: expected seconds")
    return seconds

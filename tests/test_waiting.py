"""wait_ready: progress, success, and termination on every way of failing."""

from __future__ import annotations

import pytest

from trainctl.errors import CredentialsError, OperationFailed, ResourceLeft
from trainctl.waiting import Seen, wait_ready


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def run(states, *, timeout=10.0, release=None, keep=False):
    clock = Clock()
    lines: list[str] = []
    released: list[int] = []
    it = iter(states)

    def poll():
        s = next(it)
        if isinstance(s, BaseException):
            raise s
        return s

    def look(s):
        return Seen(s, ready=s == "RUNNING", failure="container error" if s == "ERROR" else None)

    result = wait_ready(
        "pod p1",
        poll,
        look,
        release=None if keep else (release or (lambda: released.append(1))),
        timeout=timeout,
        interval=2.0,
        progress=lines.append,
        sleep=clock.sleep,
        clock=clock,
    )
    return result, lines, released


def test_ready_after_some_polls_reports_each_change_once():
    result, lines, released = run(["PROVISIONING", "PROVISIONING", "STARTING", "RUNNING"])
    assert result == "RUNNING"
    assert lines == [
        "pod p1: PROVISIONING (0 s)",
        "pod p1: STARTING (4 s)",
        "pod p1: RUNNING (6 s)",
    ]
    assert released == []


def test_timeout_terminates_and_says_so():
    released: list[int] = []
    with pytest.raises(OperationFailed) as e:
        run(["PROVISIONING"] * 100, timeout=5, release=lambda: released.append(1))
    assert released == [1]
    assert str(e.value) == (
        "pod p1 was not ready after 5 s (still PROVISIONING); pod p1 was terminated"
    )


def test_failure_state_terminates():
    with pytest.raises(OperationFailed, match="pod p1 failed: container error; pod p1 was termi"):
        run(["STARTING", "ERROR"])


def test_poll_error_keeps_its_class_and_terminates():
    released: list[int] = []
    with pytest.raises(CredentialsError) as e:
        run(
            ["STARTING", CredentialsError("key revoked", hint="new key")],
            release=lambda: released.append(1),
        )
    assert e.value.exit_code == 4 and e.value.hint == "new key"
    assert "key revoked; pod p1 was terminated" in str(e.value)
    assert released == [1]


def test_interrupt_terminates_and_propagates():
    released: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        run(["STARTING", KeyboardInterrupt()], release=lambda: released.append(1))
    assert released == [1]


def test_failed_release_is_reported_not_hidden():
    def boom():
        raise OperationFailed("API down")

    with pytest.raises(ResourceLeft) as e:
        run(["ERROR"], release=boom)
    assert "container error" in str(e.value)
    assert "terminating pod p1 failed too (API down): it may still be billing" in str(e.value)


def test_without_release_the_machine_is_left_alone():
    with pytest.raises(OperationFailed) as e:
        run(["STARTING"] * 100, timeout=4, keep=True)
    assert str(e.value) == "pod p1 was not ready after 4 s (still STARTING)"


def test_an_api_error_from_the_poll_keeps_its_class_and_says_it_was_terminated():
    """Persistent 5xx while polling ends in the API's own one-line error (an error
    with required fields of its own used to break into a TypeError here)."""
    from trainctl.httpapi import ApiError

    failure = ApiError("RunPod GET /v2/pods/p1 failed: 503", status=503, detail="down")
    with pytest.raises(ApiError) as e:
        run(["STARTING", failure])
    assert e.value.status == 503 and e.value.detail == "down"
    assert str(e.value).startswith("RunPod GET /v2/pods/p1 failed: 503; pod p1 was terminated")

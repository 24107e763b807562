"""`terminate` racing a `create`: the create's intent is never dropped while the
create may still act, and a create records what it made whatever happened to its
intent. Driven through the real CLI against the RunPod fake."""

from __future__ import annotations

import subprocess
import sys
import threading

from cli_helpers import trainctl
from trainctl.store import Store
from trainctl.types import ResourceState, ResourceStatus


def hold_creates(fake) -> tuple[threading.Event, threading.Event]:
    """Make the fake's createPod wait (with the fake unlocked, so other calls are
    served) until the test sets ``release``; ``entered`` is set once a create waits."""
    entered, release = threading.Event(), threading.Event()
    create_pod = fake.createPod

    def held(query, body):
        fake.lock.release()  # taken by the request handler around every call
        try:
            entered.set()
            release.wait(60)
        finally:
            fake.lock.acquire()
        return create_pod(query, body)

    fake.createPod = held
    return entered, release


def test_terminate_during_a_create_leaves_it_to_finish_and_nothing_leaks(runpod_cli):
    fake = runpod_cli
    entered, release = hold_creates(fake)
    create = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "create", "-p", "runpod", "--name", "rp1",
         "--gpu", "RTX4090", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert entered.wait(60), "the create never reached the provider"
        racing = trainctl("terminate", "rp1", "-y")
        assert racing.code == 1, racing.err
        assert "still running" in racing.err and "Traceback" not in racing.err
        listed = trainctl("list", "--refresh", "--json")
        assert [r["name"] for r in listed.json()["resources"]] == ["rp1"]
    finally:
        release.set()
        out, err = create.communicate(timeout=120)
    assert create.returncode == 0, err
    made = trainctl("status", "rp1", "--json")
    assert made.code == 0, made.err
    assert made.json()["state"] == "running"
    gone = trainctl("terminate", "rp1", "-y")
    assert gone.code == 0, gone.err
    assert fake.live_pods() == []


def test_a_create_records_its_machine_even_if_its_intent_was_dropped(tmp_path):
    store = Store()
    intent = store.begin_create("runpod", "exp")
    Store().abandon_create(intent)  # another process dropped it, as terminate used to
    made = ResourceStatus("pod-1", "runpod", ResourceState.RUNNING, name="trainctl-exp")
    record = store.finish_create(intent, made)
    assert (record.id, record.name, record.provider) == ("pod-1", "exp", "runpod")
    assert [r.id for r in Store().resources()] == ["pod-1"]


def test_a_create_adopted_meanwhile_is_recorded_once(tmp_path):
    store = Store()
    intent = store.begin_create("runpod", "exp")
    made = ResourceStatus("pod-1", "runpod", ResourceState.RUNNING, cost_per_hour=0.5)
    Store().finish_create(intent, made)  # list --refresh in another process adopted it
    made.cost_per_hour = 0.7
    record = store.finish_create(intent, made)
    assert record.price_per_hour == 0.7
    assert [(r.id, r.name) for r in Store().resources()] == [("pod-1", "exp")]

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from trainctl.errors import BadInput, NotFound, OperationFailed
from trainctl.store import SCHEMA_VERSION, Store
from trainctl.types import ExecutionStatus, ResourceState, ResourceStatus, TrainingStatus


def status(rid="r-1", state=ResourceState.RUNNING):
    return ResourceStatus(
        rid,
        "fake",
        state,
        instance_type="t",
        cost_per_hour=2.0,
        launch_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )


def test_intent_then_id(tmp_path):
    store = Store(tmp_path / "s.db")
    intent = store.begin_create("fake", "exp")
    pending = store.resource("exp")
    assert pending.id == intent and not pending.confirmed
    store.finish_create(intent, status())
    rec = store.resource("exp")
    assert rec.id == "r-1" and rec.confirmed and rec.price_per_hour == 2.0
    assert store.resource("r-1").name == "exp"


def test_names_are_unique(tmp_path):
    store = Store(tmp_path / "s.db")
    store.begin_create("fake", "exp")
    with pytest.raises(BadInput):
        store.begin_create("fake", "exp")


def test_abandon_and_forget(tmp_path):
    store = Store(tmp_path / "s.db")
    store.abandon_create(store.begin_create("fake", "a"))
    with pytest.raises(NotFound):
        store.resource("a")
    store.finish_create(store.begin_create("fake", "b"), status("r-2"))
    store.add_job(
        store.resource("b"), TrainingStatus("j-1", "r-2", ExecutionStatus.RUNNING, command=["x"])
    )
    store.forget("r-2")
    assert store.resources() == [] and store.job("j-1") is None


def test_jobs_recorded_and_updated(tmp_path):
    store = Store(tmp_path / "s.db")
    rec = store.finish_create(store.begin_create("fake", "b"), status("r-2"))
    store.add_job(
        rec, TrainingStatus("j-1", "r-2", ExecutionStatus.RUNNING, command=["python", "t.py"])
    )
    store.update_job(TrainingStatus("j-1", "r-2", ExecutionStatus.FAILED, exit_code=3))
    job = store.job("j-1")
    assert job.command == ["python", "t.py"] and job.exit_code == 3 and job.status == "failed"


def test_schema_version_recorded_and_newer_refused(tmp_path):
    path = tmp_path / "s.db"
    Store(path).resources()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    db.execute("UPDATE meta SET value='99'")
    db.commit()
    with pytest.raises(OperationFailed, match="newer"):
        Store(path).resources()


def test_update_status_keeps_known_fields(tmp_path):
    store = Store(tmp_path / "s.db")
    store.finish_create(store.begin_create("fake", "b"), status("r-2"))
    store.update_status(ResourceStatus("r-2", "fake", ResourceState.STOPPED))
    rec = store.resource("b")
    assert rec.state == "stopped" and rec.price_per_hour == 2.0 and rec.instance_type == "t"

"""`run` releases the machine on every path out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fakes import FakeProvider
from trainctl import registry
from trainctl.api import Trainctl, run
from trainctl.errors import OperationFailed
from trainctl.types import CreateResourceOptions, TrainingJob


class Broken(FakeProvider):
    """Creates machines, then fails to start any job."""

    name = "broken"
    fail_with: BaseException = OperationFailed("sync failed")
    root: Path
    instances: list[Broken] = []

    def __init__(self) -> None:
        super().__init__(self.root)
        Broken.instances.append(self)

    def train(self, resource_id, job, **kw):
        raise self.fail_with


@pytest.fixture
def broken(tmp_path):
    Broken.root = tmp_path / "machines"
    Broken.instances = []
    registry.register(Broken)
    yield Broken.instances
    registry.unregister("broken")


@pytest.mark.parametrize("error", [OperationFailed("sync failed"), KeyboardInterrupt()])
def test_run_terminates_on_error_and_interrupt(broken, tmp_path, error):
    Broken.fail_with = error
    tc = Trainctl()
    with pytest.raises(type(error)):
        run(
            tc,
            "broken",
            CreateResourceOptions(),
            TrainingJob([sys.executable, "-c", "pass"]),
            outputs=[],
            output_dir=tmp_path / "out",
        )
    assert broken[0].calls == ["create", "terminate"]
    assert tc.store.resources() == []


def test_run_keeps_machine_when_asked(tmp_path):
    tc = Trainctl()
    result = run(
        tc,
        "local",
        CreateResourceOptions(),
        TrainingJob([sys.executable, "-c", "print('hi')"]),
        outputs=[],
        output_dir=tmp_path / "out",
        keep=True,
    )
    assert result.exit_code == 0 and not result.terminated
    assert [r.id for r in tc.store.resources()] == [result.resource.id]
    tc.terminate(result.resource.id)


class Recoverable(FakeProvider):
    """A provider whose machines outlive this store (shared across instances)."""

    name = "recoverable"
    root: Path
    machines_shared: dict = {}

    def __init__(self) -> None:
        super().__init__(self.root)
        self.machines = Recoverable.machines_shared


@pytest.fixture
def recoverable(tmp_path):
    Recoverable.root = tmp_path / "machines"
    Recoverable.machines_shared = {}
    registry.register(Recoverable)
    yield Recoverable
    registry.unregister("recoverable")


def test_refresh_adopts_an_interrupted_create(recoverable):
    tc = Trainctl()
    intent = tc.store.begin_create("recoverable", "exp")
    made = Recoverable().create_resource(CreateResourceOptions(name="exp"))  # then a "crash"
    assert not tc.store.resource("exp").confirmed
    views = tc.list(refresh=True)
    assert [v.record.id for v in views] == [made.id]
    assert "adopted" in views[0].note
    assert tc.store.resource("exp").id == made.id != intent


def test_refresh_marks_gone_machines_and_lists_untracked(recoverable):
    tc = Trainctl()
    rec = tc.create("recoverable", CreateResourceOptions(name="mine"))
    Recoverable.machines_shared.pop(rec.id)  # terminated behind trainctl's back
    stray = Recoverable().create_resource(CreateResourceOptions(name="stray"))
    views = {(v.record.name if v.record else v.live.name): v for v in tc.list(refresh=True)}
    assert views["mine"].state == "terminated"
    assert views["stray"].record is None and views["stray"].live.id == stray.id
    assert views["stray"].to_dict()["tracked"] is False

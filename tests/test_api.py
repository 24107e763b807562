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

"""`run` releases the machine on every path out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import FakeProvider
from trainctl import registry
from trainctl.api import Trainctl, run
from trainctl.errors import BadInput, NotFound, OperationFailed, RemoteError, ResourceLeft
from trainctl.remote.local import LocalRemote
from trainctl.types import CreateResourceOptions, ResourceState, TrainingJob


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


def test_run_terminates_on_error(broken, tmp_path):
    Broken.fail_with = OperationFailed("sync failed")
    tc = Trainctl()
    with pytest.raises(OperationFailed):
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


def test_run_interrupted_before_the_job_started_releases_and_says_so(broken, tmp_path):
    Broken.fail_with = KeyboardInterrupt()
    tc = Trainctl()
    said: list[str] = []
    result = run(
        tc,
        "broken",
        CreateResourceOptions(),
        TrainingJob([sys.executable, "-c", "pass"], job_id="j-00000001"),
        outputs=[],
        output_dir=tmp_path / "out",
        progress=said.append,
    )
    assert result.interrupted == "Ctrl-C" and result.exit_code == 130 and result.terminated
    assert broken[0].calls == ["create", "terminate"]
    assert tc.store.resources() == []
    assert any("could not cancel j-00000001" in line for line in said), said
    assert said[-1].startswith("releasing ")


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


def test_missing_output_keeps_the_machine_and_brings_the_rest(tmp_path):
    tc = Trainctl()
    script = "import os; open(os.environ['TRAINCTL_CHECKPOINT_DIR'] + '/c.pt', 'w').write('w')"
    result = run(
        tc,
        "local",
        CreateResourceOptions(),
        TrainingJob([sys.executable, "-c", script]),
        outputs=["typo_dir", "checkpoints"],
        output_dir=tmp_path / "out",
    )
    assert (tmp_path / "out" / "checkpoints" / "c.pt").read_text() == "w"
    assert not result.terminated and "typo_dir" in result.kept_reason
    assert result.exit_code == 1
    tc.terminate(result.resource.id)


def test_unwritable_output_dir_is_refused_before_renting(tmp_path):
    (tmp_path / "file").write_text("x")
    tc = Trainctl()
    with pytest.raises(BadInput, match="cannot write outputs"):
        run(
            tc,
            "local",
            CreateResourceOptions(),
            TrainingJob(["true"]),
            outputs=["checkpoints"],
            output_dir=tmp_path / "file" / "out",
        )
    assert tc.store.resources() == []


class Impatient(FakeProvider):
    """A provider whose release is interrupted by a Ctrl-C half-way."""

    name = "impatient"
    root: Path

    def __init__(self) -> None:
        super().__init__(self.root)

    def terminate(self, resource_id):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        return super().terminate(resource_id)


def test_ctrl_c_during_release_does_not_leave_the_machine(tmp_path):
    Impatient.root = tmp_path / "machines"
    registry.register(Impatient)
    try:
        tc = Trainctl()
        with pytest.raises(KeyboardInterrupt):
            run(
                tc,
                "impatient",
                CreateResourceOptions(),
                TrainingJob([sys.executable, "-c", "pass"]),
                outputs=[],
                output_dir=tmp_path / "out",
            )
        assert tc.store.resources() == []
    finally:
        registry.unregister("impatient")


def begin_create_and_die(provider: str, name: str) -> None:
    """An intent written by a create process that is gone (killed before it recorded
    anything)."""
    code = f"from trainctl.store import Store; Store().begin_create({provider!r}, {name!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_terminate_settles_an_interrupted_create(recoverable, trainctl_home):
    tc = Trainctl()
    begin_create_and_die("recoverable", "ghost")  # died before the provider answered
    with pytest.raises(OperationFailed, match="may still be carried out"):
        tc.terminate("ghost")  # a create call it sent may still be in flight
    trainctl_home.joinpath("config.toml").write_text("[create]\nrequest_grace = 0\n")
    with pytest.raises(NotFound, match="never made"):
        tc.terminate("ghost")
    assert tc.store.resources() == []
    begin_create_and_die("recoverable", "real")
    made = Recoverable().create_resource(CreateResourceOptions(name="real"))
    assert tc.terminate("real").state.value == "terminated"
    assert made.id not in {m.id for m in Recoverable().list_resources()}


def test_concurrent_create_of_one_name_is_bad_input(tmp_path, monkeypatch):
    tc = Trainctl()
    tc.store.begin_create("local", "same")
    monkeypatch.setattr(tc.store, "_find", lambda column, value: None)  # lost the race
    with pytest.raises(BadInput, match="already exists"):
        tc.store.begin_create("local", "same")


class Leaky(FakeProvider):
    """Fails a create after making a machine it could not release."""

    name = "leaky"
    root: Path
    known_id = True

    def __init__(self) -> None:
        super().__init__(self.root)

    def launch(self, plan, *, spot, progress=None):
        made = super().launch(plan, spot=spot)
        raise ResourceLeft(
            "not ready; terminating it failed too",
            resource_id=made.id if self.known_id else None,
        )


@pytest.mark.parametrize("known_id", [True, False])
def test_a_machine_left_by_a_failed_create_keeps_its_record(tmp_path, known_id):
    Leaky.root, Leaky.known_id = tmp_path / "machines", known_id
    registry.register(Leaky)
    try:
        tc = Trainctl()
        with pytest.raises(ResourceLeft) as e:
            tc.create("leaky", CreateResourceOptions(name="exp"))
        assert "trainctl terminate exp" in e.value.hint
        record = tc.store.resource("exp")
        if known_id:
            assert record.confirmed and record.state == "unknown"
            assert record.id.startswith("fake-")
        else:
            assert not record.confirmed  # the intent stays for list --refresh to settle
    finally:
        registry.unregister("leaky")


def test_reconnect_retries_while_the_machine_runs_then_gives_up_or_says_lost(tmp_path):
    from trainctl.following import FollowGaveUp, MachineLost, Reconnect

    provider = FakeProvider(tmp_path / "machines")
    made = provider.create_resource(CreateResourceOptions(name="exp"))
    tc = Trainctl()
    intent = tc.store.begin_create("fake", "exp")
    record = tc.store.finish_create(intent, made)
    said: list[str] = []
    follow = Reconnect(provider, record, "j-1", report=said.append, timeout=0.5, max_interval=0.1)
    drop = RemoteError("connection refused")
    started = time.monotonic()
    follow(drop, 1)  # the machine runs: wait a little, then try again
    follow(drop, 2)
    assert len(said) == 2 and "reconnecting" in said[0] and "try 2" in said[1]
    time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
    with pytest.raises(FollowGaveUp, match="gave up following j-1") as gave_up:
        follow(drop, 3)
    assert "trainctl monitor j-1 --follow" in gave_up.value.hint
    provider.terminate(made.id)
    with pytest.raises(MachineLost, match="says exp is terminated"):
        follow(drop, 1)


class Preempted(FakeProvider):
    """Its machine goes away (a spot preemption) as the log is being followed."""

    name = "preempted"
    root: Path

    def __init__(self) -> None:
        super().__init__(self.root)

    def connect(self, resource_id):
        provider = self
        super().connect(resource_id)

        class Gone(LocalRemote):
            def stream(self, argv):
                provider.machines[resource_id].state = ResourceState.TERMINATED
                raise RemoteError("connection closed")

        return Gone(self.root / resource_id)


def test_run_whose_machine_is_gone_says_lost_and_exits_non_zero(tmp_path):
    Preempted.root = tmp_path / "machines"
    registry.register(Preempted)
    try:
        tc = Trainctl()
        result = run(
            tc,
            "preempted",
            CreateResourceOptions(),
            TrainingJob([sys.executable, "-c", "pass"]),
            outputs=["checkpoints"],
            output_dir=tmp_path / "out",
        )
        assert result.lost and "says" in result.lost and "terminated" in result.lost
        assert result.exit_code == 1 and result.terminated and not result.downloads
        assert tc.store.resources() == []
    finally:
        registry.unregister("preempted")

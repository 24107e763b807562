"""One connection serves the steps of an operation: a `run` asks the provider
about its machine once after the create, and installs the job runtime once."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from aws_support import set_up
from fake_lyceum import DEFAULT_KEY, DEFAULT_ORG, FakeLyceum, SshdMachines
from fakes import FakeProvider
from trainctl import registry
from trainctl.api import Trainctl, run
from trainctl.errors import NotFound, RemoteError
from trainctl.providers.aws import AwsProvider
from trainctl.providers.aws.session import client
from trainctl.providers.runpod import RunPodProvider
from trainctl.remote.local import LocalRemote
from trainctl.remote.ssh import SSHRemote
from trainctl.runtime import client as runtime_client
from trainctl.store import Store
from trainctl.types import (
    CreateResourceOptions,
    GpuSpec,
    ResourceState,
    ResourceStatus,
    TrainingJob,
)

TRAIN = "import os; os.makedirs('a', exist_ok=True); open('a/w', 'w').write('1'); open('b', 'w')"


@pytest.fixture
def installs(monkeypatch) -> list[str]:
    """The runtime installs sent over SSH (one entry each)."""
    sent: list[str] = []
    original = SSHRemote.run

    def counted(self, argv, **kw):
        if runtime_client._INSTALL in argv:
            sent.append(self.description)
        return original(self, argv, **kw)

    monkeypatch.setattr(SSHRemote, "run", counted)
    return sent


def pod_reads(fake, since: int = 0) -> int:
    return sum(
        1
        for method, path, _ in fake.log[since:]
        if method == "GET" and path.startswith("/v2/pods/") and path.count("/") == 3
    )


def two_output_run(tc: Trainctl, provider: str, options, tmp_path: Path, at_created=None):
    result = run(
        tc,
        provider,
        options,
        TrainingJob([sys.executable if provider == "fake" else "python3", "-c", TRAIN]),
        outputs=["a", "b"],
        output_dir=tmp_path / "out",
        on_created=at_created,
    )
    assert result.exit_code == 0, result.to_dict()
    assert sorted(Path(p).name for p in result.downloads) == ["a", "b"]
    return result


def test_runpod_run_asks_about_its_pod_once_after_the_create(runpod_cli, installs, tmp_path):
    created_at: list[int] = []
    two_output_run(
        Trainctl(),
        "runpod",
        CreateResourceOptions(gpu=GpuSpec.parse("RTX4090")),
        tmp_path,
        at_created=lambda _record: created_at.append(len(runpod_cli.log)),
    )
    # the one after the create is the release's
    assert pod_reads(runpod_cli, created_at[0]) <= 1
    assert len(installs) <= 1


def test_a_later_command_reaches_a_pod_from_its_fresh_record(runpod_cli):
    record = Trainctl().create("runpod", CreateResourceOptions(gpu=GpuSpec.parse("RTX4090")))
    before = len(runpod_cli.log)
    job = Trainctl().train(record.name, TrainingJob(["true"]))  # as another process would
    assert pod_reads(runpod_cli, before) == 0
    Trainctl().monitor(job.job_id, follow=True)
    assert pod_reads(runpod_cli, before) == 0
    Trainctl().terminate(record.name)


def test_a_stale_record_asks_the_provider(runpod_cli, trainctl_home):
    record = Trainctl().create("runpod", CreateResourceOptions(gpu=GpuSpec.parse("RTX4090")))
    with sqlite3.connect(trainctl_home / "state.db") as db:
        db.execute("UPDATE resources SET updated_at='2020-01-01T00:00:00+00:00'")
    before = len(runpod_cli.log)
    Trainctl().jobs(record.name)
    assert pod_reads(runpod_cli, before) == 1
    Trainctl().terminate(record.name)


def test_a_pod_stopped_behind_its_record_says_start_it(runpod_cli):
    record = Trainctl().create("runpod", CreateResourceOptions(gpu=GpuSpec.parse("RTX4090")))
    RunPodProvider().stop(record.id)  # not through trainctl: its record still says running
    pod = runpod_cli.pods[record.id]
    pod.machine.destroy()  # nothing answers at a stopped pod's address
    with pytest.raises(RemoteError, match="is stopped") as stopped:
        Trainctl().train(record.name, TrainingJob(["true"]))
    assert f"trainctl start {record.id}" in (stopped.value.hint or "")
    Trainctl().terminate(record.name)


class QuickAws(AwsProvider):
    """The aws provider with short polls, counting its DescribeInstances calls."""

    described: list[str] = []

    def __init__(self) -> None:
        super().__init__(progress=lambda _line: None, poll_interval=0.1)
        client(self.session()[0], "ec2", self.region).meta.events.register(
            "provide-client-params.ec2.DescribeInstances",
            lambda **_: QuickAws.described.append("DescribeInstances"),
        )


@pytest.fixture
def quick_aws(monkeypatch):
    set_up(monkeypatch, "ca-central-1")
    monkeypatch.setattr(runtime_client, "POLL_SECONDS", 0.2)
    QuickAws.described = []
    registry.register(QuickAws, "aws")
    yield QuickAws
    registry.unregister("aws")


def test_aws_run_describes_its_instance_once_after_the_create(quick_aws, tmp_path):
    created_at: list[int] = []
    two_output_run(
        Trainctl(),
        "aws",
        CreateResourceOptions(gpu=GpuSpec("T4", 1)),
        tmp_path,
        at_created=lambda _record: created_at.append(len(quick_aws.described)),
    )
    assert len(quick_aws.described) - created_at[0] <= 1


def test_a_later_command_reaches_an_instance_from_its_fresh_record(quick_aws):
    record = Trainctl().create("aws", CreateResourceOptions(gpu=GpuSpec("T4", 1)))
    before = len(quick_aws.described)
    assert Trainctl().jobs(record.name) == []  # as another process would
    assert len(quick_aws.described) == before
    Trainctl().terminate(record.name)


def test_lyceum_run_asks_about_its_vm_once_after_the_create(sshd, monkeypatch, installs, tmp_path):
    with FakeLyceum(machines=SshdMachines(sshd)) as fake:
        monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", fake.url)
        monkeypatch.setenv("LYCEUM_API_KEY", DEFAULT_KEY)
        monkeypatch.setenv("LYCEUM_ORG", DEFAULT_ORG)
        created_at: list[int] = []
        two_output_run(
            Trainctl(),
            "lyceum",
            CreateResourceOptions(gpu=GpuSpec("A100", 1)),
            tmp_path,
            at_created=lambda _record: created_at.append(len(fake.requests)),
        )
        reads = [r for r in fake.requests[created_at[0] :] if r.path.endswith("/status")]
        assert len(reads) <= 1  # the release's
        assert len(installs) <= 1


class Flaky(FakeProvider):
    """Counts its connections; its machines fail every command while ``broken``."""

    name = "flaky"
    root: Path
    broken = False
    connects = 0

    def __init__(self) -> None:
        super().__init__(self.root)

    def connect(self, resource_id):
        super().connect(resource_id)
        Flaky.connects += 1

        class Remote(LocalRemote):
            def run(self, argv, **kw):
                if Flaky.broken:
                    raise RemoteError("connection reset")
                return super().run(argv, **kw)

        return Remote(self.root / resource_id)


@pytest.fixture
def flaky(tmp_path):
    Flaky.root, Flaky.broken, Flaky.connects = tmp_path / "machines", False, 0
    registry.register(Flaky)
    yield Flaky
    registry.unregister("flaky")


def test_a_failed_step_drops_the_connection(flaky):
    tc = Trainctl()
    record = tc.create("flaky", CreateResourceOptions())
    job = tc.train(record.name, TrainingJob([sys.executable, "-c", "pass"]))
    tc.monitor(job.job_id, follow=True)
    assert flaky.connects == 1
    flaky.broken = True
    with pytest.raises(RemoteError, match="connection reset"):
        tc.jobs(record.name)
    flaky.broken = False
    assert [j.job_id for j in tc.jobs(record.name)] == [job.job_id]
    assert flaky.connects == 2


def test_a_missing_output_keeps_the_connection(flaky, tmp_path):
    tc = Trainctl()
    record = tc.create("flaky", CreateResourceOptions())
    tc.train(record.name, TrainingJob([sys.executable, "-c", "pass"]))
    with pytest.raises(NotFound):
        tc.download(record.name, "never-written", tmp_path / "out")
    tc.jobs(record.name)
    assert flaky.connects == 1


def test_a_store_made_before_connections_were_recorded_gains_them(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE resources (id TEXT PRIMARY KEY, provider TEXT NOT NULL,"
            " name TEXT NOT NULL UNIQUE, instance_type TEXT, gpu TEXT,"
            " gpu_count INTEGER NOT NULL DEFAULT 0, spot INTEGER NOT NULL DEFAULT 0,"
            " region TEXT, created_at TEXT NOT NULL, launched_at TEXT, price_per_hour REAL,"
            " state TEXT NOT NULL, reason TEXT, updated_at TEXT NOT NULL);"
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, resource_id TEXT NOT NULL,"
            " provider TEXT NOT NULL, command TEXT NOT NULL, started_at TEXT, ended_at TEXT,"
            " exit_code INTEGER, status TEXT NOT NULL);"
            "INSERT INTO resources (id, provider, name, created_at, state, updated_at)"
            " VALUES ('p1', 'runpod', 'old', '2026-01-01T00:00:00+00:00', 'running',"
            " '2026-01-01T00:00:00+00:00');"
        )
    store = Store(path)
    assert store.resource("old").last_seen() is None
    status = ResourceStatus("p1", "runpod", ResourceState.RUNNING, ssh_host="h", ssh_port=22)
    store.update_status(status)
    seen = store.resource("old").last_seen()
    assert seen is not None and (seen.ssh_host, seen.ssh_port, seen.state) == (
        "h",
        22,
        ResourceState.RUNNING,
    )
    assert "connection" not in store.resource("old").to_dict()

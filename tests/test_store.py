from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from cli_helpers import Result
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
    assert store.resources() == []
    run = store.job("j-1")  # a run outlives its machine, ended by its release
    assert run is not None and run.machine == "b"
    assert (run.status, run.ended_by, run.how) == ("cancelled", "released", "released")
    assert run.ended_at is not None
    assert store.machine("r-2").ended_at is not None


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


# -- a store that cannot be used, through the CLI -----------------------------------

UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def run_cli(*args: str, unprivileged: bool = False, timeout: float = 60) -> Result:
    """The real entry point; ``unprivileged`` drops root's power to write any file
    (tests run as root in CI containers), so that file modes hold as for a user."""
    prefix: list[str] = []
    if unprivileged and os.getuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: file modes do not bind root")
        prefix = UNPRIVILEGED
    p = subprocess.run(
        [*prefix, sys.executable, "-m", "trainctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def one_line(r: Result) -> str:
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err and "internal error" not in r.err
    return lines[0]


@pytest.fixture
def db(trainctl_home):
    """The CLI's state store, with one machine recorded in it."""
    made = run_cli("create", "--provider", "local", "-n", "kept")
    assert made.code == 0, made.err
    return trainctl_home / "state.db"


def test_corrupt_store_names_the_file_and_the_fix(trainctl_home):
    trainctl_home.mkdir(mode=0o700)
    (trainctl_home / "state.db").write_bytes(b"\x00garbage, not SQLite\xff" * 200)
    for args in (["list"], ["create", "--provider", "local", "-n", "x"]):
        r = run_cli(*args)
        assert r.code == 1, r.err
        line = one_line(r)
        assert "corrupt" in line and str(trainctl_home / "state.db") in line and "mv " in line
    r = run_cli("list", "--json")
    assert r.code == 1 and r.error()["type"] == "state_store"


@pytest.mark.parametrize("locking_mode", ["NORMAL", "EXCLUSIVE"])
def test_locked_store_waits_the_busy_timeout_then_says_so(db, trainctl_home, locking_mode):
    """Another process holds the write lock (in EXCLUSIVE locking mode, readers are
    shut out as well) for longer than the busy timeout."""
    (trainctl_home / "config.toml").write_text("[store]\nbusy_timeout = 0.5\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            f"c.execute('PRAGMA locking_mode={locking_mode}')\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "c.execute('UPDATE meta SET value=value')\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        r = run_cli("create", "--provider", "local", "-n", "blocked")
        assert time.monotonic() - started < 10
        assert r.code == 1, r.err
        line = one_line(r)
        assert "locked by another process" in line and str(db) in line
        listed = run_cli("list", "--json")
        if locking_mode == "NORMAL":  # readers are not held up by a writer's lock
            assert listed.code == 0 and [x["name"] for x in listed.json()["resources"]] == ["kept"]
        else:
            assert listed.code == 1 and listed.error()["type"] == "state_store"
            assert "locked by another process" in listed.error()["message"]
    finally:
        holder.kill()
        holder.wait()


def test_read_only_store_still_reads(db, trainctl_home):
    workspaces = set((trainctl_home / "local").iterdir())
    db.chmod(0o444)
    listed = run_cli("list", "--json", unprivileged=True)
    assert listed.code == 0, listed.err
    assert [x["name"] for x in listed.json()["resources"]] == ["kept"]
    # asking the provider works too: only the cached state is not written back
    for args in (["status", "kept"], ["list", "--refresh"]):
        r = run_cli(*args, unprivileged=True)
        assert r.code == 0 and "kept" in r.out, (args, r.err)
    r = run_cli("create", "--provider", "local", "-n", "new", unprivileged=True)
    assert r.code == 1
    line = one_line(r)
    assert "read-only" in line and str(db) in line and "chmod" in line
    assert set((trainctl_home / "local").iterdir()) == workspaces  # nothing was made


def test_read_only_home_still_reads(db, trainctl_home):
    trainctl_home.chmod(0o500)
    try:
        listed = run_cli("list", "--json", unprivileged=True)
        assert listed.code == 0, listed.err
        assert [x["name"] for x in listed.json()["resources"]] == ["kept"]
        r = run_cli("create", "--provider", "local", "-n", "new", unprivileged=True)
        assert r.code == 1 and str(trainctl_home) in one_line(r)
    finally:
        trainctl_home.chmod(0o700)


def test_unwritable_home_is_a_one_line_error(tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o500)
    monkeypatch.setenv("TRAINCTL_HOME", str(parent / "home"))
    try:
        for args in (["list"], ["create", "--provider", "local", "-n", "x"]):
            r = run_cli(*args, unprivileged=True)
            assert r.code == 1, r.err
            line = one_line(r)
            assert str(parent / "home") in line and "TRAINCTL_HOME" in line
    finally:
        parent.chmod(0o700)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_and_store_are_private(trainctl_home):
    assert run_cli("list").code == 0
    assert mode(trainctl_home) == 0o700 and mode(trainctl_home / "state.db") == 0o600
    # SQLite's journal files take the database file's mode
    store = Store()
    store.begin_create("fake", "open")
    journals = [trainctl_home / f"state.db{s}" for s in ("-wal", "-shm")]
    assert all(p.exists() and mode(p) == 0o600 for p in journals)
    store.close()


def test_existing_home_and_store_are_tightened(trainctl_home):
    assert run_cli("list").code == 0
    trainctl_home.chmod(0o755)
    (trainctl_home / "state.db").chmod(0o644)
    r = run_cli("list")
    assert r.code == 0 and r.err == ""
    assert mode(trainctl_home) == 0o700 and mode(trainctl_home / "state.db") == 0o600


def test_a_home_holding_other_things_keeps_its_mode(trainctl_home):
    trainctl_home.mkdir(mode=0o755)
    trainctl_home.chmod(0o755)
    (trainctl_home / "notes.txt").write_text("the user's own")
    assert run_cli("list").code == 0
    assert mode(trainctl_home) == 0o755 and mode(trainctl_home / "state.db") == 0o600


def test_terminate_on_a_read_only_store_releases_nothing(db, trainctl_home):
    """A release whose record could not be dropped would leave the store wrong: the
    terminate is refused before the provider is asked."""
    (workspace,) = (trainctl_home / "local").iterdir()
    db.chmod(0o444)
    r = run_cli("terminate", "kept", "-y", unprivileged=True)
    assert r.code == 1
    assert "read-only" in one_line(r)
    assert workspace.is_dir()
    db.chmod(0o600)
    assert run_cli("terminate", "kept", "-y").code == 0


def test_train_on_a_read_only_store_starts_nothing(db, trainctl_home, tmp_path):
    """A job started whose record could not be written would run unknown to `jobs`
    and `run`'s clean-up: the train is refused before anything reaches the machine."""
    (workspace,) = (trainctl_home / "local").iterdir()
    db.chmod(0o444)
    r = run_cli("train", "kept", "--no-sync", "-d", "--", "echo", "hi", unprivileged=True)
    assert r.code == 1, r.err
    assert "read-only" in one_line(r)
    assert not list(workspace.rglob("j-*")), "a job was started"
    db.chmod(0o600)
    assert run_cli("train", "kept", "--no-sync", "-d", "--", "echo", "hi").code == 0
    assert list(workspace.rglob("j-*"))


def test_stop_on_a_read_only_store_leaves_the_pod_running(runpod_cli, trainctl_home):
    """A stop whose new state cannot be recorded is refused before the provider acts."""
    made = run_cli("create", "-p", "runpod", "-n", "rp", "--gpu", "RTX4090", "--json")
    assert made.code == 0, made.err
    pod_id = made.json()["id"]
    (trainctl_home / "state.db").chmod(0o444)
    r = run_cli("stop", "rp", "-y", unprivileged=True)
    assert r.code == 1 and "read-only" in one_line(r)
    assert runpod_cli.pods[pod_id].data["status"] == "RUNNING"
    (trainctl_home / "state.db").chmod(0o600)
    assert run_cli("terminate", "rp", "-y").code == 0


def test_runs_keep_the_offer_the_job_and_the_code(tmp_path):
    from trainctl.types import TrainingJob

    store = Store(tmp_path / "s.db")
    store.finish_create(store.begin_create("fake", "exp", spot=True), status("r-3"))
    job = TrainingJob(["python", "t.py"], env={"LR": "0.1", "WANDB_KEY": "secret"})
    started = datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    store.add_job(
        store.resource("exp"),
        TrainingStatus("j-9", "r-3", ExecutionStatus.RUNNING, started_at=started),
        job=job,
        git=("abc123", True),
    )
    run = store.job("j-9")
    assert (run.machine, run.instance_type, run.price_per_hour) == ("exp", "t", 2.0)
    assert run.command == ["python", "t.py"] and run.env_names == ["LR", "WANDB_KEY"]
    assert (run.git_commit, run.git_dirty, run.checkpoint_dir) == ("abc123", True, "checkpoints")
    ended = datetime(2026, 1, 1, 2, 30, tzinfo=timezone.utc)
    store.update_job(
        TrainingStatus("j-9", "r-3", ExecutionStatus.CANCELLED, ended_at=ended, ended_by="deadline")
    )
    run = store.job("j-9")
    assert run.how == "deadline" and run.hours() == 1.5 and run.cost() == 3.0
    assert "secret" not in sqlite3.connect(tmp_path / "s.db").iterdump().__str__()
    assert [r.id for r in store.runs(status="deadline")] == ["j-9"]
    assert store.runs(machine="other") == []


def test_history_leaves_stopped_time_out_of_the_cost(tmp_path, monkeypatch):
    import trainctl.store as store_module

    clock = {"hour": 1}
    monkeypatch.setattr(store_module, "_now", lambda: f"2026-01-01T{clock['hour']:02d}:00:00+00:00")
    store = Store(tmp_path / "s.db")
    store.finish_create(store.begin_create("fake", "exp"), status("r-4"))  # launched 00:00
    started = status("r-4", ResourceState.RUNNING)
    started.launch_time = None
    for hour, seen in (
        (2, ResourceState.STOPPED),
        (3, None),
        (5, ResourceState.STOPPED),
        (6, None),
    ):
        clock["hour"] = hour
        store.update_status(status("r-4", seen) if seen else started)
    clock["hour"] = 7
    store.forget("r-4")
    machine = store.machine("r-4")
    assert machine.hours() == 2 + 2 + 1 and machine.cost() == 10.0
    assert machine.ended_at == "2026-01-01T07:00:00+00:00"


def test_a_store_made_before_runs_were_kept_gains_them(tmp_path):
    path = tmp_path / "s.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE resources (id TEXT PRIMARY KEY, provider TEXT NOT NULL,
            name TEXT NOT NULL UNIQUE, instance_type TEXT, gpu TEXT,
            gpu_count INTEGER NOT NULL DEFAULT 0, spot INTEGER NOT NULL DEFAULT 0,
            region TEXT, created_at TEXT NOT NULL, launched_at TEXT, price_per_hour REAL,
            state TEXT NOT NULL, reason TEXT, updated_at TEXT NOT NULL);
        CREATE TABLE jobs (id TEXT PRIMARY KEY, resource_id TEXT NOT NULL,
            provider TEXT NOT NULL, command TEXT NOT NULL, started_at TEXT, ended_at TEXT,
            exit_code INTEGER, status TEXT NOT NULL);
        INSERT INTO jobs VALUES ('j-old', 'r-0', 'fake', '["x"]', NULL, NULL, 0, 'completed');
        """
    )
    old.close()
    store = Store(path)
    run = store.job("j-old")
    assert run.status == "completed" and run.machine is None and run.env_names == []
    assert [r.id for r in store.runs()] == ["j-old"] and store.machines() == []


def test_the_amount_a_provider_says_it_billed_is_the_machine_cost(tmp_path):
    store = Store(tmp_path / "s.db")
    store.finish_create(store.begin_create("fake", "vm"), status("r-5"))
    seen = status("r-5")
    seen.details["billed_usd"] = 1.25  # Lyceum's croesus_billed
    store.update_status(seen)
    assert store.machine("r-5").cost() == 1.25
    assert store.machine("r-5").cost(since=datetime(2026, 6, 1, tzinfo=timezone.utc)) != 1.25

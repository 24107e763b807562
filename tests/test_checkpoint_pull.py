"""Checkpoints brought home while the job runs (checkpoints.py), through the real CLI
on the local provider and on the ssh fake, and the puller itself against this machine.

Every checkpoint the jobs here write ends with the SHA-256 of what comes before it, so
a file at home that is partial (or torn between two versions) is caught whenever it is
looked at; a watcher looks every few milliseconds for the whole run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import Cli, trainctl
from trainctl import checkpoints
from trainctl.checkpoints import CheckpointPuller
from trainctl.cli import taskfile
from trainctl.errors import BadInput, RemoteError
from trainctl.remote.local import LocalRemote
from trainctl.runtime.client import JobRuntime

STEPS = 5
# Five checkpoints 0.5 s apart (the third written slowly: half, a pause, the rest),
# last.bin rewritten in place each time; then the job waits for $GO (or $WAIT seconds)
# and writes final.bin. On SIGTERM it saves interrupted.bin and exits.
JOB = f"""\
import hashlib, os, signal, sys, time
d = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(d, exist_ok=True)
def save(name, i, slow=0.0):
    body = (b"%d," % i) * (20000 + 5000 * i)
    data = body + hashlib.sha256(body).hexdigest().encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(slow)
        f.write(data[len(data) // 2 :])
    print("saved", name, repr(time.time()), flush=True)
def stop(signum, frame):
    save("interrupted.bin", 77)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
for i in range({STEPS}):
    save("ckpt-%d.bin" % i, i, slow=1.5 if i == 2 else 0.0)
    save("last.bin", i)
    time.sleep(0.5)
print("all saved", flush=True)
go = os.environ.get("GO", "")
deadline = time.time() + float(os.environ.get("WAIT", "60"))
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
save("final.bin", 99)
"""
WRITTEN = {f"ckpt-{i}.bin" for i in range(STEPS)} | {"last.bin"}


def complete(data: bytes) -> bool:
    return len(data) > 64 and hashlib.sha256(data[:-64]).hexdigest().encode() == data[-64:]


class Home:
    """Looks at a checkpoint directory at home every few milliseconds until stopped:
    when each file was first seen, and every file ever seen incomplete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first_seen: dict[str, float] = {}
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            try:
                entries = list(os.scandir(self.path))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # a download's temporary name, never a file at home
                try:
                    data = Path(entry.path).read_bytes()
                except FileNotFoundError:
                    continue
                if not complete(data):
                    self.bad.append(f"{entry.name} ({len(data)} bytes)")
                self.first_seen.setdefault(entry.name, time.time())

    def wait_for(self, names: set[str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not names <= set(self.first_seen):
            assert time.monotonic() < deadline, f"never came home: {names - set(self.first_seen)}"
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "job.py").write_text(JOB)
    return d


@pytest.fixture
def go() -> Iterator[Path]:
    """Where the test tells the job to finish: a directory the ssh machine's user can
    read too."""
    d = Path(tempfile.mkdtemp(prefix="trainctl-go-"))
    d.chmod(0o755)
    try:
        yield d / "go"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["local", "ssh"])
def machine(request) -> tuple[list[str], str]:
    """`run`'s provider options and the python that runs the job there."""
    if request.param == "local":
        return ["-p", "local"], sys.executable
    sshd = request.getfixturevalue("sshd")
    target = request.getfixturevalue("ssh_machine").target
    return ["-p", "ssh", "--host", target, "--key", str(sshd.client_key)], "python3"


def closed_at(log: list[str]) -> dict[str, float]:
    """When the job closed each checkpoint (the last time, for one written again)."""
    found = {}
    for line in "".join(log).splitlines():
        if line.startswith("saved "):
            _, name, when = line.split()
            found[name] = float(when)
    return found


def test_run_brings_each_checkpoint_home_complete_while_the_job_runs(
    machine, project, tmp_path, go
):
    provider, python = machine
    out = tmp_path / "out"
    home = Home(out / "checkpoints")
    run = Cli(
        "run", *provider, "-w", str(project), "--output-dir", str(out), "-e", f"GO={go}",
        "--", python, "job.py",
    )  # fmt: skip
    try:
        run.wait_for(run.out, "all saved")
        home.wait_for(WRITTEN)
        assert run.proc.poll() is None  # the job still waits: all this came during the run
        assert "completed" not in run.stderr
        closed = closed_at(run.out)
        go.touch()
        assert run.finish() == 0, run.stderr
    finally:
        home.stop()
    assert home.bad == [], home.bad
    landed = out / "checkpoints"
    assert sorted(p.name for p in landed.iterdir()) == sorted(WRITTEN | {"final.bin"})
    for path in landed.iterdir():
        assert complete(path.read_bytes()), path
    assert (landed / "last.bin").read_bytes().startswith(b"4,4,")  # its newest version
    # each came about a second after it was closed, not an interval (5 s) later
    late = {n: home.first_seen[n] - closed[n] for n in closed if n.startswith("ckpt-")}
    assert max(late.values()) < 4, late
    assert "checkpoint ckpt-2.bin: " in run.stderr  # one line per file brought home
    assert "checkpoints: " in "".join(run.out) and f"brought home to {landed}" in "".join(run.out)


def test_checkpoint_sync_off_brings_nothing_home(project, tmp_path, go):
    out = tmp_path / "out"
    run = Cli(
        "run", "-p", "local", "-w", str(project), "--output-dir", str(out), "-e", f"GO={go}",
        "--checkpoint-sync", "off", "--json", "--", sys.executable, "job.py",
    )  # fmt: skip
    run.wait_for(run.err, "all saved")
    time.sleep(2.5)  # with the sync on, every file would be home by now
    assert not (out / "checkpoints").exists()
    go.touch()
    assert run.finish() == 0, run.stderr
    assert not (out / "checkpoints").exists()
    result = json.loads("".join(run.out))
    assert result["checkpoints"] is None and result["job"]["status"] == "completed"


def test_ctrl_c_still_cancels_brings_the_last_checkpoint_and_releases(
    machine, project, tmp_path, go
):
    provider, python = machine
    out = tmp_path / "out"
    home = Home(out / "checkpoints")
    run = Cli(
        "run", *provider, "-w", str(project), "--output-dir", str(out), "-e", f"GO={go}",
        "--checkpoint-sync", "1s", "--grace", "20", "--", python, "job.py",
    )  # fmt: skip
    try:
        run.wait_for(run.out, "all saved")
        home.wait_for(WRITTEN)
        run.signal(signal.SIGINT)
        began = time.monotonic()
        assert run.finish() == 130, run.stderr
        took = time.monotonic() - began
    finally:
        home.stop()
    assert home.bad == [], home.bad
    # what the job saved on its SIGTERM came home in the last pass, complete
    assert complete((out / "checkpoints" / "interrupted.bin").read_bytes())
    steps = ["Ctrl-C: cancelling job", "downloading outputs", "releasing tc-", "terminated"]
    positions = [run.stderr.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), run.stderr
    assert "Traceback" not in run.stderr
    assert took < 15, run.stderr  # nothing waited for the puller's thread
    assert trainctl("list", "--json").json()["resources"] == []


def test_train_brings_checkpoints_to_trainctl_runs(project, tmp_path):
    assert trainctl("create", "-p", "local", "--name", "m1").code == 0
    r = trainctl(
        "train", "m1", "-w", str(project), "-e", "WAIT=0", "--checkpoint-sync", "1s",
        "--json", "--", sys.executable, "job.py",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 0, r.err
    result = r.json()
    landed = tmp_path / "trainctl-runs" / result["job_id"] / "checkpoints"
    assert result["checkpoints"]["dir"] == str(
        Path("trainctl-runs") / result["job_id"] / "checkpoints"
    )
    assert sorted(p.name for p in landed.iterdir()) == sorted(WRITTEN | {"final.bin"})
    assert all(complete(p.read_bytes()) for p in landed.iterdir())
    assert result["checkpoints"]["files"] >= len(WRITTEN) + 1
    assert result["checkpoints"]["bytes"] >= sum(p.stat().st_size for p in landed.iterdir())
    assert trainctl("terminate", "m1", "-y").code == 0


def test_train_with_sync_off_brings_nothing(project, tmp_path):
    assert trainctl("create", "-p", "local", "--name", "m1").code == 0
    r = trainctl(
        "train", "m1", "-w", str(project), "-e", "WAIT=0", "--checkpoint-sync", "off",
        "--output-dir", str(tmp_path / "out"), "--", sys.executable, "job.py",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert not (tmp_path / "out").exists() and "checkpoints:" not in r.out
    assert trainctl("terminate", "m1", "-y").code == 0


# --- the puller against this machine ----------------------------------------------


def _write(path: Path, version: int, *, age: float = 5.0) -> None:
    """A complete checkpoint, aged so that it is settled at once."""
    body = (b"%d," % version) * (1000 * version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body + hashlib.sha256(body).hexdigest().encode())
    past = time.time() - age
    os.utime(path, (past, past))


def _runtime(tmp_path: Path, remote_class: type[LocalRemote] = LocalRemote) -> JobRuntime:
    root = tmp_path / "machine"
    root.mkdir()
    return JobRuntime(remote_class(root), "r-1")


def _no_puller_thread() -> bool:
    return not any(t.name == "trainctl-checkpoints" for t in threading.enumerate())


def test_a_file_that_changed_during_its_download_is_taken_again(tmp_path):
    class ChangesUnderTheCopy(LocalRemote):
        changes = 1

        def get(self, src, dest, *, progress=None):
            landed = super().get(src, dest, progress=progress)
            if self.changes:
                self.changes -= 1
                _write(Path(src), 2)  # rewritten while it was on its way
            return landed

    rt = _runtime(tmp_path, ChangesUnderTheCopy)
    source = tmp_path / "machine" / "ckpts"
    _write(source / "sub" / "model.bin", 1)
    lines: list[str] = []
    dest = tmp_path / "home"
    puller = CheckpointPuller(rt, str(source), dest, interval=0.2, progress=lines.append)
    puller.start()
    deadline = time.monotonic() + 10
    while not puller.result.files:
        assert time.monotonic() < deadline, lines
        time.sleep(0.02)
    pulled = puller.finish()
    landed = dest / "sub" / "model.bin"
    assert landed.read_bytes() == (source / "sub" / "model.bin").read_bytes()
    assert landed.read_bytes().startswith(b"2,2,")  # the torn copy never landed
    assert (pulled.files, pulled.bytes) == (1, landed.stat().st_size)
    (transfer,) = [ln for ln in lines if ln.startswith("checkpoint ")]
    assert transfer.startswith(
        f"checkpoint sub/model.bin: {landed.stat().st_size / 1000:.1f} kB in "
    )
    assert sorted(p.name for p in landed.parent.iterdir()) == ["model.bin"]
    assert _no_puller_thread()


def test_a_failing_look_is_said_once_and_tried_again(tmp_path):
    class LosesTheConnection(LocalRemote):
        failures = 3

        def run(self, argv, *, input=None, timeout=None):
            if "files" in argv and self.failures:
                self.failures -= 1
                raise RemoteError("lost the connection to the machine")
            return super().run(argv, input=input, timeout=timeout)

    rt = _runtime(tmp_path, LosesTheConnection)
    source = tmp_path / "machine" / "ckpts"
    _write(source / "a.bin", 3)
    lines: list[str] = []
    puller = CheckpointPuller(
        rt, str(source), tmp_path / "home", interval=0.1, progress=lines.append
    )
    puller.start()
    deadline = time.monotonic() + 10
    while not puller.result.files:
        assert time.monotonic() < deadline, lines
        time.sleep(0.02)
    puller.finish()
    failed = [ln for ln in lines if "could not bring" in ln]
    assert failed == [
        "checkpoints: could not bring ckpts home (lost the connection to the machine); "
        "trying again every 0.1s"
    ]
    assert complete((tmp_path / "home" / "a.bin").read_bytes())
    assert _no_puller_thread()


def test_the_last_pass_waits_for_a_file_closed_just_before_the_end(tmp_path):
    rt = _runtime(tmp_path)
    source = tmp_path / "machine" / "ckpts"
    _write(source / "last.bin", 4, age=0)  # modified just now: not settled yet
    puller = CheckpointPuller(rt, str(source), tmp_path / "home", interval=5)
    began = time.monotonic()
    pulled = puller.finish()
    assert pulled.files == 1 and time.monotonic() - began < 5
    assert complete((tmp_path / "home" / "last.bin").read_bytes())


def test_files_answer_when_the_job_ends(tmp_path):
    rt = _runtime(tmp_path)
    job = rt.start([sys.executable, "-c", "import time; time.sleep(0.5)"])
    began = time.monotonic()
    first = rt.files("checkpoints")
    answer = rt.files("checkpoints", unless=first["digest"], wait=30, job=job.job_id)
    assert answer["job_ended"] is True and time.monotonic() - began < 10


def test_interval_from_the_flag_the_config_and_the_default(trainctl_home):
    assert checkpoints.interval() == checkpoints.DEFAULT_INTERVAL == 5.0
    assert checkpoints.interval("2m") == 120.0
    assert checkpoints.interval("1.5s") == 1.5
    assert checkpoints.interval("off") is None and checkpoints.interval(False) is None
    for bad in ("30", "soon", "0s"):
        with pytest.raises(BadInput, match="--checkpoint-sync"):
            checkpoints.interval(bad)
    trainctl_home.mkdir(parents=True, exist_ok=True)
    config = trainctl_home / "config.toml"
    config.write_text("[checkpoints]\ninterval = 2\n")
    assert checkpoints.interval() == 2.0
    assert checkpoints.interval("10s") == 10.0  # the flag wins
    config.write_text('[checkpoints]\ninterval = "off"\n')
    assert checkpoints.interval() is None
    config.write_text("[checkpoints]\ninterval = -1\n")
    with pytest.raises(BadInput, match=r"\[checkpoints\] interval"):
        checkpoints.interval()


def test_task_file_key(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("checkpoint_sync: off\n")  # YAML reads an unquoted off as false
    (value,) = taskfile.load(str(task)).values()
    assert checkpoints.interval(value) is None
    task.write_text("checkpoint_sync: 30s\n")
    assert checkpoints.interval(taskfile.load(str(task))["checkpoint_sync"]) == 30.0
    task.write_text("checkpoint_sync: 30\n")
    with pytest.raises(BadInput, match="give a unit"):
        checkpoints.interval(taskfile.load(str(task))["checkpoint_sync"])

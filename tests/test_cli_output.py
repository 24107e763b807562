"""What the CLI prints: names where people look for them, tables that fit, no styles
under NO_COLOR, progress on stderr, and the small refusals."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path

from cli_helpers import trainctl
from polling import wait_for

REPO = Path(__file__).resolve().parents[1]


def create(name="box"):
    r = trainctl("create", "--provider", "local", "--name", name, "--json")
    assert r.code == 0, r.err
    return r.json()


def test_providers_list_says_ssh_needs_no_credentials():
    rows = {p["name"]: p for p in trainctl("providers", "list", "--json").json()["providers"]}
    assert rows["ssh"]["credentials_needed"] is False and rows["ssh"]["credentials_present"]
    assert rows["runpod"]["credentials_needed"] is True
    table = trainctl("providers", "list").out
    ssh = next(line for line in table.splitlines() if line.startswith("ssh"))
    assert "not needed" in ssh


def test_jobs_shows_the_machine_name():
    made = create("mybox")
    r = trainctl("train", "mybox", "--no-sync", "-d", "--", "true")
    assert r.code == 0, r.err
    table = trainctl("jobs").out
    assert "MACHINE" in table and "mybox" in table and made["id"] not in table
    listed = trainctl("jobs", "--json").json()["jobs"]
    assert listed[0]["resource_name"] == "mybox" and listed[0]["resource_id"] == made["id"]


def test_terminate_json_has_the_name():
    create("named")
    r = trainctl("terminate", "named", "-y", "--json")
    assert r.code == 0 and r.json()["name"] == "named"


def test_stop_on_local_refuses_before_asking():
    create()
    r = trainctl("stop", "box", input="y\n")
    assert r.code == 2 and "cannot stop" in r.err and "pass -y" not in r.err


def test_prices_must_be_positive(tmp_path):
    r = trainctl("create", "-p", "local", "--max-price", "-1")
    assert r.code == 2 and "--max-price" in r.err
    r = trainctl("create", "-p", "local", "--max-price", "0")
    assert r.code == 2 and "--max-price" in r.err
    r = trainctl("create", "-p", "ssh", "--host", "u@h", "--price-per-hour", "-0.5")
    assert r.code == 2 and "--price-per-hour" in r.err
    task = tmp_path / "task.yaml"
    task.write_text("provider: local\nmax_price: -1\ncommand: [true]\n")
    r = trainctl("run", "-f", str(task), "--no-sync")
    assert r.code == 2 and "--max-price must be more than 0" in r.err
    assert not trainctl("list", "--json").json()["resources"]


def test_example_reads_lr_and_epochs_from_the_environment():
    """examples/train.py's options, read without torch (it is imported in main)."""
    spec = importlib.util.spec_from_file_location("example_train", REPO / "examples/train.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.options([], {"LR": "0.05", "EPOCHS": "3"})
    assert (args.lr, args.epochs) == (0.05, 3)
    assert module.options(["--lr", "0.2"], {"LR": "0.05"}).lr == 0.2
    assert module.options([], {}).lr == 0.01


# --- progress: one summary per transfer, bars on a terminal -------------------------


def test_a_first_sync_of_2000_files_prints_one_line(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    for i in range(2000):
        (project / f"f{i:04}.py").write_text(f"x = {i}\n")
    create()
    r = trainctl("train", "box", "-w", str(project), "--", "true")
    assert r.code == 0, r.err
    lines = r.err.splitlines()
    assert not [line for line in lines if "f0" in line]
    synced = [line for line in lines if line.strip().startswith("sync:")]
    assert len(synced) == 1 and "2,000 files" in synced[0] and " s" in synced[0], r.err


def ssh_box(sshd, machine) -> None:
    r = trainctl(
        "create", "-p", "ssh", "--host", machine.target, "--key", str(sshd.client_key),
        "--name", "sbox",
    )  # fmt: skip
    assert r.code == 0, r.err


def test_downloads_report_bytes_as_they_come(sshd, ssh_machine, tmp_path, monkeypatch):
    from trainctl import sync
    from trainctl.api import Trainctl
    from trainctl.remote.base import TransferEvent

    ssh_box(sshd, ssh_machine)
    size = 24 << 20
    (ssh_machine.home / "big.bin").write_bytes(os.urandom(size))
    monkeypatch.setattr(sync, "EVENT_INTERVAL", 0.0)
    events: list[str] = []
    Trainctl().download(
        "sbox", str(ssh_machine.home / "big.bin"), tmp_path / "big.bin", progress=events.append
    )
    assert all(isinstance(e, TransferEvent) and e.what == "download" for e in events)
    moving = [e for e in events if not e.finished]
    assert moving and moving[-1].total and abs(moving[-1].total - size) < size // 50
    assert events[-1].finished and events[-1].done == size and events[-1].files == 1
    # the CLI: one summary line on stderr (no terminal), stdout unaffected by --json
    r = trainctl("download", "sbox", str(ssh_machine.home / "big.bin"), str(tmp_path / "b2"))
    assert r.code == 0 and "download: 1 file, 25.2 MB in" in r.err, r.err
    j = trainctl(
        "download", "sbox", str(ssh_machine.home / "big.bin"), str(tmp_path / "b3"), "--json"
    )
    assert j.json()["local_path"] == str(tmp_path / "b3") and "download:" in j.err


def test_local_downloads_report_bytes_as_they_come(tmp_path, monkeypatch):
    """A local download of a directory reports its bytes while it copies and ends in
    the one summary line, like a download over rsync (it used to be silent)."""
    from trainctl import sync
    from trainctl.api import Trainctl
    from trainctl.remote.base import TransferEvent

    create("lbox")
    (workspace,) = (Path(os.environ["TRAINCTL_HOME"]) / "local").iterdir()
    out = workspace / "work" / "ckpt"
    out.mkdir(parents=True)
    size = 6 << 20
    (out / "a.bin").write_bytes(os.urandom(size // 2))
    (out / "b.bin").write_bytes(os.urandom(size // 2))
    monkeypatch.setattr(sync, "EVENT_INTERVAL", 0.0)
    events: list[str] = []
    Trainctl().download("lbox", str(out), tmp_path / "dl", progress=events.append)
    assert all(isinstance(e, TransferEvent) and e.what == "download" for e in events), events
    moving = [e for e in events if not e.finished]
    assert moving and moving[-1].total == size and moving[-1].done == size
    assert events[-1].finished and events[-1].done == size and events[-1].files == 2
    assert (tmp_path / "dl" / "a.bin").read_bytes() == (out / "a.bin").read_bytes()
    r = trainctl("download", "lbox", str(out / "a.bin"), str(tmp_path / "one.bin"))
    assert r.code == 0 and "download: 1 file, 3.1 MB in" in r.err, r.err


def pty_pair():
    import pty

    master, slave = pty.openpty()
    return master, slave


def read_all(master: int) -> bytes:
    import select

    data = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_transfer_on_a_terminal_is_a_bar(monkeypatch):
    from trainctl.cli.output import Output
    from trainctl.remote.base import TransferEvent

    master, slave = pty_pair()
    tty = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Output()
    out.progress(TransferEvent("download", 10 << 20, 100 << 20))
    out.progress(TransferEvent("download", 60 << 20, 100 << 20))
    out.progress(TransferEvent("download", 100 << 20, files=1, seconds=2.0, finished=True))
    tty.flush()
    shown = read_all(master).decode("utf-8", "replace")
    tty.close()
    os.close(master)
    assert "━" in shown and "MB" in shown  # rich's bar and its byte counts
    assert "download: 1 file, 104.9 MB in 2.0 s" in shown


def test_plain_progress_is_throttled(monkeypatch, capsys):
    from trainctl.cli import output
    from trainctl.remote.base import TransferEvent

    out = output.Output()
    for done in range(0, 100, 10):
        out.progress(TransferEvent("sync", done, 100))
    out.progress(TransferEvent("sync", 100, files=3, seconds=0.5, finished=True))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["  sync: 3 files, 100 B in 0.5 s"]


def run_on_pty(args: list[str], env: dict[str, str]) -> str:
    import subprocess

    master, slave = pty_pair()
    p = subprocess.Popen(
        [sys.executable, "-m", "trainctl", *args],
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm-256color", **env},
    )
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    p.wait(timeout=60)
    os.close(master)
    return data.decode("utf-8", "replace")


def test_no_color_means_no_bold_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    styled = run_on_pty(["providers", "list"], {})
    assert "\x1b[1m" in styled  # the header is bold on a terminal
    plain = run_on_pty(["providers", "list"], {"NO_COLOR": "1"})
    assert "PROVIDER" in plain and "\x1b[" not in plain


def compare(columns: str) -> list[str]:
    """The table's lines on a terminal COLUMNS wide (the notes under it left out)."""
    import re

    shown = run_on_pty(
        ["providers", "compare", "--gpu", "A100", "--hours", "5"],
        {"COLUMNS": columns, "NO_COLOR": "1"},
    )
    lines = shown.replace("\r\n", "\n").splitlines()
    return [line for line in lines if line and not re.match(r"^[\w-]+:", line)]


def test_compare_fits_80_columns():
    narrow = compare("80")
    assert len(narrow) > 3 and all(len(line.rstrip()) <= 80 for line in narrow), narrow
    assert "$/H" in narrow[0] and "TOTAL 5H" in narrow[0] and "SOURCE" not in narrow[0]
    assert "SOURCE" in compare("200")[0]
    # piped: every column, one line per row
    piped = trainctl("providers", "compare", "--gpu", "A100", "--hours", "5")
    assert "SOURCE" in piped.out.splitlines()[0]


# --- monitor --tail ------------------------------------------------------------------


def test_monitor_tail(tmp_path):
    create()
    gate = tmp_path / "gate"
    script = (
        f"for i in 1 2 3 4 5; do echo line $i; done; "
        f"until [ -e {gate} ]; do sleep 0.05; done; echo late"
    )
    r = trainctl("train", "box", "--no-sync", "-d", "--json", "--", "sh", "-c", script)
    job = r.json()["job_id"]
    wait_for(lambda: trainctl("monitor", job).out.endswith("line 5\n"), 20, 0.2)
    now = trainctl("monitor", job, "--tail", "2")
    assert now.out == "line 4\nline 5\n", now.out
    # the job writes its last line a while after the follow has started
    opener = threading.Timer(3.0, gate.touch)
    opener.start()
    followed = trainctl("monitor", job, "--tail", "1", "--follow")
    opener.join()
    assert followed.code == 0 and followed.out == "line 5\nlate\n", followed.out
    assert trainctl("monitor", job, "-n", "0").out == ""
    assert trainctl("monitor", job, "--tail", "-1").code == 2

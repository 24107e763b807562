"""What the CLI prints: names where people look for them, tables that fit, no styles
under NO_COLOR, progress on stderr, and the small refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cli_helpers import trainctl

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

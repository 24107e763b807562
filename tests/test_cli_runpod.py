"""`trainctl ... --provider runpod` through the real entry point, against the fake API."""

from __future__ import annotations

import pytest

from cli_helpers import trainctl

JOB = """\
import os, sys
os.makedirs(os.environ["TRAINCTL_CHECKPOINT_DIR"], exist_ok=True)
open(os.path.join(os.environ["TRAINCTL_CHECKPOINT_DIR"], "w.txt"), "w").write("weights")
print("args", sys.argv[1:], flush=True)
"""


@pytest.fixture
def runpod_cli(fake_runpod, trainctl_home):
    """Short polls for the subprocesses, through the provider's config table."""
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text(
        "[providers.runpod]\npoll_interval = 0.01\nready_timeout = 30\n"
    )
    return fake_runpod


def test_spot_community_pod_from_create_to_terminate(runpod_cli, tmp_path):
    fake = runpod_cli
    r = trainctl(
        "create", "--provider", "runpod", "--name", "rp1", "--gpu", "RTX4090:2",
        "--spot", "--cloud", "community", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    created = r.json()
    assert created["provider"] == "runpod" and created["name"] == "rp1"
    assert created["state"] == "running" and created["spot"] is True
    pod = fake.pods[created["id"]]
    assert pod.spot and pod.data["cloud"] == "COMMUNITY" and pod.data["name"] == "trainctl-rp1"
    assert pod.data["gpu"] == {"id": "NVIDIA GeForce RTX 4090", "count": 2}
    assert "RUNNING" in r.err  # progress went to stderr

    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [(x["name"], x["state"]) for x in listed] == [("rp1", "running")]

    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    t = trainctl("train", "rp1", "-w", str(project), "--", "python3", "job.py", "a b", "$(id)")
    assert t.code == 0, t.err
    assert "args ['a b', '$(id)']" in t.out
    d = trainctl("download", "rp1", "checkpoints", str(tmp_path / "out"), "--json")
    assert d.code == 0, d.err
    assert (tmp_path / "out" / "w.txt").read_text() == "weights"

    stopped = trainctl("stop", "rp1", "-y", "--json")
    assert stopped.code == 0 and stopped.json()["state"] == "stopped"
    started = trainctl("start", "rp1", "--json")
    assert started.code == 0 and started.json()["state"] == "running"

    gone = trainctl("terminate", "rp1", "-y", "--json")
    assert gone.code == 0, gone.err
    assert gone.json()["state"] == "terminated"
    assert fake.pods == {}
    assert trainctl("list", "--json").json()["resources"] == []


def test_on_demand_secure_create(runpod_cli):
    r = trainctl("create", "-p", "runpod", "-n", "rp2", "--gpu", "A100-80GB", "--json")
    assert r.code == 0, r.err
    pod = runpod_cli.pods[r.json()["id"]].data
    assert pod["cloud"] == "SECURE" and pod["gpu"]["id"] == "NVIDIA A100 80GB PCIe"
    assert not runpod_cli.pods[r.json()["id"]].spot


def test_unknown_gpu_exits_2_naming_close_matches(runpod_cli):
    r = trainctl("create", "--provider", "runpod", "--gpu", "A1000", "--json")
    assert r.code == 2
    error = r.error()
    assert "unknown RunPod GPU 'A1000'" in error["message"] and "A100" in error["message"]
    assert "Traceback" not in r.err
    assert runpod_cli.created == []


def test_rejected_key_exits_4(runpod_cli, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_not_the_right_one")
    r = trainctl("create", "--provider", "runpod", "--gpu", "RTX4090")
    assert r.code == 4
    assert "RunPod rejected the API key" in r.err and "RUNPOD_API_KEY" in r.err
    assert "rpa_not_the_right_one" not in r.err + r.out
    assert "Traceback" not in r.err

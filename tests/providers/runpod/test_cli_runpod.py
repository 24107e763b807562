"""`trainctl ... --provider runpod` through the real entry point, against the fake API."""

from __future__ import annotations

import json
import os
import time

import pytest

from cli_helpers import trainctl

JOB = """\
import os, sys
os.makedirs(os.environ["TRAINCTL_CHECKPOINT_DIR"], exist_ok=True)
open(os.path.join(os.environ["TRAINCTL_CHECKPOINT_DIR"], "w.txt"), "w").write("weights")
print("args", sys.argv[1:], flush=True)
"""


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


# --- corrections against the real API (issue 10) --------------------------------------


def no_internal_error(r) -> None:
    assert "internal error" not in r.err and "Traceback" not in r.err, r.err


def test_403_on_create_is_an_unavailable_offer_not_a_bad_key(runpod_cli):
    """createPod's 403: "your account cannot access the requested pool" (OpenAPI v2)."""
    runpod_cli.knobs.forbidden_clouds = {"SECURE", "COMMUNITY"}
    r = trainctl("create", "-p", "runpod", "-n", "rp3", "--gpu", "RTX4090", "--json")
    assert r.code == 1, r.err
    error = r.error()
    assert error["type"] == "no_capacity"
    assert "not available to this account" in error["message"]
    assert "RUNPOD_API_KEY" not in r.err and "API key" not in r.err
    no_internal_error(r)
    assert runpod_cli.pods == {}
    assert trainctl("list", "--json").json()["resources"] == []


def test_cheapest_moves_on_from_a_pool_the_account_cannot_use(runpod_cli):
    runpod_cli.knobs.forbidden_clouds = {"COMMUNITY"}  # the cheapest RTX 4090 offer
    r = trainctl("create", "--provider", "cheapest", "--gpu", "RTX4090", "-n", "c2", "--json")
    assert r.code == 0, r.err
    assert "no capacity on runpod NVIDIA GeForce RTX 4090 (community)" in r.err
    pod = runpod_cli.pods[r.json()["id"]].data
    assert pod["cloud"] == "SECURE"
    assert trainctl("terminate", "c2", "-y").code == 0


@pytest.mark.parametrize("bid", [[], ["--max-price", "5"]], ids=["price-query", "bid-given"])
def test_spot_gone_from_the_api_is_said_plainly(runpod_cli, bid):
    """Without a bid the spot price query meets the missing fields first; with one,
    the rental mutation does."""
    runpod_cli.knobs.spot_removed = True
    args = ["create", "-p", "runpod", "--gpu", "RTX4090", "--spot", *bid, "--json"]
    r = trainctl(*args, "-n", "s1")
    assert r.code == 1, r.err
    assert "RunPod no longer offers spot pods through its API" in r.error()["message"]
    assert "--spot-fallback" in (r.error().get("hint") or "")
    assert "Cannot query field" not in r.err and "Unknown type" not in r.err
    no_internal_error(r)
    assert runpod_cli.pods == {}

    r = trainctl(*args, "-n", "s2", "--spot-fallback")
    assert r.code == 0, r.err
    assert "RunPod no longer offers spot pods through its API" in r.err
    assert "falling back to on-demand" in r.err
    # the provider's warning reaches the user once the create is done, as a warning
    assert "\nwarning: spot: RunPod no longer offers spot pods" in r.err
    assert "rented on-demand instead (--spot-fallback)" in r.err
    created = r.json()
    assert created["spot"] is False and not runpod_cli.pods[created["id"]].spot
    assert "warnings" not in created  # never part of the stored record
    assert trainctl("terminate", "s2", "-y").code == 0


def test_a_pod_without_a_direct_ssh_endpoint_is_released_after_the_grace(runpod_cli):
    home = runpod_cli_home()
    home.write_text(home.read_text() + "direct_ssh_grace = 0.5\n")
    runpod_cli.knobs.no_direct_ssh = True
    started = time.monotonic()
    r = trainctl(
        "create", "-p", "runpod", "-n", "nd", "--gpu", "RTX4090", "--cloud", "community",
        "--json",
    )  # fmt: skip
    assert r.code == 1, r.err
    assert time.monotonic() - started < 20  # not the 30 s ready_timeout
    message = r.error()["message"]
    assert "without a direct SSH endpoint" in message and "--cloud secure" in message
    assert "was terminated" in message
    no_internal_error(r)
    assert runpod_cli.pods == {} and len(runpod_cli.created) == 1
    assert trainctl("list", "--json").json()["resources"] == []


def runpod_cli_home():
    import os
    from pathlib import Path

    return Path(os.environ["TRAINCTL_HOME"]) / "config.toml"


# --- bad answers (issue 11) -------------------------------------------------------------


@pytest.mark.parametrize("spot", [False, True], ids=["rest", "graphql"])
@pytest.mark.parametrize("kind", ["html", "cut", "empty", "null", "types"])
def test_a_create_that_acted_but_answered_garbage_keeps_the_pod(runpod_cli, spot, kind):
    """The pod exists: it is found by name and recorded, never left untracked."""
    runpod_cli.fail_next("podRentInterruptable" if spot else "createPod", f"bad-{kind}")
    args = ["create", "-p", "runpod", "-n", "g1", "--gpu", "RTX4090", "--json"]
    r = trainctl(*args, *(["--spot"] if spot else []))
    assert r.code == 0, r.err
    assert list(runpod_cli.pods) == [r.json()["id"]] and runpod_cli.created == [r.json()["id"]]
    listed = trainctl("list", "--json").json()["resources"]
    assert [(x["name"], x["id"]) for x in listed] == [("g1", r.json()["id"])]
    assert trainctl("terminate", "g1", "-y").code == 0
    assert runpod_cli.pods == {}


@pytest.mark.parametrize("spot", [False, True], ids=["rest", "graphql"])
@pytest.mark.parametrize("kind", ["html", "empty"])
def test_a_garbage_create_answer_that_cannot_be_settled_keeps_the_record(runpod_cli, spot, kind):
    # the existence check before the create passes; the lookup after it reads null
    runpod_cli.fail_next("listPods", "ok", "bad-null")
    runpod_cli.fail_next("podRentInterruptable" if spot else "createPod", f"bad-{kind}")
    args = ["create", "-p", "runpod", "-n", "g2", "--gpu", "RTX4090", "--json"]
    r = trainctl(*args, *(["--spot"] if spot else []))
    assert r.code == 1, r.err
    assert r.error()["type"] == "resource_left"
    no_internal_error(r)
    assert len(runpod_cli.pods) == 1  # it was made
    assert [x["name"] for x in trainctl("list", "--json").json()["resources"]] == ["g2"]
    refreshed = trainctl("list", "--refresh", "--json")
    assert refreshed.code == 0, refreshed.err
    (view,) = refreshed.json()["resources"]
    assert view["id"] == next(iter(runpod_cli.pods)) and view["state"] in ("starting", "running")
    assert trainctl("terminate", "g2", "-y").code == 0
    assert runpod_cli.pods == {}


@pytest.mark.parametrize("kind", ["empty", "null", "html", "types", "nothing"])
def test_a_bad_gpu_catalog_answer_is_not_cached(runpod_cli, kind):
    runpod_cli.fail_next("listGpuTypes", f"bad-{kind}")
    r = trainctl("create", "-p", "runpod", "-n", "k1", "--gpu", "RTX4090", "--json")
    assert r.code == 1, r.err
    assert "GPU catalog" in r.error()["message"] or "not JSON" in r.error()["message"]
    no_internal_error(r)
    assert runpod_cli.created == []
    r = trainctl("create", "-p", "runpod", "-n", "k1", "--gpu", "RTX4090", "--json")
    assert r.code == 0, r.err
    assert trainctl("terminate", "k1", "-y").code == 0


def test_catalog_refresh_replaces_a_stale_gpu_cache(runpod_cli, trainctl_home):
    cache = trainctl_home / "cache" / "runpod-gpus.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    one = {"id": "NVIDIA Old", "name": "Old", "memory": 8, "secure": True, "community": False}
    one |= {"price": {"secure": 0.1}, "maxCount": {"secure": 1}}
    cache.write_text(
        json.dumps({"source": runpod_cli.url, "fetched_at": time.time(), "gpus": [one]})
    )
    r = trainctl("create", "-p", "runpod", "--gpu", "RTX4090", "--json")
    assert r.code == 2 and "unknown RunPod GPU" in r.error()["message"]
    assert trainctl("catalog", "refresh", "--provider", "runpod").code == 0
    r = trainctl("create", "-p", "runpod", "-n", "k2", "--gpu", "RTX4090", "--json")
    assert r.code == 0, r.err
    assert trainctl("terminate", "k2", "-y").code == 0


@pytest.mark.parametrize("kind", ["null", "html", "cut", "empty", "types"])
def test_an_unreadable_pod_list_is_an_error_not_nothing(runpod_cli, kind):
    r = trainctl("create", "-p", "runpod", "-n", "l1", "--gpu", "RTX4090", "--json")
    assert r.code == 0, r.err
    runpod_cli.fail_next("listPods", f"bad-{kind}")
    listed = trainctl("list", "--refresh", "--json")
    assert listed.code == 0, listed.err
    no_internal_error(listed)
    (view,) = listed.json()["resources"]
    assert view["state"] == "running", view  # not marked terminated
    assert "GET /v2/pods" in json.dumps(view)
    again = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [x["state"] for x in again] == ["running"]
    assert trainctl("terminate", "l1", "-y").code == 0


def test_an_empty_pod_list_still_means_none(runpod_cli):
    r = trainctl("create", "-p", "runpod", "-n", "l2", "--gpu", "RTX4090", "--json")
    assert r.code == 0, r.err
    runpod_cli._delete(r.json()["id"])  # gone behind trainctl's back
    (view,) = trainctl("list", "--refresh", "--json").json()["resources"]
    assert view["state"] == "terminated"


def test_persistent_5xx_while_waiting_is_one_line_and_releases_the_pod(runpod_cli):
    runpod_cli.knobs.provisioning_reads = 3
    runpod_cli.fail_next("getPod", "ok", *[503] * 5)
    r = trainctl("create", "-p", "runpod", "-n", "w1", "--gpu", "RTX4090", "--json")
    assert r.code == 1, r.err
    no_internal_error(r)
    message = r.error()["message"]
    assert "503" in message and "was terminated" in message and "\n" not in message
    assert runpod_cli.pods == {}
    assert trainctl("list", "--json").json()["resources"] == []


@pytest.mark.parametrize("kind", ["html", "cut", "null", "types", "empty"])
@pytest.mark.parametrize("command", ["status", "stop"])
def test_unreadable_pod_answers_are_one_line_errors(runpod_cli, kind, command):
    r = trainctl("create", "-p", "runpod", "-n", "u1", "--gpu", "RTX4090", "--json")
    assert r.code == 0, r.err
    runpod_cli.fail_next("getPod", f"bad-{kind}")
    args = [command, "u1", "--json"] + (["-y"] if command == "stop" else [])
    r = trainctl(*args)
    assert r.code == 1, (r.code, r.err)
    no_internal_error(r)
    assert "RunPod" in r.error()["message"]
    assert trainctl("terminate", "u1", "-y").code == 0


def test_persistent_5xx_while_waiting_and_releasing_keeps_the_record(runpod_cli):
    runpod_cli.knobs.provisioning_reads = 3
    runpod_cli.fail_next("getPod", "ok", *[503] * 5)
    runpod_cli.fail_next("deletePod", *[503] * 5)
    r = trainctl("create", "-p", "runpod", "-n", "w2", "--gpu", "RTX4090", "--json")
    assert r.code == 1, r.err
    no_internal_error(r)
    error = r.error()
    assert error["type"] == "resource_left" and "may still be billing" in error["message"]
    (pod_id,) = runpod_cli.pods
    (record,) = trainctl("list", "--json").json()["resources"]
    assert (record["name"], record["id"]) == ("w2", pod_id)
    assert trainctl("terminate", "w2", "-y").code == 0
    assert runpod_cli.pods == {}


def test_debug_shows_trainctl_log_and_retries_without_the_key(runpod_cli):
    runpod_cli.fail_next("listPods", 503)
    r = trainctl("list", "--refresh", "-p", "runpod")
    assert r.code == 0, r.err
    assert "debug:" not in r.err  # the retry is silent without --debug
    runpod_cli.fail_next("listPods", 503)
    r = trainctl("list", "--refresh", "-p", "runpod", "--debug")
    assert r.code == 0, r.err
    assert "debug: trainctl.httpapi: RunPod GET /v2/pods" in r.err and "retrying" in r.err
    assert os.environ["RUNPOD_API_KEY"] not in r.err


def test_a_pod_gone_under_a_running_job_ends_its_run_lost_with_its_cost(runpod_cli, tmp_path):
    """The pod vanishes without trainctl (reclaimed, or deleted in the console): the
    next look at it ends the run as lost, and the run and the machine keep their cost."""
    fake = runpod_cli
    assert trainctl("create", "--provider", "runpod", "--name", "rp", "--gpu", "RTX4090").code == 0
    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    started = trainctl("train", "rp", "-w", str(project), "-d", "--json", "--", "python3", "job.py")
    assert started.code == 0, started.err
    job = started.json()["job_id"]
    time.sleep(1.5)
    assert trainctl("monitor", job).out == "up\n"  # read once: the copy at home has it
    (pod_id,) = fake.pods
    fake._delete(pod_id)
    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [r["state"] for r in listed] == ["terminated"]
    run = trainctl("runs", "show", job, "--json").json()
    assert run["status"] == "lost" and "says it is terminated" in run["reason"]
    assert run["price_per_hour"] > 0 and run["cost"] > 0 and run["spot"] is False
    shown = trainctl("monitor", job)
    assert shown.out == "up\n" and "incomplete" in shown.err
    totals = trainctl("runs", "--json").json()["totals"]["runpod"]
    assert totals["runs"] == 1 and totals["machines_cost"] > 0


def test_a_container_image_for_a_job_on_a_pod_is_refused_before_it_starts(runpod_cli, tmp_path):
    """A pod runs in its own image (create --image): train --image is refused there."""
    assert trainctl("create", "-p", "runpod", "-n", "rp3", "--gpu", "A100-80GB").code == 0
    r = trainctl("train", "rp3", "--no-sync", "--image", "pytorch/pytorch:2.3", "--", "true")
    assert r.code == 2
    assert "a pod runs in its own image: give --image to create or run" in r.err
    assert trainctl("jobs", "rp3", "--json").json()["jobs"] == []
    assert trainctl("terminate", "rp3", "-y").code == 0

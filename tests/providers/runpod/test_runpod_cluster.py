"""`--nodes N` on RunPod: one Instant Cluster (`POST /v2/clusters`) per group, against
the fake, whose member pods are real sshd machines. All or nothing: a member that
fails releases the whole cluster; terminating the group deletes it."""

from __future__ import annotations

import json
import signal
import time

from cli_helpers import Cli, trainctl
from polling import wait_for
from trainctl.api import Trainctl
from trainctl.groups import create_group, members
from trainctl.guards import GuardRequest
from trainctl.types import CreateResourceOptions, GpuSpec


def posts(fake, path: str) -> list[tuple[str, str, int]]:
    return [e for e in fake.log if e[0] == "POST" and e[1] == path]


def nothing_left(fake) -> None:
    assert fake.clusters == {} and fake.pods == {}
    assert trainctl("list", "--json").json()["resources"] == []
    assert Trainctl().store.groups() == []


def test_a_group_is_one_cluster_whose_nodes_are_its_ranks(runpod_cli):
    fake = runpod_cli
    r = trainctl(
        "create", "-p", "runpod", "--gpu", "A100:2", "--nodes", "3", "-n", "trio",
        "--region", "US-TX-3", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert len(posts(fake, "/v2/clusters")) == 1 and posts(fake, "/v2/pods") == []
    (cluster_id,) = fake.clusters
    cluster = fake.clusters[cluster_id]
    assert cluster["name"] == "trainctl-trio" and cluster["type"] == "TRAINING"
    assert cluster["compute"] == {
        "gpuTypeId": "NVIDIA A100 80GB PCIe",
        "gpuCountPerPod": 2,
        "podCount": 3,
    }
    assert r.json()["group"] == "trio"
    machines = r.json()["nodes"]
    assert [m["name"] for m in machines] == ["trio-0", "trio-1", "trio-2"]
    for rank, machine in enumerate(machines):
        pod = fake.pods[machine["id"]].data
        # the node is the pod RunPod gave that rank, whatever it named it
        assert pod["cluster"] == {"id": cluster_id, "rank": rank, "ip": f"10.65.0.{rank + 2}"}
        status = trainctl("status", machine["name"], "--json").json()
        assert status["private_ip"] == pod["cluster"]["ip"]
        assert pod["env"]["TRAINCTL_GROUP"] == "trio" and "PUBLIC_KEY" in pod["env"]
        assert pod["dataCenterId"] == "US-TX-3" and machine["gpu_count"] == 2
        assert not pod["name"].startswith("trainctl-")

    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert sorted((x["name"], x["state"]) for x in listed) == [
        ("trio-0", "running"),
        ("trio-1", "running"),
        ("trio-2", "running"),
    ]

    stop = trainctl("stop", "trio-1", "-y")
    assert stop.code == 2 and "cannot be stopped on its own" in stop.err, stop.err
    assert len(fake.pods) == 3

    gone = trainctl("terminate", "trio", "-y")
    assert gone.code == 0, gone.err
    assert ("DELETE", f"/v2/clusters/{cluster_id}", 204) in fake.log
    nothing_left(fake)


def test_one_node_terminated_releases_its_whole_cluster(runpod_cli):
    fake = runpod_cli
    made = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "pair")
    assert made.code == 0, made.err
    asked = trainctl("terminate", "pair-1", input="n\n")
    assert asked.code != 0 and "Terminate group pair on runpod (pair-0, pair-1)?" in asked.err
    assert len(fake.pods) == 2
    r = trainctl("terminate", "pair-1", "-y", "--json")
    assert r.code == 0, r.err
    assert "whose machines runpod releases only together: terminating the group" in r.err
    assert r.json()["group"] == "pair"
    nothing_left(fake)


def test_a_node_made_outside_a_group_record_is_released_with_its_cluster(runpod_cli):
    fake = runpod_cli
    made = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "pair")
    assert made.code == 0, made.err
    store = Trainctl().store
    store.forget_group("pair")  # e.g. a store that lost its group record
    r = trainctl("terminate", "pair-1", "-y", "--json")
    assert r.code == 0, r.err
    assert r.json()["reason"].startswith("released with its RunPod cluster")
    assert fake.clusters == {} and fake.pods == {}
    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [x["name"] for x in listed if x["state"] != "terminated"] == []


def test_node_2_of_3_failing_releases_the_cluster_and_leaves_nothing(runpod_cli):
    fake = runpod_cli
    fake.knobs.member_error_rank = 2
    r = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "3", "-n", "bad")
    assert r.code != 0
    assert "node 2 of 3 (bad-2) could not be made" in r.err, r.err
    assert "ERROR" in r.err and "released the other nodes (bad-0, bad-1)" in r.err
    assert "Traceback" not in r.err
    assert len(fake.made_clusters) == 1
    nothing_left(fake)


def test_no_capacity_for_a_cluster_makes_nothing(runpod_cli):
    fake = runpod_cli
    fake.knobs.no_capacity = True
    r = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "full")
    assert r.code != 0 and "no" in r.err and "available" in r.err, r.err
    assert fake.made_clusters == []
    nothing_left(fake)


def test_what_a_cluster_cannot_be_is_refused_before_anything_is_rented(runpod_cli):
    fake = runpod_cli
    spot = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "--spot")
    assert spot.code == 2 and "no spot pods" in spot.err, spot.err
    community = trainctl(
        "create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "--cloud", "community"
    )
    assert community.code == 2 and "community" in community.err, community.err
    capped = trainctl(
        "create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "--max-price", "0.5"
    )
    assert capped.code != 0 and "above --max-price" in capped.err, capped.err
    assert fake.made_clusters == [] and posts(fake, "/v2/clusters") == []
    nothing_left(fake)


def test_a_lost_create_answer_is_settled_by_the_clusters_name(runpod_cli):
    fake = runpod_cli
    fake.fail_next("createCluster", "lose")
    r = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "lost")
    assert r.code == 0, r.err
    assert len(fake.made_clusters) == 1  # found again, not made twice
    assert trainctl("terminate", "lost", "-y").code == 0
    nothing_left(fake)


def test_run_on_a_cluster_meets_at_node_0s_private_address(runpod_cli, tmp_path):
    fake = runpod_cli
    (tmp_path / "job.sh").write_text(
        'echo "rank=$NODE_RANK of $NNODES at $MASTER_ADDR:$MASTER_PORT ips=$TRAINCTL_NODE_IPS"\n'
        'echo "nccl=$NCCL_SOCKET_IFNAME gloo=$GLOO_SOCKET_IFNAME"\n'
    )
    r = trainctl(
        "run", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-w", str(tmp_path),
        "--", "sh", "job.sh",
    )  # fmt: skip
    assert r.code == 0, r.err
    ips = "10.65.0.2,10.65.0.3"
    assert f"[node 0] rank=0 of 2 at 10.65.0.2:29500 ips={ips}" in r.out, r.out
    assert f"[node 1] rank=1 of 2 at 10.65.0.2:29500 ips={ips}" in r.out, r.out
    # the cluster's private interface, as RunPod's docs say
    assert r.out.count("nccl=ens1 gloo=ens1") == 2, r.out
    nothing_left(fake)


def test_a_nodes_guard_deletes_the_cluster_with_the_pods_own_key(runpod_guarded):
    fake = runpod_guarded
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1), name="timed")
    options.guards = GuardRequest.parse(max_duration="3s")
    tc = Trainctl()
    made = create_group(tc, "runpod", options, 2)
    assert [r.guards["release"] for r in made] == ["terminate", "terminate"]
    (cluster_id,) = fake.clusters
    began = time.time()
    wait_for(lambda: fake.clusters == {}, timeout=30)
    assert time.time() - began < 30
    deletes = [
        key for method, path, status, key in fake.key_log
        if method == "DELETE" and path == f"/v2/clusters/{cluster_id}" and status == 204
    ]  # fmt: skip
    assert len(deletes) == 1 and deletes[0].startswith("pod:"), fake.key_log
    assert fake.pods == {}
    assert json.dumps(fake.key_log).count("user") > 0  # the create was the user's key
    assert {m.name for m in members(tc, "timed")} == {"timed-0", "timed-1"}


def test_a_cluster_whose_create_answer_was_lost_is_found_by_name_and_released(runpod_cli):
    fake = runpod_cli
    # made, then the answer is lost and the lookups that follow fail: the cluster may
    # bill, so the undo looks for it by the group's name
    fake.fail_next("createCluster", "lose")
    fake.fail_next("listClusters", "ok", *[500] * 6)
    r = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "cut")
    assert r.code != 0 and "Traceback" not in r.err
    assert "may have taken effect" in r.err, r.err
    assert len(fake.made_clusters) == 1
    nothing_left(fake)


def test_a_cluster_that_cannot_be_found_again_stays_recorded_as_its_group(runpod_cli):
    fake = runpod_cli
    fake.fail_next("createCluster", "lose")
    fake.fail_next("listClusters", "ok", *[500] * 60)
    r = trainctl("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "cut")
    assert r.code != 0 and "Traceback" not in r.err
    assert "`trainctl terminate cut` retries" in r.err, r.err
    assert len(fake.clusters) == 1
    assert [g["name"] for g in Trainctl().store.groups()] == ["cut"]
    fake.knobs.faults.clear()
    gone = trainctl("terminate", "cut", "-y")
    assert gone.code == 0, gone.err
    nothing_left(fake)


def test_ctrl_c_while_the_nodes_start_releases_the_cluster(runpod_cli):
    fake = runpod_cli
    fake.knobs.stuck = True  # the pods never leave PROVISIONING
    create = Cli("create", "-p", "runpod", "--gpu", "A100", "--nodes", "2", "-n", "wait")
    create.wait_for(create.err, "waiting for node 0 of RunPod cluster")
    assert len(fake.clusters) == 1
    create.signal(signal.SIGINT)
    assert create.finish() == 130
    assert "Traceback" not in create.stderr
    nothing_left(fake)

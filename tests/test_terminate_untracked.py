"""`terminate` of a machine the store lost: found in the providers' listings of
trainctl's own machines, by id or by trainctl name; never someone else's."""

from __future__ import annotations

import pytest

from cli_helpers import trainctl


def lose_the_store(home) -> None:
    for path in home.glob("state.db*"):
        path.unlink()


def create_pod(name: str) -> str:
    r = trainctl("create", "-p", "runpod", "--name", name, "--gpu", "RTX4090", "--json")
    assert r.code == 0, r.err
    return r.json()["id"]


@pytest.mark.parametrize("by", ["id", "name"])
def test_terminate_an_untracked_pod(runpod_cli, trainctl_home, by):
    fake = runpod_cli
    pod_id = create_pod("rp1")
    lose_the_store(trainctl_home)
    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [(x["id"], x["tracked"]) for x in listed] == [(pod_id, False)]

    ref = pod_id if by == "id" else "rp1"
    asked = trainctl("terminate", ref, input="")
    assert asked.code == 2 and "untracked machine rp1" in asked.err  # confirmed like any other
    gone = trainctl("terminate", ref, "-y")
    assert gone.code == 0, gone.err
    assert f"terminated untracked machine rp1 ({pod_id})" in gone.out
    assert fake.live_pods() == []
    again = create_pod("rp1")  # the name is free again
    assert trainctl("terminate", again, "-y").code == 0


def test_terminate_never_touches_a_pod_that_is_not_trainctls(runpod_cli):
    fake = runpod_cli
    foreign = fake.add_foreign_pod("someone-elses-pod")
    for ref in (foreign, "someone-elses-pod"):
        r = trainctl("terminate", ref, "-y")
        assert r.code == 3, r.err
        assert f"no resource {ref!r}" in r.err
    assert [p["id"] for p in fake.live_pods()] == [foreign]


def test_terminate_an_untracked_local_workspace(trainctl_home):
    made = trainctl("create", "-p", "local", "--name", "ws", "--json").json()
    lose_the_store(trainctl_home)
    gone = trainctl("terminate", "ws", "-y", "--json")
    assert gone.code == 0, gone.err
    assert gone.json()["state"] == "terminated"
    assert not (trainctl_home / "local" / made["id"]).exists()


def test_adopt_records_an_untracked_pod_again(runpod_cli, trainctl_home):
    fake = runpod_cli
    pod_id = create_pod("rp1")
    lose_the_store(trainctl_home)
    adopted = trainctl("adopt", "rp1", "--json")
    assert adopted.code == 0, adopted.err
    assert (adopted.json()["id"], adopted.json()["name"]) == (pod_id, "rp1")
    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [(x["name"], x["tracked"], x["state"]) for x in listed] == [("rp1", True, "running")]
    again = trainctl("adopt", pod_id)
    assert again.code == 2 and "already recorded" in again.err
    assert trainctl("terminate", "rp1", "-y").code == 0
    assert fake.live_pods() == []
    assert trainctl("adopt", pod_id).code == 3

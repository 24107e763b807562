"""`create_group` makes a group's nodes at once, and once one fails the others' waits
end as Ctrl-C would end them: their machines are released, the error names the node
that failed first, and nothing is left recorded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fakes import FakeProvider
from trainctl import groups
from trainctl.api import Trainctl
from trainctl.errors import NoCapacity, OperationFailed
from trainctl.provider import GroupNetwork
from trainctl.types import CreateResourceOptions, ResourceStatus
from trainctl.waiting import Seen, wait_ready


class SlowGroupProvider(GroupNetwork, FakeProvider):
    """Each node's create waits (as a cloud's does) until ``ready`` is set; the node
    of rank ``failing`` is refused at once."""

    name = "fake"

    def __init__(self, root, *, nodes: int, failing: int | None = None) -> None:
        super().__init__(root)
        self.lock = threading.Lock()
        self.in_flight = threading.Barrier(nodes, timeout=10)
        self.ready = threading.Event()
        self.failing = failing
        self.released: list[str] = []
        self.networks: list[str] = []

    def make_group_network(self, group: str, options: CreateResourceOptions, size: int):
        self.networks.append(group)
        return {"group": group}

    def release_group_network(self, group: str, network: dict[str, Any]) -> None:
        self.networks.remove(group)

    def launch(self, plan: CreateResourceOptions, *, spot: bool, progress=None) -> ResourceStatus:
        assert plan.group is not None
        if plan.group.rank == self.failing:
            raise NoCapacity("no capacity for this node")
        with self.lock:
            status = super().launch(plan, spot=spot, progress=progress)
        if self.failing is None:
            self.in_flight.wait()  # every node's create is under way at once
            self.ready.set()
        return wait_ready(
            f"fake {status.id}",
            lambda: status,
            lambda _s: Seen("ready" if self.ready.is_set() else "starting", self.ready.is_set()),
            release=lambda: self._release(status.id),
            timeout=30,
            interval=0.02,
        )

    def _release(self, resource_id: str) -> None:
        with self.lock:
            self.released.append(resource_id)
            self.terminate(resource_id)


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path / "home"))

    def make(provider: SlowGroupProvider):
        def new() -> Trainctl:
            tc = Trainctl()
            tc._providers["fake"] = provider
            return tc

        return new

    return make


def options(name: str) -> CreateResourceOptions:
    opts = CreateResourceOptions(name=name)
    opts.guards = opts.guards.parse(idle_stop="never", max_duration="never", max_spend="never")
    return opts


def test_the_nodes_are_made_at_once(api, tmp_path):
    provider = SlowGroupProvider(tmp_path, nodes=3)
    new = api(provider)
    tc = new()
    made = groups.create_group(tc, "fake", options("trio"), 3, new_api=new)
    assert [r.name for r in made] == ["trio-0", "trio-1", "trio-2"]
    assert tc.store.group("trio")["members"] == [r.id for r in made]
    assert provider.released == []
    assert groups.terminate_group(tc, "trio") == []
    assert provider.networks == []


def test_a_node_that_fails_ends_the_others_waits_and_releases_them(api, tmp_path):
    provider = SlowGroupProvider(tmp_path, nodes=3, failing=1)
    new = api(provider)
    tc = new()
    with pytest.raises(OperationFailed) as e:
        groups.create_group(tc, "fake", options("trio"), 3, new_api=new)
    assert e.value.message.startswith("node 1 of 3 (trio-1) could not be made: no capacity")
    assert "released the other nodes (trio-0, trio-2)" in e.value.message
    # the two nodes that were waiting were released by their own create, at once
    assert len(provider.released) == 2
    assert [m for m in provider.machines.values() if m.state.value == "running"] == []
    assert tc.store.resources() == [] and tc.store.groups() == []
    assert provider.networks == []

"""A fake provider: control plane in memory, machines are local directories."""

from __future__ import annotations

import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

from trainctl.capabilities import Capability
from trainctl.errors import NoCapacity, NotFound
from trainctl.provider import CheckResult, Quote, TrainingProvider
from trainctl.remote.local import LocalRemote
from trainctl.types import CostEstimate, CreateResourceOptions, ResourceState, ResourceStatus


class FakeProvider(TrainingProvider):
    name = "fake"
    capabilities = frozenset({Capability.CREATE, Capability.DOWNLOAD, Capability.SPOT})

    def __init__(self, root: Path, *, hourly: float = 1.5, capacity: int | None = None) -> None:
        self.root = root
        self.hourly = hourly
        self.capacity = capacity
        self.machines: dict[str, ResourceStatus] = {}
        self.calls: list[str] = []

    def check(self) -> CheckResult:
        return CheckResult(self.name, True, "in memory")

    def quote(self, plan: CreateResourceOptions, *, spot: bool) -> Quote:
        return Quote(self.hourly, "a fake machine")

    def launch(self, plan: CreateResourceOptions, *, spot: bool, progress=None) -> ResourceStatus:
        options = plan
        self.calls.append("create")
        live = [m for m in self.machines.values() if m.state is ResourceState.RUNNING]
        if self.capacity is not None and len(live) >= self.capacity:
            raise NoCapacity(f"provider '{self.name}' has no capacity")
        rid = "fake-" + secrets.token_hex(3)
        (self.root / rid).mkdir(parents=True)
        st = ResourceStatus(
            rid,
            self.name,
            ResourceState.RUNNING,
            name=options.name,
            launch_time=datetime.now(timezone.utc),
            cost_per_hour=self.hourly,
            spot=spot,
        )
        self.machines[rid] = st
        return st

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        try:
            return self.machines[resource_id]
        except KeyError:
            raise NotFound(f"no fake resource {resource_id}") from None

    def list_resources(self) -> list[ResourceStatus]:
        return [m for m in self.machines.values() if m.state is not ResourceState.TERMINATED]

    def terminate(self, resource_id: str) -> ResourceStatus:
        self.calls.append("terminate")
        st = self.machines.get(resource_id)
        if st is None:
            return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED)
        shutil.rmtree(self.root / resource_id, ignore_errors=True)
        st.state = ResourceState.TERMINATED
        return st

    def connect(self, resource_id: str) -> LocalRemote:
        st = self.get_resource_status(resource_id)
        if st.state is ResourceState.TERMINATED:
            raise NotFound(f"fake resource {resource_id} is terminated")
        return LocalRemote(self.root / resource_id)

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        return CostEstimate(self.name, self.hourly, hours, source="fixed fake price")

"""The ``local`` provider: a resource is a workspace directory on this machine."""

from __future__ import annotations

import json
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ..capabilities import Capability
from ..errors import NotFound
from ..home import home
from ..provider import TAG_MANAGED, TAG_NAME, CheckResult, Quote, TrainingProvider
from ..remote.base import Progress
from ..remote.local import LocalRemote
from ..runtime.client import JobRuntime
from ..types import (
    CostEstimate,
    CreateResourceOptions,
    ResourceState,
    ResourceStatus,
)

RECORD = "resource.json"


class LocalProvider(TrainingProvider):
    name = "local"
    capabilities = frozenset({Capability.CREATE, Capability.DOWNLOAD, Capability.TAGS})
    states = {"running": ResourceState.RUNNING, "terminated": ResourceState.TERMINATED}
    needs_account = False
    create_settles_at_once = True

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home() / "local"

    def check(self) -> CheckResult:
        return CheckResult(self.name, True, f"runs jobs on this machine under {self.root}")

    def _dir(self, resource_id: str) -> Path:
        if not resource_id.startswith("local-") or "/" in resource_id:
            raise NotFound(f"no local resource {resource_id}")
        return self.root / resource_id

    def quote(self, plan: CreateResourceOptions, *, spot: bool) -> Quote:
        return Quote(0.0, "this machine")

    def launch(
        self, plan: CreateResourceOptions, *, spot: bool, progress: Progress | None = None
    ) -> ResourceStatus:
        """A new workspace directory under the trainctl home."""
        options = plan
        resource_id = "local-" + secrets.token_hex(4)
        d = self._dir(resource_id)
        d.mkdir(parents=True, mode=0o700)
        record = {
            "id": resource_id,
            "name": options.name or resource_id,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "tags": {**options.tags, TAG_MANAGED: "true", TAG_NAME: options.name or resource_id},
        }
        (d / RECORD).write_text(json.dumps(record))
        if progress:
            progress(f"workspace {d} ready")
        return self._status(record, ResourceState.RUNNING)

    def _status(self, record: dict, state: ResourceState) -> ResourceStatus:
        return ResourceStatus(
            id=record["id"],
            provider=self.name,
            state=state,
            name=record.get("name"),
            instance_type="local",
            launch_time=datetime.fromisoformat(record["created_at"]),
            cost_per_hour=0.0,
            tags=record.get("tags", {}),
            raw_state=state.value,
            details={"workspace": str(self._dir(record["id"]))},
        )

    def _record(self, resource_id: str) -> dict:
        try:
            return json.loads((self._dir(resource_id) / RECORD).read_text())
        except (FileNotFoundError, ValueError):
            raise NotFound(f"no local resource {resource_id}") from None

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._status(self._record(resource_id), ResourceState.RUNNING)

    def list_resources(self) -> list[ResourceStatus]:
        if not self.root.is_dir():
            return []
        found = []
        for d in sorted(self.root.iterdir()):
            try:
                found.append(self.get_resource_status(d.name))
            except NotFound:
                continue
        return found

    def terminate(self, resource_id: str) -> ResourceStatus:
        d = self._dir(resource_id)
        if not d.exists():
            return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED)
        if (d / "jobs").is_dir():
            JobRuntime(LocalRemote(d), resource_id).cancel_all(grace=5.0)
        shutil.rmtree(d, ignore_errors=True)
        return ResourceStatus(resource_id, self.name, ResourceState.TERMINATED)

    def connect(self, resource_id: str) -> LocalRemote:
        self._record(resource_id)
        return LocalRemote(self._dir(resource_id))

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        return CostEstimate(self.name, 0.0, hours, source="this machine costs nothing extra")

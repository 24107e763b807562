"""The ``ssh`` provider: machines the user already has, reached over SSH.

``create`` registers a machine (after checking that it answers) and ``terminate``
cancels trainctl's jobs there and forgets it: the machine itself is never touched.
Each registration has a directory of its own there, ``~/.trainctl/<id>`` (code in
``work/``, checkpoints in ``work/checkpoints/``, jobs in ``jobs/``), so two projects
or two registrations of one host never share code or checkpoints. ``terminate``
leaves that directory in place: it may hold the only copy of a checkpoint.
The records live in ``$TRAINCTL_HOME/ssh/hosts.json``; every record is trainctl's
own, so the listing needs no ownership tags.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import sshkeys, sync
from ..capabilities import Capability
from ..errors import BadInput, NotFound, RemoteError, TrainctlError
from ..home import home
from ..provider import (
    TAG_MANAGED,
    TAG_NAME,
    CheckResult,
    GroupNetwork,
    ProviderFlag,
    Quote,
    TrainingProvider,
)
from ..remote.base import Progress
from ..remote.ssh import Endpoint, SSHRemote
from ..runtime.client import JobRuntime
from ..types import CostEstimate, CreateResourceOptions, ResourceState, ResourceStatus

PROBE_TIMEOUT = 20.0
#: where registrations made before each had its own directory keep their files
LEGACY_ROOT = ".trainctl"
# Prints one line per GPU where nvidia-smi exists, nothing elsewhere.
_GPU_PROBE = (
    "command -v nvidia-smi >/dev/null 2>&1 || exit 0; "
    "nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true"
)


def _price(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"bad price per hour {value!r}: expected a number, e.g. 1.20") from None
    if price < 0 or price != price:
        raise BadInput(f"bad price per hour {value!r}: it cannot be negative")
    return price


class SSHProvider(GroupNetwork, TrainingProvider):
    name = "ssh"
    capabilities = frozenset({Capability.CREATE, Capability.DOWNLOAD, Capability.TAGS})
    states = {
        "reachable": ResourceState.RUNNING,
        "unreachable": ResourceState.UNKNOWN,
        "forgotten": ResourceState.TERMINATED,
    }
    flags = (
        ProviderFlag(
            "host",
            "user@host[:port] of an existing machine; once per node for a group (node 0 "
            "first; its address as given is MASTER_ADDR).",
            metavar="HOST",
            per_node=True,
        ),
        ProviderFlag("key", "Private key file.", metavar="FILE"),
        ProviderFlag("price_per_hour", "What the machine costs ($/hour).", kind=float, minimum=0),
    )
    needs_account = False
    create_settles_at_once = True

    def __init__(self, records: Path | None = None) -> None:
        self._records_path = records

    # -- records --------------------------------------------------------------------

    @property
    def records_path(self) -> Path:
        return self._records_path or home() / "ssh" / "hosts.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The records, locked against other trainctl processes; saved on exit."""
        path = self.records_path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(str(path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._load()
            before = json.dumps(records, sort_keys=True)
            yield records
            if json.dumps(records, sort_keys=True) != before:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"hosts": records}, indent=2, sort_keys=True))
                os.replace(tmp, path)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.records_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise BadInput(
                f"{self.records_path} is not valid JSON",
                hint="fix or remove it; it lists the machines registered with the ssh provider",
            ) from None
        return data.get("hosts", {}) if isinstance(data, dict) else {}

    def _record(self, resource_id: str) -> dict[str, Any]:
        record = self._load().get(resource_id)
        if record is None:
            raise NotFound(f"no ssh resource {resource_id}")
        return record

    # -- groups (--host once per node) ------------------------------------------------

    def make_group_network(
        self, group: str, options: CreateResourceOptions, size: int
    ) -> dict[str, Any]:
        """Nothing to make: the hosts given reach each other as they are."""
        return {}

    def release_group_network(self, group: str, network: dict[str, Any]) -> None:
        return None

    # -- the provider interface -----------------------------------------------------

    def check(self) -> CheckResult:
        try:
            sshkeys.require_tool("ssh")
            sync.require_rsync()
        except TrainctlError as e:
            return CheckResult(self.name, False, str(e))
        count = len(self._load())
        return CheckResult(
            self.name,
            True,
            f"{count} machine(s) registered; reaches them with the system ssh client "
            f"(default key {sshkeys.ssh_dir() / sshkeys.KEY_NAME})",
        )

    def validate_options(self, options: CreateResourceOptions) -> None:
        super().validate_options(options)
        if not options.extra.get("host"):
            raise BadInput(
                "the ssh provider needs the machine's address",
                hint="give --host user@host[:port]",
            )
        Endpoint.parse(str(options.extra["host"]))
        _price(options.extra.get("price_per_hour"))
        key = options.extra.get("key")
        if key and not Path(str(key)).expanduser().is_file():
            raise BadInput(f"SSH key {key} does not exist")

    def quote(self, plan: CreateResourceOptions, *, spot: bool) -> Quote:
        return Quote(_price(plan.extra.get("price_per_hour")), str(plan.extra["host"]))

    def launch(
        self, plan: CreateResourceOptions, *, spot: bool, progress: Progress | None = None
    ) -> ResourceStatus:
        """Register the machine at ``--host`` once it answers over SSH."""
        options = plan
        endpoint = Endpoint.parse(str(options.extra["host"]))
        key = options.extra.get("key")
        name = options.name or str(endpoint)
        resource_id = "ssh-" + secrets.token_hex(4)
        record: dict[str, Any] = {
            "id": resource_id,
            "root": f"{LEGACY_ROOT}/{resource_id}",
            "name": name,
            "host": endpoint.host,
            "port": endpoint.port,
            "user": endpoint.user,
            "key": str(Path(str(key)).expanduser().resolve()) if key else None,
            "price_per_hour": _price(options.extra.get("price_per_hour")),
            "created_at": datetime.now(timezone.utc).isoformat(),
            "tags": {**options.tags, TAG_MANAGED: "true", TAG_NAME: name},
        }
        taken = self._registered(endpoint)
        if taken:
            raise BadInput(
                f"{endpoint} is already registered as {taken['id']} ({taken['name']})",
                hint=f"use it, or forget it first: trainctl terminate {taken['id']}",
            )
        if progress:
            progress(f"checking that {endpoint} answers")
        gpus = self._probe(self._remote(record))
        with self._locked() as records:
            records[record["id"]] = record
        if progress:
            progress(f"registered {endpoint} as {record['id']}")
        return self._status(record, "reachable", gpus)

    def _registered(self, endpoint: Endpoint) -> dict[str, Any] | None:
        for record in self._load().values():
            if str(self._endpoint(record)) == str(endpoint):
                return record
        return None

    @staticmethod
    def _endpoint(record: dict[str, Any]) -> Endpoint:
        return Endpoint(record["host"], record.get("port"), record.get("user"))

    def _remote(self, record: dict[str, Any], connect_timeout: float = 10) -> SSHRemote:
        key = record.get("key")
        return SSHRemote(
            self._endpoint(record),
            key=key,
            # without --key the user's own keys (agent, ssh config) are tried as well
            identities_only=bool(key),
            runtime_root=record.get("root", LEGACY_ROOT),
            connect_timeout=connect_timeout,
        )

    @staticmethod
    def _probe(remote: SSHRemote) -> list[str]:
        """Check that the machine runs commands; return the GPUs nvidia-smi sees."""
        r = remote.run(["sh", "-c", _GPU_PROBE], timeout=PROBE_TIMEOUT)
        if not r.ok:
            raise RemoteError(
                f"{remote.description} answered but cannot run commands: "
                f"{r.error_text() or f'exit {r.returncode}'}"
            )
        return [line.strip() for line in r.text().splitlines() if line.strip()]

    def _status(
        self,
        record: dict[str, Any],
        raw: str,
        gpus: list[str] | None = None,
        reason: str | None = None,
    ) -> ResourceStatus:
        gpus = gpus or []
        names = list(dict.fromkeys(gpus))
        return ResourceStatus(
            id=record["id"],
            provider=self.name,
            state=self.state_of(raw),
            name=record.get("name"),
            reason=reason,
            gpu=", ".join(names) or None,
            gpu_count=len(gpus),
            launch_time=datetime.fromisoformat(record["created_at"]),
            cost_per_hour=record.get("price_per_hour"),
            public_ip=record["host"],
            ssh_host=record["host"],
            ssh_port=record.get("port"),
            ssh_user=record.get("user"),
            tags=record.get("tags", {}),
            raw_state=raw,
            details={"endpoint": str(self._endpoint(record)), "key": record.get("key")},
        )

    def _live_status(self, record: dict[str, Any]) -> ResourceStatus:
        try:
            gpus = self._probe(self._remote(record, connect_timeout=5))
        except TrainctlError as e:
            return self._status(record, "unreachable", reason=str(e))
        return self._status(record, "reachable", gpus)

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._live_status(self._record(resource_id))

    def list_resources(self) -> list[ResourceStatus]:
        records = list(self._load().values())
        if len(records) <= 1:
            return [self._live_status(r) for r in records]
        with ThreadPoolExecutor(max_workers=min(8, len(records))) as pool:
            return list(pool.map(self._live_status, records))

    def terminate(self, resource_id: str) -> ResourceStatus:
        """Cancel trainctl's running jobs on the machine and forget it. The machine
        itself is left as it is, with the registration's directory (code, checkpoints,
        logs), which the reason names; an unreachable one is forgotten all the same."""
        record = self._load().get(resource_id)
        if record is None:
            return ResourceStatus(
                resource_id,
                self.name,
                self.state_of("forgotten"),
                raw_state="forgotten",
            )
        remote = self._remote(record, connect_timeout=5)
        root = record.get("root", LEGACY_ROOT)
        note = f"left ~/{root} on {self._endpoint(record)} (code, checkpoints, logs)"
        try:
            JobRuntime(remote, resource_id).cancel_all(grace=5.0)
        except TrainctlError as e:
            note = f"forgotten without cancelling its jobs: {e}; {note}"
        finally:
            remote.close()
        with self._locked() as records:
            records.pop(resource_id, None)
        return self._status(record, "forgotten", reason=note)

    def connect(self, resource_id: str) -> SSHRemote:
        return self._remote(self._record(resource_id))

    def estimate_cost(self, options: CreateResourceOptions, hours: float = 1.0) -> CostEstimate:
        price = _price(options.extra.get("price_per_hour"))
        if price is None:
            return CostEstimate(
                self.name, None, hours, source="no price declared (--price-per-hour)"
            )
        return CostEstimate(self.name, price, hours, source="declared with --price-per-hour")

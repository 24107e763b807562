"""A provider from another package is complete through its entry point alone.

The package below is installed for real (a module and its ``.dist-info`` on the
PYTHONPATH of the ``trainctl`` subprocesses), declares its own state table and its own
create flag, and keeps its "cloud" in a directory the test reads and writes as that
cloud's console would. Nothing in trainctl knows of it: the CLI, the task file, the
state normalisation and the provider listing find it through the registry.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from cli_helpers import trainctl

PLUGIN = '''\
"""Machines on shelves: each machine is a directory, its jobs run on this host."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from trainctl.capabilities import Capability
from trainctl.errors import NotFound, RemoteError
from trainctl.provider import CheckResult, ProviderFlag, Quote, TrainingProvider
from trainctl.remote.local import LocalRemote
from trainctl.runtime.client import JobRuntime
from trainctl.types import ResourceState, ResourceStatus

HOURLY = 0.25


class ShelfProvider(TrainingProvider):
    name = "shelf"
    capabilities = frozenset({Capability.CREATE, Capability.DOWNLOAD})
    states = {
        "booting": ResourceState.STARTING,
        "up": ResourceState.RUNNING,
        "gone": ResourceState.TERMINATED,
    }
    flags = (ProviderFlag("shelf", "Shelf the machine stands on.", metavar="NAME"),)

    def __init__(self) -> None:
        self.root = Path(os.environ["SHELF_CLOUD"])

    def check(self) -> CheckResult:
        return CheckResult(self.name, True, f"machines under {self.root}")

    def _path(self, resource_id: str) -> Path:
        if not resource_id.startswith("shelf-") or "/" in resource_id:
            raise NotFound(f"no shelf machine {resource_id}")
        return self.root / resource_id

    def _machine(self, resource_id: str) -> dict:
        try:
            return json.loads((self._path(resource_id) / "machine.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no shelf machine {resource_id}") from None

    def _save(self, machine: dict) -> None:
        (self._path(machine["id"]) / "machine.json").write_text(json.dumps(machine))

    def _status(self, machine: dict) -> ResourceStatus:
        return ResourceStatus(
            id=machine["id"],
            provider=self.name,
            state=self.state_of(machine["state"]),
            name=machine["name"],
            raw_state=machine["state"],
            cost_per_hour=HOURLY,
            details={"shelf": machine["shelf"]},
        )

    def quote(self, plan, *, spot: bool) -> Quote:
        return Quote(HOURLY, "a shelf machine")

    def launch(self, plan, *, spot: bool, progress=None) -> ResourceStatus:
        resource_id = "shelf-" + secrets.token_hex(4)
        machine = {
            "id": resource_id,
            "name": plan.name or resource_id,
            "shelf": plan.extra.get("shelf", "default"),
            "state": "Booting",
        }
        (self._path(resource_id) / "workspace").mkdir(parents=True)
        self._save(machine)
        machine["state"] = "Up"  # a shelf machine boots at once
        self._save(machine)
        return self._status(machine)

    def get_resource_status(self, resource_id: str) -> ResourceStatus:
        return self._status(self._machine(resource_id))

    def list_resources(self) -> list[ResourceStatus]:
        machines = [json.loads(p.read_text()) for p in sorted(self.root.glob("*/machine.json"))]
        return [self._status(m) for m in machines if m["state"] != "Gone"]

    def terminate(self, resource_id: str) -> ResourceStatus:
        machine = self._machine(resource_id)
        workspace = self._path(resource_id) / "workspace"
        if workspace.is_dir():
            JobRuntime(LocalRemote(workspace), resource_id).cancel_all(grace=5.0)
            shutil.rmtree(workspace)
        machine["state"] = "Gone"
        self._save(machine)
        return self._status(machine)

    def connect(self, resource_id: str) -> LocalRemote:
        machine = self._machine(resource_id)
        if self.state_of(machine["state"]) is not ResourceState.RUNNING:
            raise RemoteError(f"shelf machine {resource_id} is {machine['state']}")
        return LocalRemote(self._path(resource_id) / "workspace")
'''

JOB = """\
import os, sys
print("argv", sys.argv[1:], flush=True)
ckpt = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(ckpt, exist_ok=True)
open(os.path.join(ckpt, "model.txt"), "w").write("w")
sys.exit(int(os.environ.get("CODE", "0")))
"""


def install_plugin(site: Path) -> None:
    """The package as pip would leave it: the module and its dist-info, whose
    ``entry_points.txt`` names the provider in the ``trainctl.providers`` group."""
    site.mkdir()
    (site / "trainctl_shelf.py").write_text(PLUGIN)
    info = site / "trainctl_shelf-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: trainctl-shelf\nVersion: 0.1\nRequires-Dist: trainctl\n"
    )
    (info / "entry_points.txt").write_text(
        "[trainctl.providers]\nshelf = trainctl_shelf:ShelfProvider\n"
    )
    (info / "top_level.txt").write_text("trainctl_shelf\n")


@pytest.fixture
def cloud(tmp_path, monkeypatch) -> Path:
    """The shelf cloud's machines, with the plugin installed for every subprocess."""
    site = tmp_path / "site-packages"
    install_plugin(site)
    monkeypatch.setenv("PYTHONPATH", str(site))
    root = tmp_path / "shelf-cloud"
    root.mkdir()
    monkeypatch.setenv("SHELF_CLOUD", str(root))
    return root


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "job.py").write_text(JOB)
    return d


def machines(cloud: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cloud.glob("*/machine.json"))]


def set_raw_state(cloud: Path, resource_id: str, raw: str) -> None:
    path = cloud / resource_id / "machine.json"
    machine = json.loads(path.read_text())
    path.write_text(json.dumps({**machine, "state": raw}))


def test_the_plugin_is_listed_and_usable(cloud):
    r = trainctl("providers", "list", "--json")
    assert r.code == 0, r.err
    rows = {p["name"]: p for p in r.json()["providers"]}
    assert "error" not in rows["shelf"]
    assert rows["shelf"]["capabilities"] == ["create", "download"]
    c = trainctl("check", "--provider", "shelf", "--json")
    assert c.code == 0, c.err
    assert c.json()["providers"] == [
        {"provider": "shelf", "usable": True, "detail": f"machines under {cloud}"}
    ]


def test_its_flag_is_a_create_option(cloud):
    r = trainctl("create", "--help")
    assert r.code == 0, r.err
    help_text = " ".join(r.out.split())
    assert "--shelf NAME shelf: shelf the machine stands on." in help_text


def test_create_list_train_monitor_terminate(cloud, project, tmp_path):
    r = trainctl("create", "--provider", "shelf", "--shelf", "top", "--name", "box", "--json")
    assert r.code == 0, r.err
    created = r.json()
    assert created["provider"] == "shelf" and created["name"] == "box"
    [machine] = machines(cloud)
    assert machine["id"] == created["id"] and machine["shelf"] == "top"

    # the provider's own words, through its own table
    listed = trainctl("list", "--refresh", "--json")
    assert listed.code == 0, listed.err
    [row] = listed.json()["resources"]
    assert (row["id"], row["state"]) == (machine["id"], "running")
    text = trainctl("list", "--refresh")
    assert text.code == 0, text.err
    assert "running" in text.out.splitlines()[1]
    set_raw_state(cloud, machine["id"], "Booting")
    st = trainctl("status", "box", "--json").json()
    assert (st["state"], st["raw_state"]) == ("starting", "Booting")
    assert st["details"] == {"shelf": "top"}
    set_raw_state(cloud, machine["id"], "Up")
    assert trainctl("status", "box", "--json").json()["state"] == "running"

    r = trainctl(
        "train", "box", "-w", str(project), "--detach", "--json",
        "--", sys.executable, "job.py", "a b",
    )  # fmt: skip
    assert r.code == 0, r.err
    job = r.json()
    m = trainctl("monitor", job["job_id"], "--follow")
    assert m.code == 0, m.err
    assert "argv ['a b']" in m.out
    workspace = cloud / machine["id"] / "workspace"
    assert (workspace / "work" / "job.py").read_text() == JOB
    d = trainctl("download", "box", "checkpoints", str(tmp_path / "out"))
    assert d.code == 0, d.err
    assert (tmp_path / "out" / "model.txt").read_text() == "w"
    failing = trainctl(
        "train", "box", "-w", str(project), "-e", "CODE=4", "--", sys.executable, "job.py"
    )  # fmt: skip
    assert failing.code == 4, failing.err

    gone = trainctl("terminate", "box", "-y", "--json")
    assert gone.code == 0, gone.err
    assert (gone.json()["state"], gone.json()["raw_state"]) == ("terminated", "Gone")
    assert machines(cloud)[0]["state"] == "Gone" and not workspace.exists()
    # its record is gone, and the provider no longer lists it as trainctl's
    assert trainctl("list", "--refresh", "--json").json()["resources"] == []


def test_run_from_a_task_file_with_the_flag(cloud, project, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(
        textwrap.dedent(
            f"""\
            provider: shelf
            shelf: bottom
            workdir: proj
            command: [{json.dumps(sys.executable)}, job.py, x]
            outputs: [checkpoints]
            output_dir: results
            """
        )
    )
    r = trainctl("run", "-f", str(task))
    assert r.code == 0, r.err
    assert "argv ['x']" in r.out
    assert (tmp_path / "results" / "checkpoints" / "model.txt").read_text() == "w"
    [machine] = machines(cloud)
    assert (machine["shelf"], machine["state"]) == ("bottom", "Gone")


def test_its_flag_is_refused_for_another_provider(cloud):
    r = trainctl("create", "--provider", "local", "--shelf", "x")
    assert r.code == 2
    assert "provider 'local' does not take --shelf" in r.err
    assert "Traceback" not in r.err
    assert trainctl("list", "--json").json()["resources"] == []
    assert machines(cloud) == []


def test_what_it_lacks_is_refused_by_the_base_rules(cloud):
    r = trainctl("create", "--provider", "shelf", "--spot")
    assert r.code == 2
    assert "provider 'shelf' cannot rent spot (interruptible) machines" in r.err
    assert machines(cloud) == []

"""The guard on a Lyceum VM (a real sshd machine behind the fake): at its deadline the
job gets SIGTERM and its handler runs, then the VM deletes itself with an API key made
for it alone, which `terminate` revokes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from fake_lyceum import API
from polling import wait_for
from trainctl.api import Trainctl
from trainctl.guards import GuardRequest
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob


@pytest.fixture
def fake(lyceum_sshd):
    return lyceum_sshd


SAVES_ON_TERM = (
    "import signal, sys, time\n"
    "def term(*_):\n"
    "    open(sys.argv[1], 'w').write('checkpoint')\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def outside():
    """A directory the machine's user can write to (pytest's own are private)."""
    path = Path(tempfile.mkdtemp(prefix="trainctl-outside-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_deadline_ends_the_job_then_the_vm_deletes_itself(fake, outside):
    tc = Trainctl()
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1), name="due")
    options.guards = GuardRequest.parse(max_duration="8s")
    record = tc.create("lyceum", options)
    assert record.guards["release"] == "terminate"
    (issued,) = fake.issued
    assert issued.key_name == f"trainctl-guard-{record.id}" and issued.expires
    saved = outside / "saved"  # outside the machine, whose home goes with it
    job = tc.train(record.name, TrainingJob(["python3", "-c", SAVES_ON_TERM, str(saved)]))
    wait_for(lambda: not fake.live_vms(), timeout=8 + 3 + 30)
    assert saved.read_text() == "checkpoint"  # the handler ran before the release
    (delete,) = [
        r for r in fake.requests if r.method == "DELETE" and r.path.startswith(f"{API}/vms/")
    ]
    assert delete.headers.get("authorization") == f"Bearer {issued.secret}"
    assert job.job_id
    # trainctl learns the machine is gone, and revokes the machine's key
    tc.terminate(record.name)
    assert issued.revoked

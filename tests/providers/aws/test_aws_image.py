"""`run --image` on AWS (moto and the SSM agent stand-in, whose sandboxes run as this
user): a container image is the job's, on the default Deep Learning AMI; an AMI id is
the machine's image, as before."""

from __future__ import annotations

import pytest

from aws_support import instance, publish_dlami, set_up
from docker_support import containers
from trainctl import runs
from trainctl.api import Trainctl
from trainctl.api import run as run_job
from trainctl.providers.aws import AwsProvider
from trainctl.runtime import launch
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob

REGION = "sa-east-1"


@pytest.fixture
def tc(monkeypatch):
    set_up(monkeypatch, REGION)
    api = Trainctl()
    api._providers["aws"] = AwsProvider(progress=lambda _line: None, poll_interval=0.1)
    return api


def test_a_container_image_runs_the_job_on_the_default_ami(tc, image, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text("synced\n")
    job = TrainingJob(
        ["sh", "-c", 'cat data.txt; echo w > "$TRAINCTL_CHECKPOINT_DIR/e1.pt"; exit 4'],
        workdir=str(project),
        setup="echo setting up",
    )
    made = []
    result = run_job(
        tc,
        "aws",
        CreateResourceOptions(gpu=GpuSpec("T4", 1), image=image),
        job,
        outputs=[],
        output_dir=tmp_path / "out",
        sink=lambda _chunk: None,
        on_created=made.append,
    )
    assert result.exit_code == 4, result
    (record,) = made
    instance_id = record.id.rsplit("/", 1)[-1]
    assert instance(REGION, instance_id).image_id == publish_dlami(REGION)
    assert instance(REGION, instance_id).state == "terminated"
    assert (tmp_path / "out" / "checkpoints" / "e1.pt").read_text() == "w\n"
    log = (runs.run_dir(result.job.job_id) / "log").read_text()
    assert log.splitlines()[:4] == [
        "[trainctl] setup: running",
        "setting up",
        "[trainctl] setup: done; starting the command",
        "synced",
    ]
    assert containers(launch.container_name(result.job.job_id)) == []

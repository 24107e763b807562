"""Jobs in a container image (--image): `docker run` on the machine, supervised as a
bare job is (exit codes, SIGTERM then SIGKILL at cancel, no container left behind).

The tests that run containers use the ``image`` fixture (docker_support.py): without
Docker they are skipped, with the reason in pytest's summary. What the runtime asks
docker for is checked without Docker."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cli_helpers import trainctl
from docker_support import containers, may_use_docker
from trainctl.errors import BadInput
from trainctl.providers.aws.instance import AwsProvider
from trainctl.providers.local import LocalProvider
from trainctl.providers.runpod.provider import RunPodProvider
from trainctl.providers.ssh import SSHProvider
from trainctl.runtime import jobrunner, launch
from trainctl.types import CreateResourceOptions


@pytest.fixture
def box(tmp_path):
    r = trainctl("create", "-p", "local", "-n", "box")
    assert r.code == 0, r.err
    project = tmp_path / "project"
    project.mkdir()
    return project


def train(project: Path, *args: str):
    return trainctl("train", "box", "-w", str(project), *args)


# --- without Docker ---------------------------------------------------------------


def test_docker_is_asked_for_by_name_only_and_with_the_directories_mounted(tmp_path):
    root = jobrunner.Root(str(tmp_path / "root"))
    os.makedirs(root.job_dir("j-1"))
    spec = {
        "argv": ["python", "train.py", "--lr", "$(rm -rf /)"],
        "cwd": root.work + "/sub",
        "checkpoint_dir": "/data/ckpt",
        "env": {"WANDB_API_KEY": "s3cret-value"},
        "image": "pytorch/pytorch:2.3",
        "setup": "pip install -r requirements.txt",
    }
    argv = launch.Launch(root, "j-1", spec, {"WANDB_API_KEY": "s3cret-value"}).argv
    assert "s3cret-value" not in " ".join(argv)
    i = argv.index("pytorch/pytorch:2.3")
    options, inner = argv[:i], argv[i + 1 :]
    assert options[-1] == "--"
    assert options[1:3] == ["run", "--rm"] and "--init" in options
    pairs = list(zip(options, options[1:], strict=False))
    assert ("-e", "WANDB_API_KEY") in pairs and ("-e", "TRAINCTL_JOB_ID") in pairs
    assert ("-v", f"{root.work}:{root.work}") in pairs and ("-v", "/data/ckpt:/data/ckpt") in pairs
    assert ("-w", root.work + "/sub") in pairs and ("--network", "host") in pairs
    assert ("--user", f"{os.getuid()}:{os.getgid()}") in pairs
    assert ("--name", "trainctl-j-1") in pairs
    # the setup runs in the container, then the command exactly as given
    assert inner[:2] == ["sh", "-c"] and inner[-4:] == spec["argv"]
    # a job's file mounts (SkyPilot's file_mounts) are there too, once each
    spec["mounts"] = ["/data/sets", root.work + "/inside", "/data/sets"]
    argv = launch.Launch(root, "j-1", spec, {}).argv
    volumes = [b for a, b in zip(argv, argv[1:], strict=False) if a == "-v"]
    assert volumes.count("/data/sets:/data/sets") == 1
    assert not [v for v in volumes if "inside" in v]


def test_a_missing_docker_is_one_clear_error(box, monkeypatch):
    monkeypatch.setenv(launch.DOCKER_ENV, "/nonexistent/docker")
    r = train(box, "--image", "pytorch/pytorch:2.3", "--", "true")
    assert r.code == 1
    assert "--image pytorch/pytorch:2.3 needs Docker, which is not installed" in r.err
    assert "Traceback" not in r.err


def test_which_providers_run_jobs_in_a_container():
    assert SSHProvider().job_image("img:1") == "img:1"
    assert LocalProvider().job_image("img:1") == "img:1"
    assert RunPodProvider().job_image("runpod/pytorch:2") is None  # the pod's image
    aws = AwsProvider()
    assert aws.job_image("ami-0123456789abcdef0") is None  # the machine's image
    assert aws.job_image("/aws/service/ami") is None
    assert aws.job_image("nvcr.io/nvidia/pytorch:24.01-py3") == "nvcr.io/nvidia/pytorch:24.01-py3"


def test_a_container_image_on_create_is_refused_where_it_would_be_dropped():
    with pytest.raises(BadInput, match="a container image for the jobs goes to"):
        AwsProvider().validate_options(CreateResourceOptions(image="pytorch/pytorch:2.3"))
    AwsProvider().validate_options(
        CreateResourceOptions(image="ami-0123456789abcdef0", instance_type="g5.xlarge")
    )
    r = trainctl("create", "-p", "ssh", "--host", "u@h", "--image", "img:1")
    assert r.code == 2 and "`train --image` or `run --image`" in r.err, r.err


# --- with Docker ------------------------------------------------------------------


def test_a_job_in_an_image_gets_its_environment_directories_and_exit_code(box, image):
    r = trainctl(
        "run", "-p", "local", "-w", str(box), "--image", image, "-e", "WORD=a b;$c",
        "--setup", "echo setting up in the container",
        "--", "sh", "-c",
        'echo "word=$WORD cwd=$(pwd)"; echo saved > "$TRAINCTL_CHECKPOINT_DIR/e1.pt"; exit 7',
    )  # fmt: skip
    assert r.code == 7, r.err
    assert "[trainctl] setup: running" in r.out and "setting up in the container" in r.out
    assert "word=a b;$c cwd=" in r.out and "/work" in r.out
    (job_dir,) = (Path.cwd() / "trainctl-runs").iterdir()
    assert (job_dir / "checkpoints" / "e1.pt").read_text() == "saved\n"
    assert containers(launch.container_name(job_dir.name)) == []


def test_setup_runs_in_every_container(box, image):
    for _ in range(2):
        r = train(box, "--image", image, "--setup", "echo setting up", "--", "true")
        assert r.code == 0 and "setting up" in r.out, r.err


def test_cancel_reaches_the_process_in_the_container(box, image):
    r = train(
        box, "-d", "--json", "--image", image, "--",
        "sh", "-c", 'trap "echo got TERM; exit 143" TERM; echo up; while :; do sleep 0.1; done',
    )  # fmt: skip
    job = json.loads(r.out)["job_id"]
    _wait_for_log(job, "up")
    assert containers(launch.container_name(job))
    status = json.loads(trainctl("cancel", job, "--json").out)
    assert status["status"] == "cancelled" and status["exit_code"] == 143
    assert "got TERM" in trainctl("monitor", job).out
    assert containers(launch.container_name(job)) == []


def test_a_job_that_ignores_sigterm_is_killed_and_its_container_removed(box, image):
    r = train(
        box, "-d", "--json", "--image", image, "--",
        "sh", "-c", 'trap "" TERM; echo up; while :; do sleep 0.1; done',
    )  # fmt: skip
    job = json.loads(r.out)["job_id"]
    _wait_for_log(job, "up")
    status = json.loads(trainctl("cancel", job, "--grace", "1", "--json").out)
    assert status["status"] == "cancelled" and status["exit_code"] == 137
    assert containers(launch.container_name(job)) == []


def _wait_for_log(job: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in trainctl("monitor", job).out:
        assert time.monotonic() < deadline, f"{job} never printed {text!r}"
        time.sleep(0.2)


def test_on_an_ssh_machine_the_containers_files_are_the_users(image, ssh_machine, sshd, tmp_path):
    """A user of the docker group on a host reached over ssh, as a GPU box is."""
    may_use_docker(ssh_machine.user)
    project = tmp_path / "project"
    project.mkdir()
    r = trainctl(
        "run", "-p", "ssh", "--host", ssh_machine.target, "--key", str(sshd.client_key),
        "-w", str(project), "--image", image,
        "--", "sh", "-c", 'id -u; echo w > "$TRAINCTL_CHECKPOINT_DIR/e1.pt"',
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == str(ssh_machine.uid)
    (saved,) = ssh_machine.runtime_root.glob("*/work/checkpoints/e1.pt")
    assert saved.stat().st_uid == ssh_machine.uid
    (home_copy,) = (tmp_path / "trainctl-runs").glob("*/checkpoints/e1.pt")
    assert home_copy.read_text() == "w\n"

"""`run --image` on Lyceum (the fake's VMs are sshd machines whose users may use this
machine's Docker daemon): the job runs in the container, as the VM's user."""

from __future__ import annotations

from docker_support import containers, may_use_docker
from trainctl import runs
from trainctl.api import Trainctl
from trainctl.api import run as run_job
from trainctl.runtime import launch
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob


def test_a_job_runs_in_the_image_on_a_lyceum_vm(lyceum_sshd, image, tmp_path, monkeypatch):
    machines = lyceum_sshd.machines
    start = machines.start

    def start_with_docker(vm_id: str, public_key: str) -> tuple[str, int, str]:
        host, port, user = start(vm_id, public_key)
        may_use_docker(user)
        return host, port, user

    monkeypatch.setattr(machines, "start", start_with_docker)
    project = tmp_path / "project"
    project.mkdir()
    job = TrainingJob(
        ["sh", "-c", 'id -u; echo w > "$TRAINCTL_CHECKPOINT_DIR/e1.pt"'], workdir=str(project)
    )
    result = run_job(
        Trainctl(),
        "lyceum",
        CreateResourceOptions(gpu=GpuSpec("A100", 1), image=image),
        job,
        outputs=[],
        output_dir=tmp_path / "out",
        sink=lambda _chunk: None,
    )
    assert result.exit_code == 0, result
    (machine,) = machines.by_vm.values()
    assert (runs.run_dir(result.job.job_id) / "log").read_text() == f"{machine.uid}\n"
    assert (tmp_path / "out" / "checkpoints" / "e1.pt").read_text() == "w\n"
    assert lyceum_sshd.live_vms() == []
    assert containers(launch.container_name(result.job.job_id)) == []

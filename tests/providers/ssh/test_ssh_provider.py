"""The ssh provider beyond the conformance suite: registration, status, forgetting."""

from __future__ import annotations

import time

import pytest

from conformance import wait_running
from sshd import Machine, SSHServer, free_port
from trainctl import registry, sshkeys
from trainctl.errors import BadInput, CapabilityError, CredentialsError, NotFound, RemoteError
from trainctl.providers.ssh import SSHProvider
from trainctl.types import (
    CreateResourceOptions,
    ExecutionStatus,
    GpuSpec,
    ResourceState,
    TrainingJob,
)


def options(machine: Machine | None = None, **extra) -> CreateResourceOptions:
    if machine is not None:
        extra.setdefault("host", machine.target)
        extra.setdefault("key", str(machine.server.client_key))
    return CreateResourceOptions(name=extra.pop("name", None), extra=extra)


@pytest.fixture
def provider():
    return SSHProvider()


def test_registered_as_builtin():
    p = registry.get("ssh")
    assert isinstance(p, SSHProvider) and p.check().usable


@pytest.mark.parametrize(
    "opts,error,match",
    [
        (CreateResourceOptions(), BadInput, "needs the machine's address"),
        (CreateResourceOptions(extra={"host": "u@h:99999"}), BadInput, "bad SSH host"),
        (
            CreateResourceOptions(extra={"host": "u@h", "price_per_hour": "cheap"}),
            BadInput,
            "--price-per-hour must be a number",
        ),
        (CreateResourceOptions(extra={"host": "u@h", "key": "/no/such/key"}), BadInput, "key"),
        (CreateResourceOptions(extra={"host": "u@h"}, spot=True), CapabilityError, "spot"),
        (
            CreateResourceOptions(extra={"host": "u@h"}, gpu=GpuSpec("A100")),
            CapabilityError,
            "GPU",
        ),
        (
            CreateResourceOptions(extra={"host": "u@h"}, instance_type="p4d"),
            BadInput,
            "instance-type",
        ),
    ],
)
def test_bad_options_are_refused_before_contact(provider, opts, error, match):
    with pytest.raises(error, match=match):
        provider.create_resource(opts)
    assert provider.list_resources() == []


def test_unreachable_host_is_not_registered(provider, sshd: SSHServer):
    port = free_port()
    opts = options(host=f"nobody@127.0.0.1:{port}", key=str(sshd.client_key))
    with pytest.raises(RemoteError, match=f"cannot reach nobody@127.0.0.1:{port}"):
        provider.create_resource(opts)
    assert provider.list_resources() == []


def test_wrong_key_is_not_registered(provider, ssh_machine: Machine, tmp_path):
    from sshd import keygen

    other = keygen(tmp_path / "k", "other")
    with pytest.raises(CredentialsError, match=f"{ssh_machine.target} refused"):
        provider.create_resource(options(ssh_machine, key=str(other)))
    assert provider.list_resources() == []


def test_register_with_trainctl_own_key(provider, ssh_machine: Machine):
    ssh_machine.authorize(sshkeys.public_key())
    created = provider.create_resource(
        options(host=ssh_machine.target, name="box", price_per_hour="1.25")
    )
    assert created.state is ResourceState.RUNNING and created.raw_state == "reachable"
    assert (created.name, created.cost_per_hour) == ("box", 1.25)
    assert (created.ssh_user, created.ssh_host, created.ssh_port) == (
        ssh_machine.user,
        "127.0.0.1",
        ssh_machine.port,
    )
    assert created.gpu is None and created.gpu_count == 0
    rt = provider.runtime(created.id)
    assert rt.remote.run(["whoami"]).text().strip() == ssh_machine.user
    provider.terminate(created.id)


def test_the_same_machine_is_registered_once(provider, ssh_machine: Machine):
    first = provider.create_resource(options(ssh_machine))
    with pytest.raises(BadInput, match=f"already registered as {first.id}"):
        provider.create_resource(options(ssh_machine))
    provider.terminate(first.id)


def test_gpus_seen_by_nvidia_smi(provider, sshd: SSHServer):
    machine = sshd.new_machine(authorize_client_key=False)
    machine.write(
        "bin/nvidia-smi",
        "#!/bin/sh\nprintf 'NVIDIA A100-SXM4-80GB\\nNVIDIA A100-SXM4-80GB\\n'\n",
        mode=0o755,
    )
    machine.authorize(
        sshd.client_key.with_suffix(".pub").read_text(),
        options=f'environment="PATH={machine.home}/bin:/usr/local/bin:/usr/bin:/bin"',
    )
    try:
        created = provider.create_resource(options(machine))
        st = provider.get_resource_status(created.id)
        assert (st.gpu, st.gpu_count) == ("NVIDIA A100-SXM4-80GB", 2)
        provider.terminate(created.id)
    finally:
        machine.destroy()


def test_status_and_list_tell_reachable_from_unreachable(provider, sshd: SSHServer):
    up, down = sshd.new_machine(), sshd.new_machine()
    try:
        a = provider.create_resource(options(up, name="up"))
        b = provider.create_resource(options(down, name="down"))
        down.destroy()
        listed = {r.id: r for r in provider.list_resources()}
        assert listed[a.id].state is ResourceState.RUNNING
        assert listed[b.id].state is ResourceState.UNKNOWN
        assert listed[b.id].raw_state == "unreachable"
        assert down.target in (listed[b.id].reason or "")
        st = provider.get_resource_status(b.id)
        assert st.state is ResourceState.UNKNOWN
        gone = provider.terminate(b.id)  # an unreachable machine is forgotten all the same
        assert gone.state is ResourceState.TERMINATED
        assert "without cancelling" in (gone.reason or "")
        assert [r.id for r in provider.list_resources()] == [a.id]
        provider.terminate(a.id)
    finally:
        up.destroy()
        down.destroy()


def test_terminate_cancels_jobs_and_leaves_the_machine(provider, ssh_machine: Machine, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    rid = provider.create_resource(options(ssh_machine)).id
    job = provider.train(rid, TrainingJob(command=["sleep", "300"], workdir=str(tmp_path)))
    wait_running(provider, rid, job.job_id)
    before = time.monotonic()
    st = provider.terminate(rid)
    assert time.monotonic() - before < 15
    assert st.state is ResourceState.TERMINATED and st.raw_state == "forgotten"
    assert st.reason == f"left ~/.trainctl/{rid} on {ssh_machine.target} (code, checkpoints, logs)"
    assert (ssh_machine.home / ".trainctl" / rid / "work" / "keep.txt").read_text() == "mine"
    job_dir = ssh_machine.home / ".trainctl" / rid / "jobs" / job.job_id
    assert (job_dir / "cancelled").exists() and (job_dir / "exit.json").exists()
    assert not any("sleep" in _cmdline(p) for p in ssh_machine.processes())
    with pytest.raises(NotFound):
        provider.get_resource_status(rid)
    with pytest.raises(NotFound):
        provider.connect(rid)
    assert provider.terminate(rid).state is ResourceState.TERMINATED


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_records_survive_a_new_provider_instance(ssh_machine: Machine):
    rid = SSHProvider().create_resource(options(ssh_machine, name="kept")).id
    again = SSHProvider()
    assert again.get_resource_status(rid).name == "kept"
    job = again.train(rid, TrainingJob(command=["echo", "hi"]))
    out = bytearray()
    assert again.monitor(rid, job.job_id, follow=True, sink=out.extend).status is (
        ExecutionStatus.COMPLETED
    )
    assert out == b"hi\n"
    again.terminate(rid)


def test_estimate_cost_from_the_declared_price(provider):
    est = provider.estimate_cost(options(host="u@h", price_per_hour=2.5), hours=3)
    assert (est.hourly, est.total) == (2.5, 7.5)
    unknown = provider.estimate_cost(options(host="u@h"), hours=3)
    assert unknown.hourly is None and "no price" in unknown.source


def test_terminating_one_registration_leaves_anothers_jobs(provider, ssh_machine: Machine):
    """The same machine registered twice (as 127.0.0.1 and localhost): each
    registration cancels and lists only the jobs it started."""
    a = provider.create_resource(options(ssh_machine, name="a")).id
    other_target = ssh_machine.target.replace("127.0.0.1", "localhost")
    b = provider.create_resource(options(ssh_machine, name="b", host=other_target)).id
    job = provider.train(a, TrainingJob(command=["sleep", "300"]))
    wait_running(provider, a, job.job_id)
    assert [j.job_id for j in provider.jobs(b)] == []
    provider.terminate(b)
    assert provider.job_status(a, job.job_id).status is ExecutionStatus.RUNNING
    provider.terminate(a)
    assert not any("sleep" in _cmdline(p) for p in ssh_machine.processes())


RESUMING = """\
import os
ckpt = os.path.join(os.environ["TRAINCTL_CHECKPOINT_DIR"], "last.txt")
print("resumed from", open(ckpt).read() if os.path.exists(ckpt) else "nothing", flush=True)
open(ckpt, "w").write(os.environ["EXPERIMENT"])
"""


def test_each_registration_has_its_own_work_and_checkpoints(provider, ssh_machine, tmp_path):
    """Two registrations of one host (two experiments): the second one's fresh run
    starts from nothing, not from the other's checkpoint, and its code is its own."""
    a = provider.create_resource(options(ssh_machine, name="a")).id
    other_target = ssh_machine.target.replace("127.0.0.1", "localhost")
    b = provider.create_resource(options(ssh_machine, name="b", host=other_target)).id
    logs = {}
    for rid, experiment in ((a, "exp-a"), (b, "exp-b")):
        project = tmp_path / experiment
        project.mkdir()
        (project / "train.py").write_text(RESUMING)
        (project / f"{experiment}.txt").write_text(experiment)
        job = TrainingJob(
            ["python3", "train.py"], workdir=str(project), env={"EXPERIMENT": experiment}
        )
        started = provider.train(rid, job)
        out = bytearray()
        provider.monitor(rid, started.job_id, follow=True, sink=out.extend)
        logs[experiment] = out.decode()
    assert logs == {"exp-a": "resumed from nothing\n", "exp-b": "resumed from nothing\n"}
    assert sorted(p.name for p in (ssh_machine.home / ".trainctl" / b / "work").iterdir()) == [
        "checkpoints",
        "exp-b.txt",
        "train.py",
    ]
    provider.terminate(a)
    provider.terminate(b)

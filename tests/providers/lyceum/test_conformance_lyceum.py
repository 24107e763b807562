"""The Lyceum provider passes the conformance suite: the fake Lyceum API's VMs are
machines of the test SSH server, so train / monitor / download run for real."""

from __future__ import annotations

import subprocess

import pytest

from conformance import ProviderConformance
from fake_lyceum import DEFAULT_KEY, DEFAULT_ORG, FakeLyceum, SshdMachines
from trainctl import sshkeys
from trainctl.errors import NotFound, OperationFailed
from trainctl.providers.lyceum import LyceumProvider
from trainctl.types import CreateResourceOptions, GpuSpec, ResourceState


@pytest.fixture
def fake(sshd, monkeypatch):
    with FakeLyceum(machines=SshdMachines(sshd)) as f:
        monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", f.url)
        monkeypatch.setenv("LYCEUM_API_KEY", DEFAULT_KEY)
        monkeypatch.setenv("LYCEUM_ORG", DEFAULT_ORG)
        yield f


@pytest.fixture
def provider(fake):
    return LyceumProvider(poll_interval=0.02, ready_timeout=10.0, backoff=0.01)


class TestLyceumConformance(ProviderConformance):
    @pytest.fixture
    def create_options(self):
        return CreateResourceOptions(gpu=GpuSpec("A100", 1), name="conformance")

    @pytest.fixture
    def foreign_id(self, fake):
        """A VM made in the same organisation outside trainctl (no name prefix)."""
        import httpx

        return httpx.post(
            f"{fake.url}/api/v2/external/vms/create",
            headers={"Authorization": f"Bearer {DEFAULT_KEY}", "X-Org-Slug": DEFAULT_ORG},
            json={"user_public_key": sshkeys.public_key(), "display_name": "someone-elses-vm"},
        ).json()["vm_id"]

    def unknown_id(self) -> str:
        return "vm-000000000000"


def known(name: str) -> bool:
    """Whether trainctl's known_hosts holds a key for ``name`` (hashed or not)."""
    argv = ["ssh-keygen", "-F", name, "-f", str(sshkeys.known_hosts_path())]
    return subprocess.run(argv, capture_output=True).returncode == 0


def test_vm_is_a_machine_reached_with_the_key_it_was_created_with(sshd, fake, provider):
    # another machine once answered at this address, with another host key
    known_hosts = sshkeys.known_hosts_path()
    old_key = " ".join(sshd.client_key.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {old_key}\n")

    st = provider.create_resource(CreateResourceOptions(gpu=GpuSpec("A100", 1), name="m"))
    machine = fake.machines.by_vm[st.id]
    assert (st.ssh_host, st.ssh_port, st.ssh_user) == (machine.host, machine.port, machine.user)
    assert machine.home.joinpath(".ssh/authorized_keys").read_text().strip() == (
        sshkeys.public_key()
    )
    assert provider.connect(st.id).run(["whoami"]).text().strip() == machine.user
    assert known(f"[{sshd.host}]:{sshd.port}")

    provider.terminate(st.id)
    assert machine.destroyed
    assert not known(f"[{sshd.host}]:{sshd.port}")
    with pytest.raises(NotFound):
        provider.connect(st.id)


def test_connect_refuses_a_vm_that_is_not_ready(fake, provider):
    fake.provision_outcome = "stuck"
    import httpx

    vm_id = httpx.post(
        f"{fake.url}/api/v2/external/vms/create",
        headers={"Authorization": f"Bearer {DEFAULT_KEY}", "X-Org-Slug": DEFAULT_ORG},
        json={"user_public_key": sshkeys.public_key(), "display_name": "trainctl-slow"},
    ).json()["vm_id"]
    assert provider.get_resource_status(vm_id).state is ResourceState.STARTING
    with pytest.raises(OperationFailed, match="not ready for SSH"):
        provider.connect(vm_id)
    provider.terminate(vm_id)

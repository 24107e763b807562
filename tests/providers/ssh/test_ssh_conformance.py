"""The ssh provider passes the conformance suite against a real OpenSSH server."""

from __future__ import annotations

import pytest

from conformance import ProviderConformance
from trainctl.providers.ssh import SSHProvider
from trainctl.types import CreateResourceOptions


class TestSSHProvider(ProviderConformance):
    @pytest.fixture
    def provider(self):
        return SSHProvider()

    @pytest.fixture
    def create_options(self, sshd, ssh_machine):
        return CreateResourceOptions(
            name="conformance",
            extra={"host": ssh_machine.target, "key": str(sshd.client_key), "price_per_hour": 0.5},
        )

    @pytest.fixture
    def foreign_id(self):
        pytest.skip("an ssh machine is a host trainctl registered; there is no other kind")

    def unknown_id(self) -> str:
        return "ssh-00000000"

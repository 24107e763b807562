from __future__ import annotations

import pytest

# real OpenSSH server fixtures: sshd, ssh_machine, sshd_factory
pytest_plugins = ["sshd"]


@pytest.fixture(autouse=True)
def trainctl_home(tmp_path, monkeypatch):
    """Every test gets its own trainctl home and no ambient cloud credentials."""
    home = tmp_path / "trainctl-home"
    monkeypatch.setenv("TRAINCTL_HOME", str(home))
    for var in (
        "TRAINCTL_PROVIDER",
        "RUNPOD_API_KEY",
        "LYCEUM_API_KEY",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    return home

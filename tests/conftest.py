from __future__ import annotations

import pytest

# real OpenSSH server fixtures: sshd, ssh_machine, sshd_factory; the fake RunPod API
pytest_plugins = ["sshd", "fake_runpod"]


@pytest.fixture(autouse=True)
def trainctl_home(tmp_path, monkeypatch):
    """Every test gets its own trainctl home and no ambient cloud credentials: HOME
    points at an empty directory, so no provider's own config file is found."""
    home = tmp_path / "trainctl-home"
    monkeypatch.setenv("TRAINCTL_HOME", str(home))
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    for var in (
        "TRAINCTL_PROVIDER",
        "RUNPOD_API_KEY",
        "LYCEUM_API_KEY",
        "LYCEUM_ORG",
        "TRAINCTL_LYCEUM_API_URL",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    return home

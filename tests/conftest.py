from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: each provider's fake and helpers live beside its tests (tests/providers/<name>/);
#: they are imported by name (``from fake_runpod import FakeRunPod``) from anywhere
PROVIDER_TESTS = Path(__file__).resolve().parent / "providers"
for _name in ("aws", "runpod", "lyceum"):
    if str(PROVIDER_TESTS / _name) not in sys.path:
        sys.path.insert(0, str(PROVIDER_TESTS / _name))

# real OpenSSH server fixtures: sshd, ssh_machine, sshd_factory; the fake RunPod API
pytest_plugins = ["sshd", "fake_runpod", "fake_lyceum", "docker_support"]


@pytest.fixture(autouse=True)
def trainctl_home(tmp_path, monkeypatch):
    """Every test gets its own trainctl home and no ambient cloud credentials: HOME
    points at an empty directory, so no provider's own config file is found. It runs
    in its own directory too (what `train` brings home lands in ./trainctl-runs)."""
    monkeypatch.chdir(tmp_path)
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

from __future__ import annotations

import pytest

from fakes import FakeProvider
from trainctl import registry
from trainctl.capabilities import Capability, require
from trainctl.errors import BadInput, CapabilityError
from trainctl.types import CreateResourceOptions, GpuSpec


class CloudA(FakeProvider):
    name = "cloud-a"
    present = False

    @classmethod
    def credentials_present(cls) -> bool:
        return cls.present


class CloudB(CloudA):
    name = "cloud-b"


@pytest.fixture
def clouds():
    registry.register(CloudA)
    registry.register(CloudB)
    CloudA.present = CloudB.present = False
    yield
    registry.unregister("cloud-a")
    registry.unregister("cloud-b")


def test_builtin_local_is_known():
    assert "local" in registry.names()
    assert registry.get("local").name == "local"


def test_unknown_provider_names_the_known_ones():
    with pytest.raises(BadInput, match="unknown provider 'nope'.*local"):
        registry.get_class("nope")


def test_selection_order(clouds, monkeypatch, trainctl_home):
    assert registry.select() == "local"  # nothing configured, no credentials
    CloudA.present = True
    assert registry.select() == "cloud-a"  # the one with credentials
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text('default_provider = "cloud-b"\n')
    assert registry.select() == "cloud-b"  # config beats detection
    monkeypatch.setenv("TRAINCTL_PROVIDER", "local")
    assert registry.select() == "local"  # env beats config
    assert registry.select("cloud-a") == "cloud-a"  # flag beats all


def test_several_credentials_is_a_clear_error(clouds):
    CloudA.present = CloudB.present = True
    with pytest.raises(BadInput, match="cloud-a, cloud-b"):
        registry.select()


def test_entry_point_discovery(monkeypatch):
    class EP:
        name = "plugin"
        value = "fakes:FakeProvider"

    monkeypatch.setattr(registry, "_entry_points", None)
    monkeypatch.setattr(
        "importlib.metadata.entry_points",
        lambda group: [EP] if group == registry.ENTRY_POINT_GROUP else [],
    )
    assert "plugin" in registry.names()
    assert registry.get_class("plugin") is FakeProvider


def test_capability_refused_before_side_effects(tmp_path):
    provider = FakeProvider(tmp_path)
    with pytest.raises(CapabilityError, match="provider 'fake' cannot choose GPUs"):
        provider.validate_options(CreateResourceOptions(gpu=GpuSpec("A100")))
    with pytest.raises(CapabilityError, match="stop-start"):
        require(provider, Capability.STOP_START)
    assert provider.calls == []


@pytest.mark.parametrize(("module", "extra"), [("httpx", "runpod,lyceum"), ("boto3", "aws")])
def test_a_missing_sdk_names_the_extra_to_install(monkeypatch, module, extra):
    import sys

    from trainctl.errors import OperationFailed
    from trainctl.httpapi import JsonApi
    from trainctl.providers.aws.session import new_session

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(OperationFailed, match=f"'{module}' is not installed") as e:
        JsonApi("http://127.0.0.1:9", "k", service="x") if module == "httpx" else new_session()
    assert e.value.hint == f"pip install 'trainctl[{extra}]'"

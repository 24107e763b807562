"""--provider cheapest: the pick, the next offer on no capacity, bounded tries."""

from __future__ import annotations

import pytest

from fakes import FakeProvider
from trainctl import registry
from trainctl.api import Trainctl
from trainctl.capabilities import Capability
from trainctl.catalog import Offer
from trainctl.catalog.cheapest import MAX_TRIES, candidates, launch
from trainctl.errors import BadInput, NoCapacity, OperationFailed
from trainctl.provider import ProviderFlag
from trainctl.types import CreateResourceOptions, GpuSpec


class GpuFake(FakeProvider):
    capabilities = FakeProvider.capabilities | {Capability.GPU_SELECTION, Capability.INSTANCE_TYPE}
    flags = (ProviderFlag("cloud", "A cloud."), ProviderFlag("v", "A value.", kind=int))


def offers(*specs):
    return [
        Offer(p, oid, "A100-80GB", 1, on_demand=od, spot=sp, cloud=cloud, on_demand_source="t")
        for p, oid, od, sp, cloud in specs
    ]


CATALOG = offers(
    ("aws", "a1", 1.0, 0.4, ""),
    ("runpod", "r1", 1.2, None, "community"),
    ("runpod", "r2", 1.5, None, "secure"),
    ("aws", "a2", 2.0, 0.3, ""),
    ("lyceum", "l1", 3.0, None, ""),
)


@pytest.fixture
def fakes(tmp_path):
    return {
        "aws": GpuFake(tmp_path / "aws", capacity=0),
        "runpod": GpuFake(tmp_path / "runpod"),
        "lyceum": GpuFake(tmp_path / "lyceum"),
    }


def creator(fakes, seen):
    def create(name, options):
        seen.append((name, options))
        return fakes[name].create_resource(options)

    return create


def test_cheapest_offer_first_then_the_next_on_no_capacity(fakes):
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1))
    seen, reports = [], []
    found = candidates(options, CATALOG)
    status, taken = launch(options, found, creator(fakes, seen), report=reports.append)
    assert [n for n, _ in seen] == ["aws", "runpod"]
    assert taken.offer_id == "r1" and status.provider == "fake"
    # AWS takes the instance type; RunPod the GPU type id with the count, and a cloud
    aws, runpod = seen[0][1], seen[1][1]
    assert (aws.instance_type, aws.gpu, aws.extra) == ("a1", None, {})
    assert (runpod.instance_type, runpod.gpu) == (None, GpuSpec("r1", 1))
    assert runpod.extra == {"cloud": "community"}
    assert reports[0].startswith("cheapest: 5 matching offers on aws, lyceum, runpod")
    assert reports[1].startswith("picked aws a1, the cheapest: A100-80GB x1 at $1/h on-demand")
    assert reports[2].startswith("no capacity on aws a1")
    assert reports[3].startswith("picked runpod r1 (community), next cheapest (2 of 3): ")
    assert fakes["aws"].calls == ["create"] and len(fakes["runpod"].machines) == 1


def test_spot_sorts_by_spot_price_and_skips_offers_without_one(fakes):
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1), spot=True)
    assert [o.offer_id for o in candidates(options, CATALOG)] == ["a2", "a1"]
    capped = CreateResourceOptions(gpu=GpuSpec("A100", 1), spot=True, max_price=0.35)
    assert [o.offer_id for o in candidates(capped, CATALOG)] == ["a2"]


def test_cloud_choice_narrows_runpod_only():
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1), extra={"cloud": "secure"})
    assert [o.offer_id for o in candidates(options, CATALOG)] == ["a1", "r2", "a2", "l1"]


def test_a_cloud_choice_reaches_only_offers_with_clouds(fakes):
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1), extra={"cloud": "secure", "v": 1})
    seen = []
    launch(options, candidates(options, CATALOG), creator(fakes, seen), report=lambda _m: None)
    assert [(n, o.extra) for n, o in seen] == [
        ("aws", {"v": 1}),
        ("runpod", {"v": 1, "cloud": "secure"}),
    ]


def test_tries_are_bounded_and_each_is_reported(fakes):
    for fake in fakes.values():
        fake.capacity = 0
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1))
    seen, reports = [], []
    with pytest.raises(NoCapacity) as e:
        launch(options, candidates(options, CATALOG), creator(fakes, seen), report=reports.append)
    assert len(seen) == MAX_TRIES == 3
    assert "no capacity on the 3 cheapest offers (aws a1; runpod r1 (community); runpod r2" in str(
        e.value
    )
    assert "2 dearer offers not tried" in str(e.value)
    assert sum(r.startswith("no capacity on") for r in reports) == 3


def test_other_errors_stop_at_once(fakes):
    def create(name, options):
        raise OperationFailed("quota exceeded")

    options = CreateResourceOptions(gpu=GpuSpec("A100", 1))
    with pytest.raises(OperationFailed, match="quota"):
        launch(options, candidates(options, CATALOG), create, report=lambda _m: None)


def test_bad_requests():
    with pytest.raises(BadInput, match="needs --gpu"):
        candidates(CreateResourceOptions(), CATALOG)
    with pytest.raises(BadInput, match="drop --instance-type"):
        candidates(CreateResourceOptions(gpu=GpuSpec("A100"), instance_type="x"), CATALOG)
    with pytest.raises(BadInput, match="known GPUs"):
        candidates(CreateResourceOptions(gpu=GpuSpec("Z9")), CATALOG)
    options = CreateResourceOptions(gpu=GpuSpec("A100", 3))
    with pytest.raises(BadInput, match="no offer with A100:3"):
        launch(options, candidates(options, CATALOG), lambda n, o: None, report=print)


def register_fakes(monkeypatch, tmp_path, capacity: dict[str, int | None]) -> None:
    """Fake providers under catalog providers' names, with credentials present."""
    monkeypatch.setattr(registry, "_registered", {})
    for name, cap in capacity.items():

        class Registered(GpuFake):
            credentials_present = classmethod(lambda cls: True)

            def __init__(self, _name=name, _cap=cap) -> None:
                super().__init__(tmp_path / _name, capacity=_cap)

        real = registry.get_class(name)  # its offers stand, the fake rents them
        Registered.name = name
        Registered.offers, Registered.bundled_offers = real.offers, real.bundled_offers
        registry.register(Registered, name)


def test_api_create_cheapest_over_the_bundled_catalog(monkeypatch, tmp_path):
    # RunPod's L40S offers are the cheapest but full; AWS's g6e.xlarge is next
    register_fakes(monkeypatch, tmp_path, {"runpod": 0, "aws": None})
    reports = []
    tc = Trainctl()
    record = tc.create(
        "cheapest", CreateResourceOptions(gpu=GpuSpec("L40S")), progress=reports.append
    )
    assert record.provider == "aws"
    assert any(r.startswith("cheapest: not considered: lyceum: ") for r in reports)
    picks = [r for r in reports if r.startswith("picked")]
    assert [p.split(":")[0] for p in picks] == [
        "picked runpod NVIDIA L40S (community), the cheapest",
        "picked runpod NVIDIA L40S (secure), next cheapest (2 of 3)",
        "picked aws g6e.xlarge, next cheapest (3 of 3)",
    ]
    # the refused tries left no records behind
    assert [r.provider for r in tc.store.resources()] == ["aws"]


@pytest.mark.parametrize(
    ("provider", "offer", "expect"),
    [
        ("aws", Offer("aws", "p4d.24xlarge", "A100-40GB", 8), {"instance_type": "p4d.24xlarge"}),
        (
            "runpod",
            Offer("runpod", "NVIDIA A100 80GB PCIe", "A100-80GB", 2, cloud="community"),
            {"gpu": GpuSpec("NVIDIA A100 80GB PCIe", 2), "cloud": "community"},
        ),
        (
            "lyceum",
            Offer("lyceum", "a100", "A100-80GB", 1),
            {"instance_type": "a100", "gpu": GpuSpec("A100-80GB", 1)},
        ),
    ],
)
def test_offers_become_options_each_real_provider_accepts(provider, offer, expect):
    from trainctl.catalog.cheapest import options_for

    options = options_for(offer, CreateResourceOptions(gpu=GpuSpec("A100", offer.gpu_count)))
    registry.get_class(provider).validate_options(registry.get(provider), options)
    for key, value in expect.items():
        got = options.extra.get(key) if key == "cloud" else getattr(options, key)
        assert got == value

"""Catalog offers: loading, filters, order, totals and the lookups providers use."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainctl import catalog
from trainctl.catalog import sources
from trainctl.catalog.offer import Offer, format_age
from trainctl.errors import BadInput
from trainctl.types import CreateResourceOptions, GpuSpec


def offer(provider="p", offer_id="x", gpu="A100-80GB", count=1, od=1.0, spot=None, **kw):
    return Offer(provider, offer_id, gpu, count, on_demand=od, spot=spot, **kw)


CATALOG = [
    offer("aws", "p4d.24xlarge", "A100-40GB", 8, 21.96, 8.5, gpu_memory_gb=40),
    offer("aws", "p4de.24xlarge", "A100-80GB", 8, 27.45, None, gpu_memory_gb=80),
    offer("aws", "g4dn.xlarge", "T4", 1, 0.526, 0.2, gpu_memory_gb=16),
    offer(
        "runpod",
        "A100 PCIe",
        "A100-80GB",
        1,
        1.19,
        0.8,
        gpu_memory_gb=80,
        per_gpu=True,
        max_gpu_count=4,
        cloud="community",
    ),
    offer(
        "runpod",
        "A100 PCIe",
        "A100-80GB",
        1,
        1.79,
        None,
        gpu_memory_gb=80,
        per_gpu=True,
        cloud="secure",
    ),
    offer("runpod", "L40S", "L40S", 1, 0.79, None, gpu_memory_gb=48, per_gpu=True),
    offer("lyceum", "a100", "A100", 2, 3.0, 1.5),
]


def ids(offers):
    return [(o.provider, o.label, o.gpu_count) for o in offers]


def test_bundled_catalog_loads_with_a_source_for_every_price():
    loaded = {lo.provider: lo for lo in catalog.load(live=False)}
    assert loaded["aws"].origin == sources.BUNDLED and len(loaded["aws"].offers) > 40
    assert loaded["runpod"].origin == sources.BUNDLED and loaded["runpod"].offers
    assert loaded["lyceum"].offers == [] and loaded["lyceum"].origin is None
    for lo in loaded.values():
        for o in lo.offers:
            assert o.on_demand and o.on_demand > 0
            assert o.on_demand_source
            assert o.on_demand_as_of or "undated" in o.on_demand_source
            assert o.gpu in catalog.known_gpus()


def test_csv_round_trip_keeps_every_field():
    text = sources.to_csv(CATALOG)
    path = sources.cache_path("aws")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert sources.read_csv(path) == CATALOG


def test_family_query_matches_every_memory_size_and_sorts_cheapest_first():
    found = catalog.select(CATALOG, "A100")
    assert ids(found) == [
        ("runpod", "A100 PCIe (community)", 1),
        ("runpod", "A100 PCIe (secure)", 1),
        ("lyceum", "a100", 2),
        ("aws", "p4d.24xlarge", 8),
        ("aws", "p4de.24xlarge", 8),
    ]
    assert [o.on_demand for o in found] == sorted(o.on_demand for o in found)


def test_count_is_exact_and_per_gpu_offers_scale_up_to_their_maximum():
    assert ids(catalog.select(CATALOG, "A100:8")) == [
        ("runpod", "A100 PCIe (secure)", 8),  # no stated maximum
        ("aws", "p4d.24xlarge", 8),
        ("aws", "p4de.24xlarge", 8),
    ]
    two = catalog.select(CATALOG, "A100-80GB:2")
    assert ids(two) == [("runpod", "A100 PCIe (community)", 2), ("runpod", "A100 PCIe (secure)", 2)]
    assert two[0].on_demand == pytest.approx(2.38) and two[0].spot == pytest.approx(1.6)


def test_spot_keeps_only_spot_prices_and_sorts_by_them():
    assert ids(catalog.select(CATALOG, spot=True)) == [
        ("aws", "g4dn.xlarge", 1),
        ("runpod", "A100 PCIe (community)", 1),
        ("lyceum", "a100", 2),
        ("aws", "p4d.24xlarge", 8),
    ]


def test_min_gpu_memory_and_max_price():
    assert {o.gpu for o in catalog.select(CATALOG, min_gpu_memory=48)} == {"A100-80GB", "L40S"}
    assert ids(catalog.select(CATALOG, max_price=0.8)) == [
        ("aws", "g4dn.xlarge", 1),
        ("runpod", "L40S", 1),
    ]


def test_offers_without_the_sorted_price_come_last():
    cat = [offer("a", "x", od=None, spot=0.1), offer("a", "y", od=2.0)]
    assert [o.offer_id for o in catalog.select(cat)] == ["y", "x"]


def test_totals_and_ages():
    o = offer(od=1.25, spot=0.5, on_demand_as_of="2026-11-01", spot_as_of="")
    assert o.total(10) == 12.5 and o.total(10, spot=True) == 5.0
    assert offer(od=None).total(3) is None
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    assert format_age(o.age_seconds(now=now)) == "24d"
    assert format_age(o.age_seconds(spot=True, now=now)) == "undated"
    assert [format_age(s) for s in (5, 125, 7300)] == ["5s", "2m", "2h"]


def test_unknown_gpu_names_the_known_ones():
    with pytest.raises(BadInput, match=r"unknown GPU 'Z9'; known GPUs: .*A100-80GB.*RTX4090"):
        catalog.offers(gpu="Z9")


def test_unknown_catalog_provider_is_bad_input():
    with pytest.raises(BadInput, match="catalog providers: aws, runpod, lyceum"):
        catalog.offers(provider="nimbus")


@given(st.text(max_size=30))
def test_any_gpu_text_gives_a_query_or_bad_input(text):
    try:
        q = catalog.parse_gpu(text)
    except BadInput:
        return
    assert q.names


def test_bundled_lookups_used_by_providers():
    assert catalog.resolve("aws", GpuSpec("A100", 8)).offer_id == "p4d.24xlarge"
    assert catalog.resolve("aws", "A100-80GB:8").offer_id == "p4de.24xlarge"
    assert catalog.resolve("aws", "T4").offer_id == "g4dn.xlarge"
    assert catalog.price("aws", "g5.xlarge") == 1.006
    assert catalog.price("aws", "g5.xlarge", spot=True) is None
    assert catalog.price("aws", "no.such") is None
    l40s = catalog.price("runpod", "NVIDIA L40S", cloud="secure")
    assert catalog.price("runpod", "NVIDIA L40S", cloud="secure", gpu_count=4) == 4 * l40s
    with pytest.raises(BadInput, match=r"no aws offer with 3x A100 \(it has A100-40GB:8"):
        catalog.resolve("aws", "A100:3")


def test_estimate_cost_from_the_catalog():
    est = catalog.estimate("aws", CreateResourceOptions(instance_type="p5.4xlarge"), hours=2)
    assert est.hourly == 6.88 and est.total == 13.76
    assert "instances.vantage.sh" in est.source and "old" in est.source
    by_gpu = catalog.estimate("runpod", CreateResourceOptions(gpu=GpuSpec("H100", 2)), 1)
    cheapest_h100 = catalog.offers("runpod", "H100:2")[0]
    assert by_gpu.hourly == cheapest_h100.on_demand
    none = catalog.estimate("aws", CreateResourceOptions(instance_type="g5.xlarge", spot=True))
    assert none.hourly is None and "no spot catalog price for g5.xlarge" in none.source


def test_live_cache_wins_over_bundled():
    sources.write_cache("aws", [offer("aws", "g5.xlarge", "A10G", 1, 0.9, 0.3)])
    (loaded,) = catalog.load("aws")
    assert loaded.origin == sources.LIVE and len(loaded.offers) == 1
    assert catalog.price("aws", "g5.xlarge", spot=True) == 0.3
    (bundled,) = catalog.load("aws", live=False)
    assert bundled.origin == sources.BUNDLED and len(bundled.offers) > 1

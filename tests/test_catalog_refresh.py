"""Live price refresh: AWS against the moto server, parsers, offline fallback."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from fakes import FakeProvider
from price_apis import aws_env, closed_port_url, moto_url  # noqa: F401 (fixtures)
from trainctl import catalog, registry
from trainctl.catalog import refresh, sources
from trainctl.errors import BadInput
from trainctl.providers.aws import AwsProvider
from trainctl.providers.aws import offers as live_aws
from trainctl.providers.lyceum import offers as live_lyceum
from trainctl.providers.runpod import offers as live_runpod

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def test_aws_refresh_against_moto(moto_url, monkeypatch):  # noqa: F811
    aws_env(monkeypatch, moto_url)
    (result,) = refresh.refresh(["aws"], now=NOW)
    assert result.status == refresh.REFRESHED, result.detail
    assert any("Price List API is unavailable" in n for n in result.notes)
    (loaded,) = catalog.load("aws")
    assert loaded.origin == sources.LIVE and len(loaded.offers) == result.offers > 40
    g5 = catalog.find("aws", "g5.xlarge")
    # moto answers one constant spot price in every zone
    assert g5.spot == 0.00001 and g5.spot_source.startswith(live_aws.SPOT_SOURCE)
    assert g5.spot_as_of == "2026-11-25T12:00:00+00:00"
    # no Price List API in moto: the bundled on-demand price and its source stay
    assert g5.on_demand == 1.006 and "vantage" in g5.on_demand_source
    cheapest_spot = catalog.offers(provider="aws", gpu="A100", spot=True)[0]
    assert cheapest_spot.offer_id in ("p4d.24xlarge", "p4de.24xlarge")


def test_aws_refresh_takes_the_aws_providers_region(moto_url, monkeypatch, trainctl_home):  # noqa: F811
    aws_env(monkeypatch, moto_url)
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text('[providers.aws]\nregion = "eu-west-1"\n')
    (result,) = refresh.refresh(["aws"], now=NOW)
    assert result.status == refresh.REFRESHED, result.detail
    offers = catalog.load("aws")[0].offers
    assert offers and {o.region for o in offers} == {"eu-west-1"}
    # the on-demand price stays the bundled us-east-1 one, and says so
    assert all("us-east-1" in o.on_demand_source for o in offers)
    assert all("(eu-west-1" in o.spot_source for o in offers if o.spot is not None)


def test_aws_refresh_without_a_region_says_so(moto_url, monkeypatch):  # noqa: F811
    aws_env(monkeypatch, moto_url)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    (result,) = refresh.refresh(["aws"], now=NOW)
    assert result.status == refresh.FAILED
    assert result.detail.startswith("no AWS region is configured (set AWS_REGION")


def test_aws_refresh_offline_keeps_bundled_prices(monkeypatch):
    aws_env(monkeypatch, closed_port_url())
    (result,) = refresh.refresh(["aws"], now=NOW)
    assert result.status == refresh.FAILED
    assert "cannot reach AWS to read EC2 spot prices" in result.detail
    assert "using bundled prices, oldest from 2026-01-21 (308d old)" in result.detail
    assert not sources.cache_path("aws").exists()


def test_failed_refresh_keeps_the_previous_live_cache(monkeypatch):
    sources.write_cache(
        "aws",
        [
            catalog.Offer(
                "aws",
                "g5.xlarge",
                "A10G",
                1,
                on_demand=1.0,
                on_demand_as_of="2026-11-25T09:00:00+00:00",
            )
        ],
    )
    aws_env(monkeypatch, closed_port_url())
    (result,) = refresh.refresh(["aws"], now=NOW)
    assert result.status == refresh.FAILED
    assert "using live cache prices, oldest from 2026-11-25 (3h old)" in result.detail
    assert len(catalog.load("aws")[0].offers) == 1


def test_without_credentials_every_provider_is_skipped(monkeypatch, tmp_path):
    class NoKeys(FakeProvider):
        credentials_present = classmethod(lambda cls: False)
        offers = AwsProvider.offers
        bundled_offers = AwsProvider.bundled_offers

    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "BUILTIN", {"local": registry.BUILTIN["local"]})
    registry.register(NoKeys, "aws")
    results = {r.provider: r for r in refresh.refresh(now=NOW)}
    assert set(results) == set(refresh.fetchers()) == {"aws"}
    assert results["aws"].status == refresh.SKIPPED
    assert results["aws"].detail == (
        "no credentials; using bundled prices, oldest from 2026-01-21 (308d old)"
    )
    assert not sources.cache_path("aws").exists()


def test_runpod_refresh_against_the_fake(runpod_api):  # noqa: F811
    (result,) = refresh.refresh(["runpod"], now=NOW)
    assert result.status == refresh.REFRESHED, result.detail
    assert result.notes == []
    (loaded,) = catalog.load("runpod")
    assert loaded.origin == sources.LIVE and len(loaded.offers) == result.offers
    rtx = catalog.find("runpod", "NVIDIA GeForce RTX 4090", cloud="community", gpu_count=2)
    assert (rtx.gpu, rtx.on_demand, rtx.spot, rtx.max_gpu_count) == ("RTX4090", 0.68, 0.34, 8)
    assert rtx.on_demand_source == live_runpod.SOURCE and rtx.spot_source == live_runpod.SPOT_SOURCE
    # the fake's H100 SXM is secure-only, its H100 PCIe goes to four GPUs on community
    assert catalog.find("runpod", "NVIDIA H100 80GB HBM3", cloud="community") is None
    assert catalog.find("runpod", "NVIDIA H100 PCIe", cloud="community", gpu_count=8) is None
    cheapest = catalog.offers("runpod", "A100:2", spot=True)[0]
    # the fake quotes half the community price, rounded: 0.59 per GPU
    assert cheapest.gpu == "A100-80GB" and cheapest.spot == pytest.approx(2 * 0.59)


def test_runpod_rejected_key_keeps_bundled_prices(runpod_api, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_wrong")
    (result,) = refresh.refresh(["runpod"], now=NOW)
    assert result.status == refresh.FAILED and "using bundled prices" in result.detail
    assert not sources.cache_path("runpod").exists()


def test_unknown_provider_is_bad_input():
    with pytest.raises(BadInput, match="no live prices for 'nimbus'"):
        refresh.refresh(["nimbus"])


def test_price_list_documents_parse():
    doc = {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {"instanceType": "g5.xlarge"},
        },
        "terms": {
            "OnDemand": {
                "ABC.JRTCKXETXF": {
                    "priceDimensions": {
                        "ABC.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "pricePerUnit": {"USD": "1.0060000000"},
                        }
                    }
                }
            }
        },
    }
    no_price = {"product": {"attributes": {"instanceType": "p5e.48xlarge"}}, "terms": {}}
    assert live_aws.parse_price_list([json.dumps(doc), json.dumps(no_price)]) == {
        "g5.xlarge": 1.006
    }


def test_runpod_catalog_payload():
    payload = {
        "gpus": [
            {
                "id": "NVIDIA GeForce RTX 4090",
                "name": "RTX 4090",
                "pool": "ADA_24",
                "manufacturer": "NVIDIA",
                "memory": 24,
                "secure": True,
                "community": True,
                "price": {"secure": 0.44, "community": 0.31, "serverless": 1.1},
                "maxCount": {"secure": 8, "community": 4},
            },
            {
                "id": "NVIDIA RTX 2000 Ada Generation",
                "name": "RTX 2000 Ada",
                "pool": None,
                "manufacturer": "NVIDIA",
                "memory": 16,
                "secure": True,
                "community": False,
                "price": {"secure": 0.24, "community": 0},
                "maxCount": {"secure": 8, "community": 0},
            },
        ]
    }
    offers = live_runpod.offers_from_catalog(payload, NOW)
    assert [(o.gpu, o.cloud, o.on_demand, o.max_gpu_count) for o in offers] == [
        ("RTX2000ADA", "secure", 0.24, 8),
        ("RTX4090", "community", 0.31, 4),
        ("RTX4090", "secure", 0.44, 8),
    ]
    four = catalog.select(offers, "RTX4090:4")
    assert [(o.cloud, o.on_demand) for o in four] == [("community", 1.24), ("secure", 1.76)]
    assert catalog.select(offers, "RTX4090:8")[0].cloud == "secure"  # community tops out at 4


def test_lyceum_availability_payload():
    payload = {
        "available_instance_variants": [
            {
                "hardware_profile": "a100",
                "instance_type": "on-demand",
                "price_per_hour": 1.5,
                "available_gpus_per_instance": [1, 2, 4],
                "block_storage_gpu_counts": None,
            },
            {
                "hardware_profile": "a100",
                "instance_type": "spot",
                "price_per_hour": 0.9,
                "available_gpus_per_instance": [1],
                "block_storage_gpu_counts": [1],
            },
            {
                "hardware_profile": "h100",
                "instance_type": "on-demand",
                "price_per_hour": 2.5,
                "available_gpus_per_instance": [8],
                "block_storage_gpu_counts": None,
            },
            {
                "hardware_profile": "cpu",
                "instance_type": "on-demand",
                "price_per_hour": 0.1,
                "available_gpus_per_instance": [0],
                "block_storage_gpu_counts": None,
            },
        ]
    }
    offers = live_lyceum.offers_from_availability(payload, NOW)
    assert [(o.offer_id, o.gpu, o.gpu_count, o.on_demand, o.spot) for o in offers] == [
        ("a100", "A100", 1, 1.5, 0.9),
        ("a100", "A100", 2, 3.0, None),
        ("a100", "A100", 4, 6.0, None),
        ("h100", "H100", 8, 20.0, None),
    ]
    assert offers[-1].gpu_memory_gb == 80 and offers[0].gpu_memory_gb is None
    assert offers[0].spot_source == live_lyceum.SOURCE and offers[1].spot_source == ""

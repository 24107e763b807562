"""providers compare, catalog refresh, --provider cheapest and list spend, through the CLI."""

from __future__ import annotations

import pytest

from cli_helpers import trainctl
from price_apis import aws_env, closed_port_url, moto_url  # noqa: F401 (fixtures)


def test_compare_a100_cheapest_first_with_sources():
    r = trainctl("providers", "compare", "--gpu", "A100", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    offers = doc["offers"]
    assert {o["gpu"] for o in offers} == {"A100-40GB", "A100-80GB"}
    assert {o["provider"] for o in offers} == {"aws", "runpod"}
    rates = [o["on_demand"] for o in offers]
    assert rates == sorted(rates)
    assert all(o["on_demand_source"] for o in offers)
    assert [c["provider"] for c in doc["catalogs"]] == ["aws", "runpod", "lyceum"]


def test_compare_table_count_hours_and_memory():
    r = trainctl("providers", "compare", "--gpu", "A100:8", "--hours", "10", "-p", "aws")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert "TOTAL 10H" in lines[0] and "SOURCE" in lines[0] and "AGE" in lines[0]
    assert lines[1].split()[:2] == ["aws", "p4d.24xlarge"] and "$219.58" in lines[1]
    assert lines[2].split()[:2] == ["aws", "p4de.24xlarge"]
    assert "aws: bundled prices, oldest from 2026-01-21" in r.out
    big = trainctl("providers", "compare", "--min-gpu-memory", "100", "--json").json()
    assert big["offers"] and all(o["gpu_memory_gb"] >= 100 for o in big["offers"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "Z9"], "unknown GPU 'Z9'; known GPUs: A10, A100, A100-40GB"),
        (["--gpu", "A100:0"], "the count must be at least 1"),
        (["-p", "nimbus"], "no price catalog for provider 'nimbus'"),
    ],
)
def test_compare_bad_input_is_one_line_and_exit_2(args, message):
    r = trainctl("providers", "compare", *args)
    assert r.code == 2 and message in r.err and "Traceback" not in r.err


def test_refresh_aws_then_compare_spot(moto_url, monkeypatch):  # noqa: F811
    aws_env(monkeypatch, moto_url)
    r = trainctl("catalog", "refresh", "--provider", "aws")
    assert r.code == 0, r.err
    assert r.out.startswith("aws: refreshed: ") and "Price List API is unavailable" in r.out
    spot = trainctl("providers", "compare", "--gpu", "T4", "--spot", "--json").json()["offers"]
    assert spot and all(o["provider"] == "aws" and o["spot"] == 0.00001 for o in spot)
    assert all(o["spot_age_seconds"] < 600 for o in spot)


def test_refresh_without_provider_takes_those_with_credentials(runpod_api):  # noqa: F811
    r = trainctl("catalog", "refresh", "--json")
    assert r.code == 0, r.err
    results = {x["provider"]: x for x in r.json()["results"]}
    assert results["runpod"]["status"] == "refreshed" and results["runpod"]["offers"] > 0
    assert all(x["status"] == "skipped" for p, x in results.items() if p != "runpod")
    table = trainctl("providers", "compare", "--gpu", "RTX4090:2", "--spot", "-p", "runpod")
    lines = table.out.splitlines()
    assert table.code == 0 and lines[1].split()[:2] == ["runpod", "NVIDIA"]
    assert "RunPod" in lines[1] and "runpod: live cache prices, oldest from" in table.out


def test_refresh_offline_falls_back_and_says_how_old(monkeypatch):
    aws_env(monkeypatch, closed_port_url())
    r = trainctl("catalog", "refresh", "--provider", "aws", "--json")
    assert r.code == 1
    (result,) = r.json()["results"]
    assert result["status"] == "failed"
    assert "using bundled prices, oldest from 2026-01-21" in result["detail"]


def test_create_cheapest_needs_gpu_and_a_usable_provider():
    r = trainctl("create", "--provider", "cheapest")
    assert r.code == 2 and "--provider cheapest needs --gpu" in r.err
    r = trainctl("run", "--provider", "cheapest", "--gpu", "A100", "--", "true")
    assert r.code == 2 and "found no usable provider with prices" in r.err
    assert "Traceback" not in r.err


def test_create_cheapest_rents_the_cheapest_runpod_offer(runpod_cli):
    r = trainctl("create", "--provider", "cheapest", "--gpu", "RTX4090", "-n", "c1", "--json")
    assert r.code == 0, r.err
    created = r.json()
    assert created["provider"] == "runpod"
    pod = runpod_cli.pods[created["id"]].data
    assert pod["gpu"] == {"id": "NVIDIA GeForce RTX 4090", "count": 1}
    assert pod["cloud"] == "COMMUNITY"
    assert "picked runpod NVIDIA GeForce RTX 4090 (community), the cheapest: " in r.err
    listed = trainctl("list", "--json").json()
    assert listed["total"]["per_hour"] == created["price_per_hour"] > 0
    assert trainctl("terminate", "c1", "-y").code == 0


def test_create_cheapest_goes_to_the_next_offer_then_gives_up(runpod_cli):
    runpod_cli.knobs.no_capacity = True
    r = trainctl("create", "--provider", "cheapest", "--gpu", "RTX4090", "--json")
    assert r.code == 1, r.err
    assert r.error()["type"] == "no_capacity"
    tried = [line for line in r.err.splitlines() if "no capacity on runpod" in line]
    assert len(tried) == 2  # RunPod's two RTX 4090 offers: community, then secure
    assert "(community)" in tried[0] and "(secure)" in tried[1]
    assert runpod_cli.pods == {}
    assert trainctl("list", "--json").json()["resources"] == []


def test_list_shows_spend_and_total():
    assert trainctl("create", "-p", "local", "-n", "box", "--json").code == 0
    r = trainctl("list")
    assert r.code == 0 and "SPENT" in r.out.splitlines()[0]
    assert "total: $0.000/h, $0.000 spent so far" in r.out
    doc = trainctl("list", "--json").json()
    assert doc["total"] == {"per_hour": 0.0, "spent": 0.0, "unknown_price": 0}
    assert doc["resources"][0]["spend"]["price_source"] == "rented"
    assert trainctl("terminate", "box", "-y").code == 0

"""$/hour and spend so far of stored machines, and the totals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from trainctl.catalog.spend import CATALOG, RENTED, Rented, spend, totals
from trainctl.store import ResourceRecord
from trainctl.types import ResourceState, ResourceStatus

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def record(provider="aws", itype="g5.xlarge", price=None, spot=False, hours=2.0, gpu_count=1):
    launched = (NOW - timedelta(hours=hours)).isoformat()
    created = (NOW - timedelta(hours=hours + 1)).isoformat()  # launch, not the intent, counts
    stored = ResourceRecord(
        id="i-1",
        provider=provider,
        name="m",
        instance_type=itype,
        gpu=None,
        gpu_count=gpu_count,
        spot=spot,
        region=None,
        created_at=created,
        launched_at=launched,
        price_per_hour=price,
        state="running",
        reason=None,
        updated_at=created,
    )
    return Rented.of_record(stored)


def test_the_rented_price_times_the_hours_since_launch():
    s = spend(record(price=0.42, spot=True, hours=3), "running", NOW)
    assert (s.rate, s.rate_source, s.hours, s.spent) == (0.42, RENTED, 3.0, 1.26)


def test_catalog_price_stands_in_when_the_provider_reported_none():
    s = spend(record(price=None, hours=2), "running", NOW)
    assert (s.rate, s.rate_source, s.spent) == (1.006, CATALOG, 2.012)
    per_gpu = spend(record("runpod", "NVIDIA L40S", gpu_count=2, hours=1), "running", NOW)
    assert per_gpu.rate_source == CATALOG and per_gpu.rate == 2 * 0.79  # cheapest cloud
    unknown = spend(record("ssh", "box", hours=1), "running", NOW)
    assert (unknown.rate, unknown.rate_source, unknown.spent) == (None, "", None)


def test_machines_that_do_not_bill_have_no_spend():
    s = spend(record(price=1.0), "stopped", NOW)
    assert not s.billing and s.spent is None
    assert spend(record(price=1.0), "creating", NOW).billing


def test_totals_count_billing_machines_only():
    spends = [
        spend(record(price=1.0, hours=2), "running", NOW),
        spend(record(price=0.5, hours=4), "starting", NOW),
        spend(record(price=9.0, hours=4), "stopped", NOW),
        spend(record("ssh", "box"), "running", NOW),
    ]
    assert totals(spends) == (1.5, 4.0, 1)


def test_untracked_machines_use_the_providers_live_status():
    live = ResourceStatus(
        "i-2",
        "aws",
        ResourceState.RUNNING,
        instance_type="g5.xlarge",
        gpu_count=1,
        launch_time=NOW - timedelta(hours=1),
        cost_per_hour=None,
    )
    s = spend(Rented.of_status(live), "running", NOW)
    assert (s.rate, s.rate_source, s.spent) == (1.006, CATALOG, 1.006)
    no_launch = ResourceStatus("i-3", "aws", ResourceState.RUNNING, cost_per_hour=2.0)
    s = spend(Rented.of_status(no_launch), "running", NOW)
    assert (s.rate, s.hours, s.spent) == (2.0, None, None)

"""Live AWS prices: spot from EC2's spot price history, on-demand from the Price List API.

The instance types are the bundled catalog's (their GPUs, vCPUs and memory do not
change). Types not offered in the region are dropped. When the Price List API cannot
be reached (it is served from a few regions only; moto does not implement it), the
bundled us-east-1 on-demand price stays, and its source says so.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from ... import sdk
from ...catalog import sources
from ...catalog.offer import Offer
from .instance import AwsProvider
from .session import aws_errors, client, sdk_errors

SPOT_SOURCE = "AWS EC2 spot price history, lowest zone"
ON_DEMAND_SOURCE = "AWS Price List API"
PRICING_REGION = "us-east-1"  # one of the regions that serve the Price List API


def offered(ec2: Any, types: list[str]) -> set[str]:
    paginator = ec2.get_paginator("describe_instance_type_offerings")
    found: set[str] = set()
    for page in paginator.paginate(
        LocationType="region", Filters=[{"Name": "instance-type", "Values": types}]
    ):
        found.update(o["InstanceType"] for o in page["InstanceTypeOfferings"])
    return found


def spot_prices(ec2: Any, types: list[str], now: datetime) -> dict[str, tuple[float, str]]:
    """Instance type -> (lowest current Linux spot price over the zones, that zone)."""
    paginator = ec2.get_paginator("describe_spot_price_history")
    best: dict[str, tuple[float, str]] = {}
    for page in paginator.paginate(
        InstanceTypes=types, ProductDescriptions=["Linux/UNIX"], StartTime=now
    ):
        for item in page["SpotPriceHistory"]:
            itype, rate = item["InstanceType"], float(item["SpotPrice"])
            if itype not in best or rate < best[itype][0]:
                best[itype] = (rate, item.get("AvailabilityZone", ""))
    return best


def parse_price_list(items: list[str]) -> dict[str, float]:
    """Instance type -> on-demand $/hour from Price List ``get_products`` documents."""
    prices: dict[str, float] = {}
    for text in items:
        doc = json.loads(text)
        itype = doc.get("product", {}).get("attributes", {}).get("instanceType")
        for term in doc.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                if itype and dim.get("unit") == "Hrs" and usd > 0:
                    prices[itype] = usd
    return prices


def on_demand_prices(session: Any, region_name: str, types: set[str]) -> dict[str, float]:
    pricing = client(session, "pricing", PRICING_REGION, quick=True)
    filters = [
        ("regionCode", region_name),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
        ("licenseModel", "No License required"),
    ]
    prices: dict[str, float] = {}
    for page in pricing.get_paginator("get_products").paginate(
        ServiceCode="AmazonEC2",
        Filters=[{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters],
    ):
        found = parse_price_list(page["PriceList"])
        prices.update({t: p for t, p in found.items() if t in types})
    return prices


def fetch(now: datetime) -> tuple[list[Offer], list[str]]:
    """Offers with live spot (and, where reachable, on-demand) prices, and notes.

    The region and profile are the aws provider's (``[providers.aws]``, then the
    standard chain), and so are its error messages; retries are kept short so that
    an offline refresh falls back quickly."""
    sdk.require("boto3", "aws")  # a missing extra is a one-line error naming it
    bundled = {o.offer_id: o for o in sources.load("aws", live=False).offers}
    notes: list[str] = []
    with aws_errors("read EC2 spot prices"):
        session, region_name = AwsProvider().session()
        ec2 = client(session, "ec2", region_name, quick=True)
        types = sorted(offered(ec2, list(bundled)))
        spot = spot_prices(ec2, types, now)
    try:
        on_demand = on_demand_prices(session, region_name, set(types))
    except sdk_errors() as e:
        on_demand = {}
        notes.append(
            f"on-demand: the AWS Price List API is unavailable ({type(e).__name__}); "
            "bundled us-east-1 list prices kept"
        )
    stamp = now.isoformat(timespec="seconds")
    offers = []
    for itype in types:
        base = bundled[itype]
        rate, zone = spot.get(itype, (None, ""))
        od = on_demand.get(itype)
        offer = replace(
            base,
            region=region_name,
            spot=rate,
            spot_source=f"{SPOT_SOURCE} ({zone})" if rate is not None else "",
            spot_as_of=stamp if rate is not None else "",
        )
        if od is not None:
            offer = replace(
                offer, on_demand=od, on_demand_source=ON_DEMAND_SOURCE, on_demand_as_of=stamp
            )
        offers.append(offer)
    dropped = len(bundled) - len(types)
    if dropped:
        notes.append(f"{dropped} GPU instance types are not offered in {region_name}")
    return offers, notes

"""Live AWS prices: spot from EC2's spot price history, on-demand from the Price List API.

The instance types are the bundled catalog's (their GPUs, vCPUs and memory do not
change). Types not offered in the region are dropped. When the Price List API cannot
be reached (it is served from a few regions only; moto does not implement it), the
bundled us-east-1 on-demand price stays, and its source says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..errors import CredentialsError, OperationFailed
from . import store
from .offer import Offer

SPOT_SOURCE = "AWS EC2 spot price history, lowest zone"
ON_DEMAND_SOURCE = "AWS Price List API"
PRICING_REGION = "us-east-1"  # one of the regions that serve the Price List API


def region() -> str:
    """The region prices are read for: AWS_REGION, AWS_DEFAULT_REGION, the profile's
    region, else us-east-1 (the bundled prices' region)."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(var):
            return os.environ[var]
    import boto3

    return boto3.session.Session().region_name or "us-east-1"


def _config() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5)


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


def on_demand_prices(region_name: str, types: set[str]) -> dict[str, float]:
    import boto3

    pricing = boto3.client("pricing", region_name=PRICING_REGION, config=_config())
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
    """Offers with live spot (and, where reachable, on-demand) prices, and notes."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bundled = {o.offer_id: o for o in store.load("aws", live=False).offers}
    region_name = region()
    notes: list[str] = []
    try:
        ec2 = boto3.client("ec2", region_name=region_name, config=_config())
        types = sorted(offered(ec2, list(bundled)))
        spot = spot_prices(ec2, types, now)
    except NoCredentialsError:
        raise CredentialsError("no AWS credentials found") from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId"):
            raise CredentialsError(f"AWS refused the credentials: {code}") from None
        raise OperationFailed(f"AWS EC2 answered an error: {code or e}") from None
    except BotoCoreError as e:
        raise OperationFailed(f"could not reach AWS EC2: {e}") from None
    try:
        on_demand = on_demand_prices(region_name, set(types))
    except (BotoCoreError, ClientError) as e:
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

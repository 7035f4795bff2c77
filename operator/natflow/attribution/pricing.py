"""NAT Gateway data-processing prices.

AWS bills NAT Gateway data processing per GB; natflow takes a GB as 2^30 bytes (1,073,741,824),
the unit AWS meters data in. Only the us-east-1/us-east-2 price is confirmed from AWS's pricing
page ($0.045); the others are the published rates as last seen and may drift: pass
``--price-per-gb`` (or the FlowReport's ``pricePerGB``) for an exact bill.
"""

from __future__ import annotations

BYTES_PER_GB = 1 << 30
DEFAULT_REGION = "us-east-1"

PRICE_PER_GB_BY_REGION: dict[str, float] = {
    "us-east-1": 0.045,
    "us-east-2": 0.045,
    "us-west-1": 0.048,
    "us-west-2": 0.045,
    "ca-central-1": 0.05,
    "eu-west-1": 0.048,
    "eu-west-2": 0.05,
    "eu-west-3": 0.05,
    "eu-central-1": 0.052,
    "eu-north-1": 0.046,
    "eu-south-1": 0.049,
    "ap-south-1": 0.056,
    "ap-southeast-1": 0.059,
    "ap-southeast-2": 0.059,
    "ap-northeast-1": 0.062,
    "ap-northeast-2": 0.059,
    "ap-northeast-3": 0.062,
    "sa-east-1": 0.093,
    "me-south-1": 0.055,
    "af-south-1": 0.06,
}


def price_per_gb(region: str | None) -> tuple[float, str]:
    """The price for `region` and a note of where it came from."""
    if region and region in PRICE_PER_GB_BY_REGION:
        return PRICE_PER_GB_BY_REGION[region], f"default price for {region}"
    fallback = PRICE_PER_GB_BY_REGION[DEFAULT_REGION]
    if region:
        return fallback, f"no default price for {region}; used the {DEFAULT_REGION} price"
    return fallback, f"region unknown; used the {DEFAULT_REGION} price"


def cost(nbytes: int, price: float) -> float:
    return round(nbytes / BYTES_PER_GB * price, 6)

"""Bounds on what one flow record can say, so that a damaged or forged number is a malformed record,
never a total. Every reader applies them (the reference in `readers.add_parts`, the compiled scanner
with the values it is given by `textscan.scanner_for`, Athena in its query). README: "Numbers no
network produces".
"""

from __future__ import annotations

from functools import lru_cache

# The fastest interface a record can describe: the largest EC2 instances reach 3,200 Gbps (across all
# their network cards, more than any one ENI), a NAT Gateway 100 Gbps. A record covers one aggregation
# interval, at most 600 s, and its start may lag the first packet by up to 60 s: 3.2e12 / 8 * 660 s is
# 2.64e14 bytes. Ten to the fifteenth leaves more than three times that as headroom.
MAX_RECORD_BYTES = 10**15
# Every IP packet carries at least its 20-byte IPv4 header.
MAX_RECORD_PACKETS = MAX_RECORD_BYTES // 20

# VPC Flow Logs began in June 2015; nothing natflow reads was written after 2100.
EARLIEST_TIME = 1_420_070_400  # 2015-01-01T00:00:00Z
LATEST_TIME = 4_102_444_800  # 2100-01-01T00:00:00Z
# An S3 object's key names the 5 minutes its records end in; their starts precede that by at most the
# aggregation interval and the capture lag (11 min). A day either side is generous headroom.
OBJECT_TIME_SLACK = 86_400

# Digits beyond these (leading zeros aside) make any number implausible: it is not converted (Python
# refuses str -> int past 4,300 digits, and the work grows with the length).
MAX_NUMBER_DIGITS = 20
TOO_LARGE: int = 10**MAX_NUMBER_DIGITS


@lru_cache(maxsize=256)
def time_bounds(object_time: tuple[int, int] | None) -> tuple[int, int]:
    """[earliest, latest] start or end (Unix seconds) of a record whose object's own time (the S3 key's,
    or a CloudWatch event's timestamp) is `object_time`; the absolute range when that is unknown."""
    if object_time is None:
        return EARLIEST_TIME, LATEST_TIME
    # Clamped to the absolute range: an object time outside it leaves no room at all.
    earliest = min(max(EARLIEST_TIME, object_time[0] - OBJECT_TIME_SLACK), LATEST_TIME)
    latest = max(min(LATEST_TIME, object_time[1] + OBJECT_TIME_SLACK), EARLIEST_TIME)
    return earliest, latest


def shown(text: str) -> str:
    """A number's text for a message: whole when short, else its start and its length."""
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"

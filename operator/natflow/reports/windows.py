"""Windows to process and the periods attributions accumulate over (UTC)."""

from __future__ import annotations

from calendar import timegm
from datetime import UTC, datetime

# A report never reaches further back than this on its first run (or after a long outage).
MAX_CATCH_UP_WINDOWS = 96


def due_windows(processed_until: int | None, interval: int, delay: int, now: int) -> list[tuple[int, int]]:
    """Aligned [start, end) windows, oldest first, whose flow logs should have arrived by `now`."""
    ready_until = (now - delay) // interval * interval
    start = processed_until if processed_until is not None else ready_until - interval
    start = max(start, ready_until - MAX_CATCH_UP_WINDOWS * interval)
    windows = []
    while start + interval <= ready_until:
        windows.append((start, start + interval))
        start += interval
    return windows


def period_of(when: int, period: str) -> tuple[str, int, int]:
    """(name, start, end) of the UTC period that contains `when`."""
    moment = datetime.fromtimestamp(when, UTC)
    if period == "Hourly":
        first = moment.replace(minute=0, second=0, microsecond=0)
        name = first.strftime("%Y-%m-%dT%H")
        start = int(first.timestamp())
        return name, start, start + 3600
    if period == "Daily":
        first = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        start = int(first.timestamp())
        return first.strftime("%Y-%m-%d"), start, start + 86400
    if period == "Monthly":
        start = timegm((moment.year, moment.month, 1, 0, 0, 0))
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        return moment.strftime("%Y-%m"), start, timegm((year, month, 1, 0, 0, 0))
    raise ValueError(f"unknown period {period!r}")

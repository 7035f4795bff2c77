"""Time conversions. natflow works in integer Unix seconds (UTC) everywhere internally."""

from __future__ import annotations

from datetime import UTC, datetime

# Flow-log start/end are Unix seconds, but some producers write milliseconds. The largest value read as
# seconds is year 5138; the smallest read as milliseconds is 1973. (2**31 - 1 would read every start
# after January 2038 as milliseconds.)
MAX_SECONDS = 99_999_999_999


def parse_time(text: str) -> int:
    """RFC 3339 / ISO 8601 text (``2026-11-21T10:00:00Z``, with or without offset) to Unix seconds.

    A value without an offset is taken as UTC. Raises ValueError with the text on failure.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def format_time(seconds: int) -> str:
    """Unix seconds to ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def flow_seconds(value: int) -> int:
    """A flow-log start/end value in seconds, accepting millisecond values."""
    return value // 1000 if value > MAX_SECONDS else value

"""FlowReport specs, due windows, periods, and idempotent FlowAttribution merges."""

from __future__ import annotations

import pytest

from natflow.attribution.engine import Attribution
from natflow.reports.attributions import merged_spec, object_name
from natflow.reports.spec import SpecError, read_spec
from natflow.reports.windows import due_windows, period_of
from natflow.timeutil import parse_time


def test_defaults_and_one_line_errors() -> None:
    spec = read_spec({}, "default")
    assert (spec.interval_seconds, spec.delay_seconds, spec.period, spec.groupBy) == (900, 900, "Daily", "workload")
    with pytest.raises(SpecError, match=r"^FlowReport bad: spec.interval: Value error, not a duration"):
        read_spec({"interval": "fortnightly"}, "bad")
    with pytest.raises(SpecError, match=r"spec.flowLogs.s3 is required"):
        read_spec({"flowLogs": {"source": "s3"}}, "bad")
    with pytest.raises(SpecError, match=r"spec.interval must divide an hour"):
        read_spec({"interval": "7m"}, "bad")
    with pytest.raises(SpecError, match=r"spec.logFormat: .*a field appears twice"):
        read_spec({"logFormat": "${srcaddr} ${srcaddr}"}, "bad")


def test_due_windows_wait_for_delivery_and_continue_where_they_stopped() -> None:
    now = parse_time("2026-11-21T10:47:00Z")
    # first run: the last complete window whose logs should have arrived (delay 15m)
    assert due_windows(None, 900, 900, now) == [
        (parse_time("2026-11-21T10:15:00Z"), parse_time("2026-11-21T10:30:00Z"))
    ]
    later = due_windows(parse_time("2026-11-21T09:45:00Z"), 900, 900, now)
    assert [w[0] for w in later] == [
        parse_time(t) for t in ("2026-11-21T09:45:00Z", "2026-11-21T10:00:00Z", "2026-11-21T10:15:00Z")
    ]
    assert due_windows(parse_time("2026-11-21T10:30:00Z"), 900, 900, now) == []


def test_periods_are_utc() -> None:
    when = parse_time("2026-12-31T23:59:59Z")
    assert period_of(when, "Daily") == (
        "2026-12-31",
        parse_time("2026-12-31T00:00:00Z"),
        parse_time("2027-01-01T00:00:00Z"),
    )
    assert period_of(when, "Monthly")[0] == "2026-12" and period_of(when, "Monthly")[2] == parse_time(
        "2027-01-01T00:00:00Z"
    )
    assert period_of(when, "Hourly")[0] == "2026-12-31T23"


def row(nbytes: int) -> Attribution:
    found = Attribution("nat-1", "shop", "Deployment", "web", "pod", bytes_out=nbytes, bytes_in=2 * nbytes)
    found.pods = {"shop/web-1"}
    found.destinations = {"S3": nbytes}
    return found


def test_applying_a_window_twice_counts_it_once() -> None:
    period = period_of(parse_time("2026-11-21T10:00:00Z"), "Daily")
    first = (parse_time("2026-11-21T10:00:00Z"), parse_time("2026-11-21T10:15:00Z"))
    second = (first[1], first[1] + 900)
    spec = merged_spec(None, row(100), report="r", period=period, window=first, price_per_gb=0.045)
    assert spec is not None and spec["bytesOut"] == 100
    assert merged_spec(spec, row(100), report="r", period=period, window=first, price_per_gb=0.045) is None
    spec = merged_spec(spec, row(50), report="r", period=period, window=second, price_per_gb=0.045)
    assert spec is not None and (spec["bytesOut"], spec["bytesIn"]) == (150, 300)
    assert spec["windows"] == [{"start": "2026-11-21T10:00:00Z", "end": "2026-11-21T10:30:00Z"}]
    assert spec["topDestinations"] == [{"destination": "S3", "bytes": 150}]


def test_object_names_are_dns_safe_and_stable() -> None:
    name = object_name("default", "nat-1", "Deployment", "Web_API.v2", "pod", "2026-11-21")
    assert name == object_name("default", "nat-1", "Deployment", "Web_API.v2", "pod", "2026-11-21")
    assert name.startswith("default-deployment-web-api-v2-") and len(name) <= 253
    assert name != object_name("default", "nat-1", "Deployment", "Web_API.v2", "pod", "2026-11-22")

"""FlowAttribution objects: one per (report, NAT Gateway, workload, source, period), merged window by window.

Each object records the windows it includes, so applying a window is idempotent: a window that is
already inside the object's windows is skipped, whatever happened before (a restart halfway
through a window, a retried patch, the same window run twice).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from natflow.attribution.engine import Attribution
from natflow.attribution.pricing import cost
from natflow.timeutil import format_time, parse_time

MAX_PODS = 100
TOP_DESTINATIONS = 5
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def object_name(report: str, gateway: str, kind: str, name: str, source: str, period: str) -> str:
    """A stable DNS-1123 name, readable first, unique by hash."""
    digest = hashlib.sha1("|".join((report, gateway, kind, name, source, period)).encode()).hexdigest()[:10]
    readable = _NOT_DNS.sub("-", f"{report}-{kind}-{name}".lower()).strip("-")[:200]
    return f"{readable}-{digest}"


def object_namespace(row: Attribution, operator_namespace: str) -> str:
    """Workload rows live with the workload, so teams can read their own; the rest with the operator."""
    return row.namespace or operator_namespace


def _covered(windows: list[dict[str, str]], start: int, end: int) -> bool:
    return any(parse_time(w["start"]) <= start and end <= parse_time(w["end"]) for w in windows)


def _add_window(windows: list[dict[str, str]], start: int, end: int) -> list[dict[str, str]]:
    spans = sorted([(parse_time(w["start"]), parse_time(w["end"])) for w in windows] + [(start, end)])
    merged: list[list[int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [{"start": format_time(a), "end": format_time(b)} for a, b in merged]


def merged_spec(
    existing: dict[str, Any] | None,
    row: Attribution,
    *,
    report: str,
    period: tuple[str, int, int],
    window: tuple[int, int],
    price_per_gb: float,
) -> dict[str, Any] | None:
    """The spec after adding `row` (one window's bytes) to `existing`; None if the window is already in."""
    windows: list[dict[str, str]] = list((existing or {}).get("windows") or [])
    if _covered(windows, *window):
        return None
    base = existing or {}
    bytes_out = int(base.get("bytesOut", 0)) + row.bytes_out
    bytes_in = int(base.get("bytesIn", 0)) + row.bytes_in
    destinations: dict[str, int] = {d["destination"]: int(d["bytes"]) for d in base.get("topDestinations") or []}
    for destination, nbytes in row.destinations.items():
        destinations[destination] = destinations.get(destination, 0) + nbytes
    top = sorted(destinations.items(), key=lambda item: (-item[1], item[0]))[:TOP_DESTINATIONS]
    pods = sorted(set(base.get("pods") or []) | row.pods)[:MAX_PODS]
    name, start, end = period
    spec: dict[str, Any] = {
        "report": report,
        "natGatewayId": row.nat_gateway_id,
        "workload": {"kind": row.workload_kind, "name": row.workload_name},
        "source": row.source,
        "period": {"name": name, "start": format_time(start), "end": format_time(end)},
        "bytesOut": bytes_out,
        "bytesIn": bytes_in,
        "packetsOut": int(base.get("packetsOut", 0)) + row.packets_out,
        "packetsIn": int(base.get("packetsIn", 0)) + row.packets_in,
        "splitBytes": int(base.get("splitBytes", 0)) + row.split_bytes,
        "estimatedCostUSD": cost(bytes_out + bytes_in, price_per_gb),
        "pods": pods,
        "topDestinations": [{"destination": d, "bytes": b} for d, b in top],
        "windows": _add_window(windows, *window),
    }
    if row.namespace:
        spec["workload"]["namespace"] = row.namespace
    if row.address_owner is not None:
        spec["addressOwner"] = row.address_owner.as_dict()
    return spec

"""The result document (the ``-o json`` contract) and the warnings derived from a run."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from natflow.attribution.engine import AttributionResult
from natflow.attribution.pricing import BYTES_PER_GB, cost
from natflow.cluster.snat import (
    AWS_NODE_ADDON_FIX,
    AWS_NODE_FIX,
    LOOKED_FOR,
    PRIVATE_SUBNET_PRECONDITION,
    SOURCE_AWS_NODE,
    SnatDecision,
)
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import RECOMMENDED_FORMAT
from natflow.flowlogs.reduce import Reduction
from natflow.timeutil import format_time

SNAT_FIX = AWS_NODE_FIX
SNAT_ADDON_FIX = AWS_NODE_ADDON_FIX
SNAT_PRECONDITION = PRIVATE_SUBNET_PRECONDITION

# field -> what is lost without it
_FORMAT_NEEDS = {
    "bytes": "no byte counts: every row reads 0 bytes",
    "packets": "no packet counts",
    "interface-id": "NAT Gateway records are found by their private IPs only",
    "pkt-dstaddr": "no destinations for outbound bytes (topDestinations stays empty)",
    "pkt-srcaddr": "no sources for inbound bytes (topDestinations stays empty)",
    "start": "record times come from the CloudWatch event or the S3 object key (5-minute resolution)",
    "action": "REJECT records cannot be told apart and are counted",
    "log-status": "NODATA/SKIPDATA records cannot be counted",
}
# ... and what is lost without it when the VPC has a regional NAT Gateway
_REGIONAL_FORMAT_NEEDS = {
    "resource-id": "records of regional NAT Gateways (interface-id '-') cannot be found: those gateways show 0 bytes",
}


def format_needs(reduction: Reduction) -> dict[str, str]:
    """The fields attribution needs of the formats read, each with what is lost without it."""
    # A regional gateway's own flow log has resource-id; another (a VPC's) may lack it and lose nothing.
    regional_unseen = reduction.topology.regional and not any("resource-id" in f for f in reduction.formats)
    needs = {**_FORMAT_NEEDS, **(_REGIONAL_FORMAT_NEEDS if regional_unseen else {})}
    if reduction.topology.regional and not reduction.topology.natgw_by_eni:  # regional only: the far end is dst/src
        for name in ("interface-id", "pkt-dstaddr", "pkt-srcaddr"):
            del needs[name]
    return needs


def missing_fields(fields: Collection[str], needs: Mapping[str, str] = _FORMAT_NEEDS) -> list[str]:
    """The fields attribution needs that a flow-log format lacks (`needs` says what each gives)."""
    missing = [name for name in needs if name not in fields]
    if "start" in missing and "end" in fields:
        missing.remove("start")
    return missing


def format_gaps(missing: list[str], needs: Mapping[str, str] = _FORMAT_NEEDS) -> str:
    return "; ".join(needs[name] for name in missing)


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _by_decision(counts: Mapping[tuple[str, SnatDecision], int]) -> list[tuple[SnatDecision, dict[str, int]]]:
    """Bytes per (node, decision) as each decision's bytes per node, the decision with most bytes first."""
    grouped: dict[SnatDecision, dict[str, int]] = {}
    for (node, decision), count in counts.items():
        grouped.setdefault(decision, {})[node] = count
    return sorted(grouped.items(), key=lambda item: (-sum(item[1].values()), item[0].origin, item[0].setting))


def _source_text(decision: SnatDecision, counts: Mapping[str, int]) -> str:
    nodes = sorted(counts, key=lambda node: (-counts[node], node))
    text = f"{decision.describe()}: {len(nodes)} node(s) ({_names(nodes)}), {human_bytes(sum(counts.values()))}"
    if decision.note:
        text += f"; {decision.note}"
    return text + (f"; fix: {decision.fix_text()}." if decision.fix else ".")


def _source_details(decision: SnatDecision, counts: Mapping[str, int]) -> dict[str, Any]:
    return {
        "source": decision.source,
        "origin": decision.origin,
        "setting": decision.setting,
        "bytes": sum(counts.values()),
        "nodes": [{"node": node, "bytes": counts[node]} for node in sorted(counts)],
        "fix": decision.fix,
        **({"note": decision.note} if decision.note else {}),
    }


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@dataclass
class RunContext:
    """What a run read, for stats and warnings (the CLI and the operator fill it alike)."""

    files_read: int = 0
    files_skipped: int = 0
    price_source: str = ""


def derive_warnings(
    result: AttributionResult, reduction: Reduction, state: ClusterState, diagnostics: Diagnostics
) -> None:
    """Add the warnings a person must see: SNAT hiding pods, format gaps, data loss, splits."""
    total = sum(g.total_bytes for g in result.gateways.values())
    exposure = result.snat
    if exposure.total_bytes:
        nodes = sorted(exposure.bytes_by_node.items(), key=lambda item: (-item[1], item[0]))
        pods = sorted({p for keys in exposure.pods_by_node.values() for p in keys})
        share = exposure.total_bytes / total if total else 0.0
        by_source = _by_decision(exposure.hidden)
        fixes = [_source_text(decision, counts) for decision, counts in by_source]
        aws_node = any(decision.source == SOURCE_AWS_NODE for decision, _ in by_source)
        diagnostics.warn(
            "NodeSNATHidesPodIPs",
            f"node-level SNAT hides pod IPs: {human_bytes(exposure.total_bytes)} ({share:.1%}) of NAT Gateway "
            f"bytes left {len(nodes)} node(s) ({_names([name for name, _ in nodes])}) as the node IP, from "
            f"{len(pods)} pod(s) that ran there. " + " ".join(fixes),
            bytes=exposure.total_bytes,
            share=round(share, 4),
            nodes=[{"node": name, "bytes": count} for name, count in nodes],
            pods=pods,
            sources=[_source_details(decision, counts) for decision, counts in by_source],
            fix=by_source[0][0].fix if by_source else None,
            **({"addonFix": SNAT_ADDON_FIX, "precondition": SNAT_PRECONDITION} if aws_node else {}),
        )
    unknown = _by_decision(exposure.unknown)
    if unknown or not state.snat_known:
        named = "; ".join(f"{_names(sorted(counts))}: {decision.describe()}" for decision, counts in unknown)
        diagnostics.warn(
            "CNIUnknown",
            (f"the SNAT of {sum(len(c) for _, c in unknown)} node(s) is unknown ({named}); " if unknown else
             "no SNAT source found; ") + f"looked for {LOOKED_FOR}; node-IP bytes are reported with source 'node'",
            nodes=sorted({node for _, counts in unknown for node in counts}),
            bytes=sum(sum(counts.values()) for _, counts in unknown),
        )  # fmt: skip
    needs = format_needs(reduction)
    for fields, origin in sorted(reduction.formats.items()):
        missing = missing_fields(fields, needs)
        if missing:
            diagnostics.warn(
                "FormatLacksFields",
                f"{origin} lacks {', '.join(missing)}: "
                + format_gaps(missing, needs)
                + f". Recommended flow-log format: {RECOMMENDED_FORMAT}",
                missing=missing,
                recommendedFormat=RECOMMENDED_FORMAT,
            )
    stats = reduction.stats
    if stats.malformed_records:
        diagnostics.warn(
            "MalformedRecords",
            f"{stats.malformed_records} malformed record(s) skipped, e.g. " + "; ".join(stats.malformed_examples),
            count=stats.malformed_records,
            examples=list(stats.malformed_examples),
        )
    _warn_unclassified(reduction, diagnostics)
    _warn_regional_own_addresses(reduction, diagnostics)
    _warn_regional_unseen(reduction, diagnostics)
    if stats.skip_data_records:
        diagnostics.warn(
            "SkippedData",
            f"{stats.skip_data_records} SKIPDATA record(s): AWS could not capture some flows in those "
            "intervals, so these totals are a lower bound",
            count=stats.skip_data_records,
        )
    if result.split_rows:
        diagnostics.warn(
            "RecordsSplitAcrossHolders",
            f"{result.split_rows} reduced row(s) ({human_bytes(result.split_bytes)}) spanned a change of the "
            "address's holder and were split between holders by seconds of overlap",
            rows=result.split_rows,
            bytes=result.split_bytes,
        )
    estimated = sorted(p.key for p in state.estimated_ends())
    if estimated:
        diagnostics.warn(
            "PodEndTimeEstimated",
            f"{len(estimated)} pod(s) were deleted with no deletion or finish time; their IPs are taken as "
            f"released at their last status change: {', '.join(estimated[:10])}",
            pods=estimated,
        )
    if state.ipmap.lease_conflicts:
        diagnostics.warn(
            "OverlappingLeases",
            f"{state.ipmap.lease_conflicts} pod lease(s) lay wholly inside another pod's lease of the same IP "
            "and were ignored",
        )


def _warn_unclassified(reduction: Reduction, diagnostics: Diagnostics) -> None:
    """Records on a NAT Gateway that are neither a client leg nor the internet side: never guessed."""
    topology = reduction.topology
    by_gateway: dict[str, list[int]] = {}
    for key, (records, nbytes) in reduction.stats.unclassified_by_key.items():
        counts = by_gateway.setdefault(topology.natgw_of(key) or key, [0, 0])
        counts[0] += records
        counts[1] += nbytes
    if not by_gateway:
        return
    named = ", ".join(
        f"{gateway}{' (regional)' if gateway in topology.regional else ''}: {records} record(s), {human_bytes(nbytes)}"
        for gateway, (records, nbytes) in sorted(by_gateway.items())
    )
    diagnostics.warn(
        "UnclassifiedNatRecords",
        f"NAT Gateway records that are neither a client leg nor the internet side were not counted ({named}). "
        "On a zonal gateway, neither end was one of its private IPs; on a regional gateway, neither exactly "
        "one end was inside the VPC's CIDRs (both inside, or an end that is no address), which contradicts "
        "natflow's assumption that a regional gateway's records show the client and the final destination",
        gateways=[{"natGatewayId": g, "records": r, "bytes": b} for g, (r, b) in sorted(by_gateway.items())],
    )


def _warn_regional_unseen(reduction: Reduction, diagnostics: Diagnostics) -> None:
    """A regional gateway of which no record was found, although records with resource-id were read."""
    topology = reduction.topology
    if not topology.regional or not any("resource-id" in fields for fields in reduction.formats):
        return  # nothing read, or FormatLacksFields says why
    seen = {key for key, *_ in reduction.rows} | set(reduction.stats.unclassified_by_key)
    for gateway in sorted(topology.regional - seen):
        diagnostics.warn(
            "RegionalNatGatewayUnseen",
            f"regional NAT Gateway {gateway}: no record with resource-id {gateway} between an address inside the "
            "VPC and one outside was found. If it carried traffic in this window, its records do not name it "
            "in resource-id as natflow assumes, or its flow log (resource type RegionalNatGateway) was not read",
            natGatewayId=gateway,
        )


def _warn_regional_own_addresses(reduction: Reduction, diagnostics: Diagnostics) -> None:
    """Bytes counted for a regional gateway's own private IP: its records then show the NAT in the
    middle (as a zonal gateway's do), not the client and the final destination as assumed."""
    topology = reduction.topology
    own = topology.regional_nat_ips
    counted: dict[str, int] = {}
    for (key, address, *_), value in reduction.rows.items() if own else ():
        if key in topology.regional and own.get(address) == key:
            counted[key] = counted.get(key, 0) + value[0]
    for gateway, nbytes in sorted(counted.items()):
        diagnostics.warn(
            "RegionalNatOwnAddress",
            f"regional NAT Gateway {gateway}: {human_bytes(nbytes)} were counted for the gateway's own private "
            "IP(s) as the inside address; its records seem to show the NAT in the middle, so these bytes are "
            "its internet side again and its client legs went unclassified. Check a record of it and report it",
            natGatewayId=gateway,
            bytes=nbytes,
        )


def build_document(
    result: AttributionResult,
    reduction: Reduction,
    window: tuple[int | None, int | None],
    diagnostics: Diagnostics,
    context: RunContext,
    extra_stats: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    price = result.price_per_gb
    start = window[0] if window[0] is not None else reduction.first_time
    end = window[1] if window[1] is not None else (reduction.last_time + 1 if reduction.last_time is not None else None)
    stats = reduction.stats
    return {
        "window": {
            "start": format_time(start) if start is not None else None,
            "end": format_time(end) if end is not None else None,
        },
        "natGateways": [
            {
                "natGatewayId": g.nat_gateway_id,
                "bytesOut": g.bytes_out,
                "bytesIn": g.bytes_in,
                "packetsOut": g.packets_out,
                "packetsIn": g.packets_in,
                "estimatedCostUSD": cost(g.total_bytes, price),
                "attributedBytes": g.attributed_bytes,
                "coverage": g.coverage,
            }
            for g in sorted(result.gateways.values(), key=lambda g: g.nat_gateway_id)
        ],
        "attributions": [
            {
                "natGatewayId": row.nat_gateway_id,
                "namespace": row.namespace,
                "workloadKind": row.workload_kind,
                "workloadName": row.workload_name,
                "source": row.source,
                "bytesOut": row.bytes_out,
                "bytesIn": row.bytes_in,
                "packetsOut": row.packets_out,
                "packetsIn": row.packets_in,
                "estimatedCostUSD": cost(row.total_bytes, price),
                "pods": sorted(row.pods),
                "topDestinations": [{"destination": d, "bytes": b} for d, b in row.top_destinations()],
                **({"splitBytes": row.split_bytes} if row.split_bytes else {}),
                **({"addressOwner": row.address_owner.as_dict()} if row.address_owner else {}),
            }
            for row in result.rows
        ],
        "warnings": [item.as_dict() for item in diagnostics.items],
        "stats": {
            "filesRead": context.files_read,
            "filesSkipped": context.files_skipped,
            "recordsRead": stats.records_read,
            "recordsCounted": stats.records_counted,
            "malformedRecords": stats.malformed_records,
            "noDataRecords": stats.no_data_records,
            "skipDataRecords": stats.skip_data_records,
            "rejectedRecords": stats.rejected_records,
            "rejectedBytes": stats.rejected_bytes,
            "otherInterfaceRecords": stats.other_interface_records,
            "outsideWindowRecords": stats.outside_window_records,
            "internetLegRecords": stats.internet_leg_records,
            "internetLegBytes": stats.internet_leg_bytes,
            "unclassifiedNatRecords": stats.unclassified_nat_records,
            "unclassifiedNatBytes": stats.unclassified_nat_bytes,
            "damagedFiles": stats.damaged_files,
            "lostRecords": stats.lost_records,
            "reducedRows": len(reduction.rows),
            "splitRows": result.split_rows,
            "splitBytes": result.split_bytes,
            "pricePerGB": price,
            "priceSource": context.price_source,
            "bytesPerGB": BYTES_PER_GB,
            **(extra_stats or {}),
        },
    }

"""A trace over given inputs (files, cluster state, inventory): the two reading passes, the legs,
the conversations and the document. The command module only gathers the inputs (offline or live)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from natflow.attribution.report import human_bytes
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.sources import FlowLogFile
from natflow.timeutil import format_time
from natflow.trace.findings import check
from natflow.trace.legs import (
    BACK,
    MATCH_TOLERANCE_SECONDS,
    NAT_INSIDE,
    NAT_INTERNET,
    OUT,
    Conversation,
    Leg,
    classify,
    conversations,
)
from natflow.trace.network import Network
from natflow.trace.records import FlowRecord
from natflow.trace.scan import AddressFilter, Kept, ScanStats, Wanted, in_window, read_files
from natflow.trace.subject import Subject, holders

# pass 2 looks for the remotes' internet legs in the two address fields a NAT internet leg has.
INTERNET_FIELDS = ("srcaddr", "dstaddr")


@dataclass(frozen=True)
class Filters:
    remote: str | None = None
    port: int | None = None
    protocol: int | None = None

    def keeps(self, leg: Leg) -> bool:
        return (
            (self.remote is None or leg.remote == self.remote)
            and (self.port is None or leg.remote_port == self.port)
            and (self.protocol is None or leg.record.protocol == self.protocol)
        )


@dataclass
class TraceInputs:
    state: ClusterState
    network: Network
    files: Sequence[FlowLogFile]
    choices: FormatChoices
    diagnostics: Diagnostics
    extra_stats: dict[str, Any]


@dataclass
class TraceResult:
    document: dict[str, Any]  # the JSON contract of issue 13
    verdicts: list[str]  # a line per conversation, in the document's order
    # Each leg's tcp-flags (None where the format lacks them), by conversation: shown in the table,
    # not in the JSON, whose leg fields are issue 13's contract.
    tcp_flags: list[list[int | None]]


def run_trace(
    inputs: TraceInputs,
    subject: Subject,
    filters: Filters,
    window: tuple[int | None, int | None],
    workers: int,
) -> TraceResult:
    network, diagnostics = inputs.network, inputs.diagnostics
    for reason, message in subject.notes:
        diagnostics.warn(reason, message)
    bounded = None if window == (None, None) else (window[0] or -(1 << 62), window[1] or (1 << 62))
    inside = frozenset(subject.addresses)

    def inside_legs(records: list[FlowRecord]) -> list[Leg]:
        found = (classify(record, network, inside) for record in records)
        return [
            leg
            for leg in found
            if leg is not None
            and leg.role != NAT_INTERNET
            and subject.uses(leg.inside, leg.record.start)
            and filters.keeps(leg)
        ]

    def remotes_of(records: list[FlowRecord]) -> AddressFilter | None:
        remotes = {leg.remote for leg in inside_legs(records) if leg.role == NAT_INSIDE and leg.remote}
        return AddressFilter(remotes, INTERNET_FIELDS) if remotes else None

    looked_for = set(subject.addresses) | ({filters.remote} if filters.remote else set())
    # One reading: the records naming the subject, and the NAT gateways' internet legs (which name only
    # the gateway and the remote) of the remotes that the same object's inside legs name.
    collect = AddressFilter(network.nat_addresses(), INTERNET_FIELDS, network.inside)
    wanted = Wanted(AddressFilter(looked_for), collect, remotes_of)
    first = read_files(inputs.files, inputs.choices, wanted, bounded, workers)
    stats = first.stats
    diagnostics.extend(first.notes)
    legs = inside_legs(first.records)
    # --remote is looked for in every field: its internet legs are among the records kept too
    internet = [
        leg
        for leg in (classify(r, network, inside) for r in [*first.records, *first.chosen])
        if leg is not None and leg.role == NAT_INTERNET
    ]
    # (a remote looked for from the start, --remote, was found in every object already)
    again = _reread(inputs.files, [leg for leg in legs if leg.remote not in looked_for], first, bounded)
    for remotes, files in again.items():  # internet legs in another object than their inside legs
        wanted = Wanted(AddressFilter(remotes, INTERNET_FIELDS))
        extra = read_files(files, inputs.choices, wanted, bounded, workers)
        diagnostics.extend(extra.notes)
        for record in extra.records:
            leg = classify(record, network, inside)
            if leg is not None and leg.role == NAT_INTERNET:
                internet.append(leg)
    reread = sum(len(files) for files in again.values())
    found = conversations(legs, internet, network)
    document_conversations, verdicts = _conversations(found, inputs.state, network, subject)
    if stats.malformed_records:
        diagnostics.warn(
            "MalformedRecords",
            f"{stats.malformed_records} record(s) could not be read, e.g. " + "; ".join(stats.malformed_examples),
        )
    document = {
        "window": {
            "start": format_time(window[0]) if window[0] is not None else None,
            "end": format_time(window[1]) if window[1] is not None else None,
        },
        "subject": subject.as_dict(),
        "conversations": document_conversations,
        "warnings": [item.as_dict() for item in diagnostics.items],
        "stats": {
            **_stats(
                stats, len(legs) + sum(1 for c in found for leg in c.legs if leg.role == NAT_INTERNET), len(found)
            ),
            "filesReadAgain": reread,
            **inputs.extra_stats,
        },
    }
    return TraceResult(document, verdicts, [[leg.record.tcp_flags for leg in c.legs] for c in found])


def _reread(
    files: Sequence[FlowLogFile], legs: list[Leg], first: Kept, window: tuple[int, int] | None
) -> dict[frozenset[str], list[FlowLogFile]]:
    """The files to read again for internet legs, by the remotes to look for in them: a remote's
    internet legs may lie in an object next to its inside legs' (objects are cut by end time)."""
    spans: dict[str, tuple[int, int]] = {}
    for leg in legs:
        if leg.role == NAT_INSIDE and leg.remote:
            low, high = spans.get(leg.remote, (leg.record.start, leg.record.start))
            spans[leg.remote] = (min(low, leg.record.start), max(high, leg.record.end))
    again: dict[frozenset[str], list[FlowLogFile]] = defaultdict(list)
    for file in files:
        if not in_window(file, window):
            continue
        chosen = first.chosen_by.get(file.path, frozenset())
        missing = frozenset(
            remote
            for remote, (low, high) in spans.items()
            if remote not in chosen and in_window(file, (low - MATCH_TOLERANCE_SECONDS, high + MATCH_TOLERANCE_SECONDS))
        )
        if missing:
            again[missing].append(file)
    return again


def _stats(stats: ScanStats, legs: int, conversation_count: int) -> dict[str, Any]:
    return {
        "filesRead": stats.files_read,
        "filesSkippedByKey": stats.files_skipped_by_key,
        "recordsRead": stats.records_read,
        "recordsMatched": stats.records_kept,
        "outsideWindowRecords": stats.outside_window_records,
        "malformedRecords": stats.malformed_records,
        "legs": legs,
        "conversations": conversation_count,
    }


def _conversations(
    found: list[Conversation], state: ClusterState, network: Network, subject: Subject
) -> tuple[list[dict[str, Any]], list[str]]:
    queries = [(c.inside, c.legs[0].record.start, max(leg.record.end for leg in c.legs)) for c in found]
    held = holders(state, queries)
    result, verdicts = [], []
    for conversation, holder in zip(found, held, strict=True):
        path = check(conversation, network, subject.node_translations)
        inside, remote, port, protocol = conversation.key
        result.append(
            {
                "inside": inside,
                "remote": remote,
                "remotePort": port,
                "protocol": protocol,
                "holder": holder.as_dict(),
                "out": {
                    "natGatewayIds": path.gateways[OUT],
                    "bytes": path.totals[OUT][0],
                    "packets": path.totals[OUT][1],
                },
                "back": {
                    "natGatewayIds": path.gateways[BACK],
                    "bytes": path.totals[BACK][0],
                    "packets": path.totals[BACK][1],
                },
                "translations": path.translations,
                "legs": [_leg(leg) for leg in conversation.legs],
                "findings": path.findings,
            }
        )
        verdicts.append(path.verdict)
    return result, verdicts


def _leg(leg: Leg) -> dict[str, Any]:
    record: FlowRecord = leg.record
    return {
        "interfaceId": leg.interface_id,
        "interfaceKind": leg.interface_kind,
        "role": leg.role,
        "direction": leg.direction,
        "srcaddr": record.srcaddr,
        "dstaddr": record.dstaddr,
        "pktSrcaddr": record.pkt_srcaddr,
        "pktDstaddr": record.pkt_dstaddr,
        "srcport": record.srcport,
        "dstport": record.dstport,
        "protocol": record.protocol,
        "bytes": record.bytes,
        "packets": record.packets,
        "start": format_time(record.start),
        "end": format_time(record.end),
        "action": record.action,
        "rejectReason": record.reject_reason,
    }


# -- the table ---------------------------------------------------------------------------------------
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_COLUMNS = (
    "START",
    "INTERFACE",
    "KIND",
    "ROLE",
    "DIR",
    "SRCADDR",
    "DSTADDR",
    "PKT-SRC",
    "PKT-DST",
    "SPORT",
    "DPORT",
    "BYTES",
    "PKTS",
    "ACTION",
    "FLAGS",
    "REASON",
)


def render_table(result: TraceResult) -> str:
    document = result.document
    subject, window = document["subject"], document["window"]
    out = [
        f"Trace of {subject['kind']} {subject['name']} ({', '.join(subject['addresses'])}), "
        f"window {window['start'] or 'open'} .. {window['end'] or 'open'}"
    ]
    if not document["conversations"]:
        out.append("No conversation found: no flow-log record names these addresses in the window.")
    shown = zip(document["conversations"], result.verdicts, result.tcp_flags, strict=True)
    for conversation, verdict, flags in shown:
        protocol = conversation["protocol"]
        proto = PROTOCOLS.get(protocol, str(protocol)) if protocol is not None else "?"
        port = conversation["remotePort"] if conversation["remotePort"] is not None else "?"
        holder = conversation["holder"]
        held = f"{holder['namespace']}/{holder['name']}" if holder["namespace"] else holder["name"]
        out += [
            "",
            f"{conversation['inside']} -> {conversation['remote'] or '?'}:{port}/{proto}  "
            f"(held by {holder['kind']} {held})",
            f"  {verdict}",
        ]
        for translation in conversation["translations"]:
            out.append(f"  translated at the {translation['where']}: {translation['from']} -> {translation['to']}")
        rows = [_COLUMNS] + [
            (
                leg["start"][11:19],
                leg["interfaceId"] or "-",
                leg["interfaceKind"],
                leg["role"],
                leg["direction"],
                leg["srcaddr"] or "-",
                leg["dstaddr"] or "-",
                leg["pktSrcaddr"] or "-",
                leg["pktDstaddr"] or "-",
                _text(leg["srcport"]),
                _text(leg["dstport"]),
                _text(leg["bytes"]),
                _text(leg["packets"]),
                leg["action"] or "-",
                _text(tcp_flags),
                leg["rejectReason"] or "-",
            )
            for leg, tcp_flags in zip(conversation["legs"], flags, strict=True)
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        out += ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
        for finding in conversation["findings"]:
            out.append(f"  - {finding['reason']}: {finding['message']}")
        out.append(
            f"  out {human_bytes(conversation['out']['bytes'])}, back {human_bytes(conversation['back']['bytes'])}"
        )
    stats = document["stats"]
    out += [
        "",
        f"Read {stats['filesRead']} file(s) ({stats['filesSkippedByKey']} passed over by key time), "
        f"{stats['recordsRead']} record(s) ({stats['filesReadAgain']} file(s) read again): "
        f"{stats['recordsMatched']} named the addresses, {stats['malformedRecords']} malformed; "
        f"{stats['legs']} leg(s) in {stats['conversations']} conversation(s).",
    ]
    if document["warnings"]:
        out += ["", "WARNINGS", *(f"- {w['reason']}: {w['message']}" for w in document["warnings"])]
    return "\n".join(out)


def _text(value: object) -> str:
    return "-" if value is None else str(value)

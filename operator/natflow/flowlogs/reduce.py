"""Reduce NAT Gateway flow records to sums per (NAT ENI, inside address, direction, minute, destination).

Every reader (S3 text, Parquet, CloudWatch Logs) feeds records into one `Reduction`; only the
reduced rows, far fewer than the records, meet the IP map. The rules that decide which bytes a
NAT Gateway processed live here, in one place:

* only records on a NAT Gateway network interface count;
* of those, the client legs: inside address -> NAT private IP is ``out`` (bytesOut of the inside
  address), NAT private IP -> inside address is ``in``; the internet legs (NAT <-> outside) carry
  the same bytes again and are tallied for reconciliation only;
* only ACCEPT records count; REJECT bytes are reported separately;
* NODATA/SKIPDATA records are counted, not errors.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from natflow.diagnostics import Diagnostic, Diagnostics
from natflow.flowlogs._textscan import row_columns
from natflow.net import CidrSet, normalize_address

OUT = 0
IN = 1
DIRECTIONS = ("out", "in")

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class NatTopology:
    """What the reduction needs to know about the VPC: NAT ENIs, NAT private IPs, inside CIDRs."""

    natgw_by_eni: Mapping[str, str]
    eni_by_nat_ip: Mapping[str, str]
    inside: CidrSet

    def natgw_of(self, eni: str) -> str | None:
        return self.natgw_by_eni.get(eni)


@dataclass
class ReductionStats:
    """Counts of everything read, so that nothing is dropped silently."""

    records_read: int = 0
    records_counted: int = 0
    malformed_records: int = 0
    no_data_records: int = 0
    skip_data_records: int = 0
    other_interface_records: int = 0
    outside_window_records: int = 0
    rejected_records: int = 0
    rejected_bytes: int = 0
    internet_leg_records: int = 0
    internet_leg_bytes: int = 0
    unclassified_nat_records: int = 0
    unclassified_nat_bytes: int = 0
    damaged_files: int = 0  # objects with a DamagedFlowLog warning
    lost_records: int = 0  # records a damaged object claims and did not give (where it says how many)
    malformed_examples: list[str] = field(default_factory=list)

    def malformed(self, where: str, why: str) -> None:
        self.malformed_records += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append(f"{where}: {why}")

    def merge(self, other: ReductionStats) -> None:
        for name, value in vars(other).items():
            if name == "malformed_examples":
                room = MAX_EXAMPLES - len(self.malformed_examples)
                self.malformed_examples.extend(value[: max(room, 0)])
            else:
                setattr(self, name, getattr(self, name) + value)


# Reduced row key: (nat ENI, inside address, direction, minute, destination address, destination service)
RowKey = tuple[str, str, int, int, str, str]
# Reduced row value: [bytes, packets, first start, last end, records]
RowValue = list[int]

BYTES, PACKETS, FIRST_START, LAST_END, RECORDS = range(5)


class RowColumns(NamedTuple):
    """Reduced rows as columns, in the rows' order. ENIs and destinations (the service, else the
    peer) are their distinct values in the order first met and each row's code among them; the
    int64 columns are bytearrays (for numpy.frombuffer); bytes and packets stay Python ints (their
    sums may pass 64 bits)."""

    enis: list[str]
    eni_codes: bytearray
    addresses: list[str]
    directions: bytearray
    peers: list[str]
    destinations: list[str]
    destination_codes: bytearray
    bytes: list[int]
    packets: list[int]
    firsts: bytearray
    lasts: bytearray


def columns_of(rows: dict[RowKey, RowValue]) -> RowColumns:
    """`rows` as columns (compiled: one pass over the dict)."""
    return RowColumns(*row_columns(rows))


class Reduction:
    """Accumulates reduced rows from any reader. Not thread-safe: one per worker, then `merge`."""

    def __init__(self, topology: NatTopology, window: tuple[int, int] | None = None) -> None:
        self.topology = topology
        self.window = window
        self.rows: dict[RowKey, RowValue] = {}
        self.stats = ReductionStats()
        self.first_time: int | None = None
        self.last_time: int | None = None
        # Field lists of the formats that records were read with -> where each came from.
        self.formats: dict[tuple[str, ...], str] = {}

    def add(
        self,
        eni: str | None,
        srcaddr: str,
        dstaddr: str,
        pkt_srcaddr: str | None,
        pkt_dstaddr: str | None,
        src_service: str | None,
        dst_service: str | None,
        packets: int,
        nbytes: int,
        start: int,
        end: int,
        action: str | None,
    ) -> None:
        """One ACCEPT/REJECT record (NODATA/SKIPDATA are counted by the reader) on any ENI."""
        topology = self.topology
        nat_ips = topology.eni_by_nat_ip
        if eni is None:  # format lacks interface-id: a NAT private IP on either side marks NAT legs
            eni = nat_ips.get(srcaddr) or nat_ips.get(dstaddr) or None  # an empty ENI id names none
            if eni is None:
                self.stats.other_interface_records += 1
                return
        elif eni not in topology.natgw_by_eni:
            self.stats.other_interface_records += 1
            return
        window = self.window
        if window is not None and not (window[0] <= start < window[1]):
            self.stats.outside_window_records += 1
            return
        if action == "REJECT":
            self.stats.rejected_records += 1
            self.stats.rejected_bytes += nbytes
            return
        if ":" in srcaddr or ":" in dstaddr:
            srcaddr, dstaddr = normalize_address(srcaddr), normalize_address(dstaddr)
        src_is_nat = srcaddr in nat_ips
        dst_is_nat = dstaddr in nat_ips
        inside = topology.inside
        if dst_is_nat and not src_is_nat and srcaddr in inside:
            direction, address = OUT, srcaddr
            peer, service = pkt_dstaddr, dst_service
            if peer == dstaddr:
                peer = None
        elif src_is_nat and not dst_is_nat and dstaddr in inside:
            direction, address = IN, dstaddr
            peer, service = pkt_srcaddr, src_service
            if peer == srcaddr:
                peer = None
        elif src_is_nat or dst_is_nat:
            self.stats.internet_leg_records += 1
            self.stats.internet_leg_bytes += nbytes
            return
        else:
            self.stats.unclassified_nat_records += 1
            self.stats.unclassified_nat_bytes += nbytes
            return
        self.stats.records_counted += 1
        key = (eni, address, direction, start // 60, peer or "", service or "")
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [nbytes, packets, start, end, 1]
        else:
            row[BYTES] += nbytes
            row[PACKETS] += packets
            if start < row[FIRST_START]:
                row[FIRST_START] = start
            if end > row[LAST_END]:
                row[LAST_END] = end
            row[RECORDS] += 1
        if self.first_time is None or start < self.first_time:
            self.first_time = start
        if self.last_time is None or end > self.last_time:
            self.last_time = end

    def merge(self, other: Reduction) -> None:
        """Fold another reduction (e.g. from a worker process) into this one."""
        rows = self.rows
        for key, value in other.rows.items():
            row = rows.get(key)
            if row is None:
                rows[key] = list(value)
            else:
                row[BYTES] += value[BYTES]
                row[PACKETS] += value[PACKETS]
                row[FIRST_START] = min(row[FIRST_START], value[FIRST_START])
                row[LAST_END] = max(row[LAST_END], value[LAST_END])
                row[RECORDS] += value[RECORDS]
        self.stats.merge(other.stats)
        for fields, origin in other.formats.items():
            self.formats.setdefault(fields, origin)
        # As `add` keeps them: the earliest start and the latest end (an end may precede its start).
        if other.first_time is not None:
            self.first_time = other.first_time if self.first_time is None else min(self.first_time, other.first_time)
        if other.last_time is not None:
            self.last_time = other.last_time if self.last_time is None else max(self.last_time, other.last_time)


@dataclass
class ObjectReading:
    """What reading one object gave, as it crosses from a decoder process (`decoders.py`): its
    reduction without the topology, and its warnings. The rows cross as marshal bytes: a dict of
    tuples loads three times faster than a pickled one (fewer passes of the cyclic GC)."""

    rows: bytes  # marshal.dumps of a Reduction's rows
    stats: ReductionStats
    first_time: int | None
    last_time: int | None
    formats: dict[tuple[str, ...], str]
    warnings: list[Diagnostic] = field(default_factory=list)

    @classmethod
    def of(cls, part: Reduction, notes: Diagnostics) -> ObjectReading:
        return cls(marshal.dumps(part.rows), part.stats, part.first_time, part.last_time, part.formats, notes.items)

    def into(self, topology: NatTopology, window: tuple[int, int] | None) -> tuple[Reduction, Diagnostics]:
        part, notes = Reduction(topology, window), Diagnostics()
        part.rows, part.stats, part.formats = marshal.loads(self.rows), self.stats, self.formats
        part.first_time, part.last_time = self.first_time, self.last_time
        for item in self.warnings:
            notes.warn(item.reason, item.message, **item.details)
        return part, notes

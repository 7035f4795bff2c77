"""Reduce NAT Gateway flow records to sums per (NAT ENI, inside address, direction, minute, destination).

Every reader (S3 text, Parquet, CloudWatch Logs) feeds records into one `Reduction`; only the
reduced rows, far fewer than the records, meet the IP map. The rules that decide which bytes a
NAT Gateway processed live here, in one place:

* a record belongs to a regional NAT Gateway G when its ``resource-id`` is G's id, whatever its
  ``interface-id``; its row is keyed by G's id. It counts when exactly one of srcaddr/dstaddr is
  inside the VPC: inside -> outside is ``out`` (bytesOut of the inside address), outside -> inside
  is ``in``. Both ends outside is the internet side, tallied only; anything else (both inside, an
  end that is no address) is unclassified, counted per gateway and warned about, never guessed;
* otherwise only records on a (zonal) NAT Gateway network interface count, keyed by the ENI;
  of those, the client legs: inside address -> NAT private IP is ``out``, NAT private IP -> inside
  address is ``in``; the internet legs (NAT <-> outside) carry the same bytes again and are
  tallied for reconciliation only;
* only ACCEPT records count; REJECT bytes are reported separately;
* NODATA/SKIPDATA records are counted, not errors.

`nat_record_role` tells, for one record, which NAT Gateway it belongs to and what it is there.
"""

from __future__ import annotations

import marshal
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from natflow.diagnostics import Diagnostic, Diagnostics
from natflow.flowlogs._textscan import row_columns
from natflow.net import CidrSet, address_key, normalize_address

OUT = 0
IN = 1
DIRECTIONS = ("out", "in")

# What a record is on its NAT Gateway (`nat_record_role`); OUT and IN are the counted client legs.
INTERNET = 2  # the internet side: its bytes are the client legs' again
UNCLASSIFIED = 3  # on the gateway, but neither a client leg nor the internet side
ROLES = ("out", "in", "internet", "unclassified")

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class NatTopology:
    """What the reduction needs to know about the VPC: NAT ENIs, NAT private IPs, inside CIDRs."""

    natgw_by_eni: Mapping[str, str]
    eni_by_nat_ip: Mapping[str, str]
    inside: CidrSet
    # Regional NAT Gateways' ids: their records are found by resource-id, and their rows keyed by the id.
    regional: frozenset[str] = frozenset()
    # Private IPs of regional gateways' ENIs, if AWS lists any -> the gateway (for a warning only).
    regional_nat_ips: Mapping[str, str] = field(default_factory=dict)

    def natgw_of(self, eni: str) -> str | None:
        """The NAT Gateway of a row key's first member (a zonal gateway's ENI or a regional gateway's id)."""
        found = self.natgw_by_eni.get(eni)
        if found is None and eni in self.regional:
            return eni
        return found

    def only(self, keys: Collection[str]) -> NatTopology:
        """The topology of some NAT ENIs and regional gateways only: what one flow log is read for, so
        that records of a resource read through another flow log are not counted twice."""
        enis = {eni: gateway for eni, gateway in self.natgw_by_eni.items() if eni in keys}
        nat_ips = {ip: eni for ip, eni in self.eni_by_nat_ip.items() if eni in enis or (not eni and enis)}
        return NatTopology(enis, nat_ips, self.inside, self.regional & frozenset(keys), self.regional_nat_ips)

    @property
    def natgw_by_key(self) -> dict[str, str]:
        """Row key's first member -> NAT Gateway id, for every gateway (what attribution joins on)."""
        return {**self.natgw_by_eni, **{gateway: gateway for gateway in self.regional}}


@dataclass(frozen=True, slots=True)
class NatRecordRole:
    """Which NAT Gateway a record belongs to and what it is there (`nat_record_role`)."""

    nat_gateway_id: str
    key: str  # the reduced row's first member: the zonal gateway's ENI or the regional gateway's id
    regional: bool
    role: str  # one of ROLES
    address: str | None = None  # the inside address of a client leg
    peer: str | None = None  # its far end (destination out, source in), when the record tells it
    service: str | None = None  # pkt-dst-aws-service out, pkt-src-aws-service in


def _is_address(text: str) -> bool:
    return address_key(text) is not None


def regional_leg(
    inside: CidrSet, srcaddr: str, dstaddr: str, src_service: str | None, dst_service: str | None
) -> tuple[int, str | None, str | None, str | None]:
    """(role, inside address, peer, service) of a regional NAT Gateway's record (addresses normalised)."""
    if not (_is_address(srcaddr) and _is_address(dstaddr)):
        return UNCLASSIFIED, None, None, None
    src_inside, dst_inside = srcaddr in inside, dstaddr in inside
    if src_inside and not dst_inside:
        return OUT, srcaddr, dstaddr, dst_service
    if dst_inside and not src_inside:
        return IN, dstaddr, srcaddr, src_service
    if not src_inside and not dst_inside:
        return INTERNET, None, None, None
    return UNCLASSIFIED, None, None, None


def zonal_leg(
    topology: NatTopology,
    srcaddr: str,
    dstaddr: str,
    pkt_srcaddr: str | None,
    pkt_dstaddr: str | None,
    src_service: str | None,
    dst_service: str | None,
) -> tuple[int, str | None, str | None, str | None]:
    """(role, inside address, peer, service) of a record on a zonal NAT Gateway's ENI (addresses normalised)."""
    nat_ips = topology.eni_by_nat_ip
    src_is_nat = srcaddr in nat_ips
    dst_is_nat = dstaddr in nat_ips
    inside = topology.inside
    if dst_is_nat and not src_is_nat and srcaddr in inside:
        return OUT, srcaddr, (None if pkt_dstaddr == dstaddr else pkt_dstaddr), dst_service
    if src_is_nat and not dst_is_nat and dstaddr in inside:
        return IN, dstaddr, (None if pkt_srcaddr == srcaddr else pkt_srcaddr), src_service
    if src_is_nat or dst_is_nat:
        return INTERNET, None, None, None
    return UNCLASSIFIED, None, None, None


def nat_record_key(
    topology: NatTopology, eni: str | None, resource: str | None, srcaddr: str, dstaddr: str
) -> str | None:
    """The row key's first member of a record (regional gateway id, or NAT ENI); None: not a NAT record.

    Without interface-id in the format (`eni` None) a NAT private IP on either side names the ENI."""
    if resource is not None and resource in topology.regional:
        return resource
    if eni is None:
        nat_ips = topology.eni_by_nat_ip
        return nat_ips.get(srcaddr) or nat_ips.get(dstaddr) or None  # an empty ENI id names none
    return eni if eni in topology.natgw_by_eni else None


def nat_record_role(
    topology: NatTopology,
    eni: str | None,
    resource: str | None,
    srcaddr: str,
    dstaddr: str,
    pkt_srcaddr: str | None = None,
    pkt_dstaddr: str | None = None,
    src_service: str | None = None,
    dst_service: str | None = None,
) -> NatRecordRole | None:
    """Which NAT Gateway a record belongs to and its role there, by the rules `Reduction.add` counts
    with (before the window and ACTION tests); None when the record is on no NAT Gateway.
    '-' (missing) is given as None, except for the addresses, given as they are written."""
    if ":" in srcaddr or ":" in dstaddr:
        srcaddr, dstaddr = normalize_address(srcaddr), normalize_address(dstaddr)
    key = nat_record_key(topology, eni, resource, srcaddr, dstaddr)
    if key is None:
        return None
    regional = key in topology.regional
    if regional:
        role, address, peer, service = regional_leg(topology.inside, srcaddr, dstaddr, src_service, dst_service)
    else:
        role, address, peer, service = zonal_leg(
            topology, srcaddr, dstaddr, pkt_srcaddr, pkt_dstaddr, src_service, dst_service
        )
    gateway = topology.natgw_of(key)
    assert gateway is not None  # a key names a gateway
    return NatRecordRole(gateway, key, regional, ROLES[role], address, peer, service)


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
    # row key's first member (NAT ENI or regional gateway id) -> [unclassified records, their bytes]
    unclassified_by_key: dict[str, list[int]] = field(default_factory=dict)

    def malformed(self, where: str, why: str) -> None:
        self.malformed_records += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append(f"{where}: {why}")

    def unclassified(self, key: str, records: int, nbytes: int) -> None:
        self.unclassified_nat_records += records
        self.unclassified_nat_bytes += nbytes
        known = self.unclassified_by_key.get(key)
        if known is None:
            self.unclassified_by_key[key] = [records, nbytes]
        else:
            known[0] += records
            known[1] += nbytes

    def merge(self, other: ReductionStats) -> None:
        for name, value in vars(other).items():
            if name == "malformed_examples":
                room = MAX_EXAMPLES - len(self.malformed_examples)
                self.malformed_examples.extend(value[: max(room, 0)])
            elif name == "unclassified_by_key":
                for key, (records, nbytes) in value.items():
                    known = self.unclassified_by_key.setdefault(key, [0, 0])
                    known[0] += records
                    known[1] += nbytes
            else:
                setattr(self, name, getattr(self, name) + value)


# Reduced row key: (NAT ENI or regional NAT Gateway id, inside address, direction, minute, destination
# address, destination service)
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
        resource: str | None = None,
    ) -> None:
        """One ACCEPT/REJECT record (NODATA/SKIPDATA are counted by the reader) on any ENI;
        `resource` is its resource-id (None when '-' or not in the format)."""
        topology = self.topology
        key = nat_record_key(topology, eni, resource, srcaddr, dstaddr)
        if key is None:
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
        if key in topology.regional:
            direction, address, peer, service = regional_leg(
                topology.inside, srcaddr, dstaddr, src_service, dst_service
            )
        else:
            direction, address, peer, service = zonal_leg(
                topology, srcaddr, dstaddr, pkt_srcaddr, pkt_dstaddr, src_service, dst_service
            )
        if direction == INTERNET:
            self.stats.internet_leg_records += 1
            self.stats.internet_leg_bytes += nbytes
            return
        if direction == UNCLASSIFIED or address is None:
            self.stats.unclassified(key, 1, nbytes)
            return
        self.stats.records_counted += 1
        row_key = (key, address, direction, start // 60, peer or "", service or "")
        row = self.rows.get(row_key)
        if row is None:
            self.rows[row_key] = [nbytes, packets, start, end, 1]
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
        """Fold another reduction (one object's, a decoder's, a query's) into this one. Its rows are
        taken, not copied: `other` is not used afterwards. Objects of other minutes share few keys, so
        only the shared ones are folded one by one, into the larger of the two dicts."""
        rows, taken = self.rows, other.rows
        if len(taken) > len(rows):
            rows, taken = taken, rows
            self.rows = rows
        other.rows = {}
        for key in taken.keys() & rows.keys():
            row, value = rows[key], taken.pop(key)
            row[BYTES] += value[BYTES]
            row[PACKETS] += value[PACKETS]
            row[FIRST_START] = min(row[FIRST_START], value[FIRST_START])
            row[LAST_END] = max(row[LAST_END], value[LAST_END])
            row[RECORDS] += value[RECORDS]
        rows.update(taken)
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

    def notes(self) -> Diagnostics:
        notes = Diagnostics()
        for item in self.warnings:
            notes.warn(item.reason, item.message, **item.details)
        return notes

    def finish(self, into: Reduction) -> None:
        """Fold the reduction into `into` (a `vectorised.BulkRead`): its rows are loaded here, by the
        thread that folds, not by the one that waits for the next object's decoder."""
        part = Reduction(into.topology, into.window)
        part.rows, part.stats, part.formats = marshal.loads(self.rows), self.stats, self.formats
        part.first_time, part.last_time = self.first_time, self.last_time
        into.merge(part)

    def into(self, topology: NatTopology, window: tuple[int, int] | None) -> tuple[Reduction, Diagnostics]:
        part = Reduction(topology, window)
        self.finish(part)
        return part, self.notes()

"""Parquet flow logs and bulk reduction with polars: the reference readers' result, in bulk.

`FrameReducer` reduces frames of records (the used fields, as text or integers) exactly as
`readers.add_parts` and `Reduction.add` would; `read_parquet` feeds it the used columns of a Parquet
object, keeping in the scan the rows on a NAT ENI or with NODATA/SKIPDATA. A slice of rows that the
reducer refuses (a malformed record, sums that could overflow 64 bits) goes through
`readers.add_rows`; a file with columns of other types than strings and integers goes whole to the
reference reader (`NeedsReference`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import ClassVar

import polars as pl
import pyarrow as pa

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import USED_FIELDS, LogFormat, canonical_name
from natflow.flowlogs.readers import FormatChoices, Layout, NeedsReference, Where, add_rows
from natflow.flowlogs.reduce import IN, OUT, NatTopology, Reduction, ReductionStats, RowKey, RowValue
from natflow.flowlogs.sources import FlowLogFile
from natflow.net import CidrSet, address_key, normalize_address
from natflow.timeutil import MAX_SECONDS

# Parquet rows per slice (the unit handed to the reference when a record is malformed): polars keeps
# only the picked rows of a slice, so its size costs little memory; fewer slices, fewer reductions.
PARQUET_SLICE_ROWS = 1 << 20
# Reduced rows kept as polars frames before they are re-aggregated (then, once they double).
COMPACT_ROWS = 1 << 16

_INT64_LIMIT = 1 << 63
_NUMBER_FIELDS = ("packets", "bytes", "start", "end")
_GROUP_KEY = ("eni", "address", "direction", "minute", "peer", "service")  # reduce.RowKey
_ROW_VALUE = ("bytes", "packets", "first", "last", "records")  # reduce.RowValue
_SUMS = (
    pl.col("bytes").sum(),
    pl.col("packets").sum(),
    pl.col("first").min(),
    pl.col("last").max(),
    pl.col("records").sum(),
)


def add_rows_frame(reduction: Reduction, grouped: pl.DataFrame | None) -> None:
    """Merge reduced rows (a frame of `_GROUP_KEY` and `_ROW_VALUE` columns) into `reduction.rows`."""
    if grouped is None or grouped.is_empty():
        return
    keys = zip(*(grouped[name].to_list() for name in _GROUP_KEY), strict=True)
    values = map(list, zip(*(grouped[name].to_list() for name in _ROW_VALUE), strict=True))
    rows: dict[RowKey, RowValue] = dict(zip(keys, values, strict=True))
    if not reduction.rows:  # nothing to add them to (the merge would copy every row)
        reduction.rows = rows
        return
    done = Reduction(reduction.topology, reduction.window)
    done.rows = rows
    reduction.merge(done)


# -- S3 Parquet ------------------------------------------------------------------------------------


def read_parquet(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> FrameReducer:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file.path)
    except pa.ArrowException as error:  # damaged: the reference reader says how
        raise NeedsReference from error
    schema = parquet.schema_arrow
    columns = {canonical_name(name): name for name in schema.names}  # as readers.read_parquet names them
    fmt = LogFormat(tuple(columns), f"{file.path} columns")
    part.formats.setdefault(fmt.fields, fmt.origin)
    used = [f for f in USED_FIELDS if f in columns]
    if not used:  # frames without columns would have no rows to count
        raise NeedsReference
    for name in used:
        kind = schema.field(columns[name]).type
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
        integer = pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
        if not (text or (integer and name in _NUMBER_FIELDS)):
            raise NeedsReference  # str() of other types is the reference's business
    # The reference validates only the used fields, so a layout of those alone reads the same.
    layout = Layout(LogFormat(tuple(used), fmt.origin))
    bulk = FrameReducer(used, part.topology, part.window, file.key_time)
    scan = pl.scan_parquet(file.path).select(pl.col(columns[f]).alias(f) for f in used)
    strings = [f for f in used if not pa.types.is_integer(schema.field(columns[f]).type)]
    # Parquet nulls (and the text "None") are what '-' is in a text record.
    as_text = [
        pl.when(pl.col(f).is_null() | (pl.col(f) == "None")).then(pl.lit("-")).otherwise(f).alias(f) for f in strings
    ]
    selected = _parquet_selection(used, part.topology)
    where = Where(file.path)
    rows = parquet.metadata.num_rows
    for offset in range(0, rows, PARQUET_SLICE_ROWS):
        frame = scan.slice(offset, PARQUET_SLICE_ROWS).filter(selected).with_columns(as_text).collect()
        if not bulk.add(frame, min(PARQUET_SLICE_ROWS, rows - offset) - frame.height):
            where.line = offset
            full = scan.slice(offset, PARQUET_SLICE_ROWS).collect()
            add_rows([full[f].to_list() for f in used], layout, part, where, file.key_time)
    return bulk


def _parquet_selection(used: Sequence[str], topology: NatTopology) -> pl.Expr:
    """Rows on a NAT ENI or with NODATA/SKIPDATA, as their text reads; the others are other interfaces."""
    if "interface-id" not in used:  # the ENI comes from the addresses, after every number is checked
        return pl.lit(True)

    def text_in(name: str, values: Iterable[str]) -> pl.Expr:
        """The column's text (null and "None" read as '-') is one of `values`."""
        values = set(values)
        column = pl.col(name)
        found = column.is_in(pl.Series(sorted(values - {"None"}), dtype=pl.String).implode())
        return found | (column.is_null() | (column == "None")) & pl.lit("-" in values)

    selected = text_in("interface-id", topology.natgw_by_eni)
    return selected | text_in("log-status", ("NODATA", "SKIPDATA")) if "log-status" in used else selected


# -- the reduction, in bulk ------------------------------------------------------------------------


def _number(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(value, is missing, is valid) of a number field, as `readers._number` reads its text."""
    column = pl.col(name)
    if dtype == pl.String:
        missing = column == "-"
        value = column.cast(pl.Int64, strict=False)  # also takes a sign, which str.isdigit() does not
        signed = column.str.starts_with("+") | column.str.starts_with("-")
        return pl.when(missing).then(0).otherwise(value), missing, missing | (value.is_not_null() & ~signed)
    missing = column.is_null()  # a Parquet integer: null is '-', a negative value is not all digits
    value = column.cast(pl.Int64)
    return value.fill_null(0), missing, missing | (value >= 0)


def _flow_seconds(value: pl.Expr) -> pl.Expr:
    """timeutil.flow_seconds, column-wise."""
    return pl.when(value > MAX_SECONDS).then(value // 1000).otherwise(value)


class FrameReducer:
    """Adds frames of one file's records to a Reduction exactly as `add_parts` and `Reduction.add` would.

    Frames hold the used fields present in the format, named by field: strings with '-' for a
    missing value, or integers with nulls for number fields. Counters and reduced rows are collected
    here and folded into the file's Reduction by `finish`.
    """

    def __init__(
        self,
        fields: Sequence[str],
        topology: NatTopology,
        window: tuple[int, int] | None,
        fallback_time: tuple[int, int] | None,
    ) -> None:
        self.has_eni = "interface-id" in fields
        self.absent = [f for f in USED_FIELDS if f not in fields and f != "interface-id"]
        self.nat_enis = pl.Series(list(topology.natgw_by_eni), dtype=pl.String).implode()
        self.nat_ips = pl.Series(list(topology.eni_by_nat_ip), dtype=pl.String).implode()
        # `nat_ips.get(src) or nat_ips.get(dst)`: an empty ENI id counts as not found.
        self.eni_by_nat_ip = {ip: eni for ip, eni in topology.eni_by_nat_ip.items() if eni}
        self.addresses = AddressMemo.of(topology.inside)
        self.window = window
        self.fallback_time = fallback_time
        self.stats = ReductionStats()
        self.rows = ReducedRows()
        self.first_time: int | None = None
        self.last_time: int | None = None

    def add(self, frame: pl.DataFrame, unselected: int = 0) -> bool:
        """Reduce `frame`, plus `unselected` records left out as other interfaces; False (and nothing
        added) when they must go through the reference path."""
        frame = frame.with_columns(pl.lit("-").alias(f) for f in self.absent)
        addresses = pl.concat([frame["srcaddr"], frame["dstaddr"]]).unique()
        canonical, inside = self.addresses.learn(addresses)
        records = frame.lazy().with_columns(**self._record_columns(frame.schema, canonical, inside))
        computed = records.with_columns(**self._legs()).collect().lazy()
        totals, grouped = pl.collect_all([computed.select(**self._totals()), self._rows(computed)])
        total = totals.row(0, named=True)
        if total["unsure"] or total["malformed"] or self._may_overflow(total):
            return False
        stats = self.stats
        stats.records_read += frame.height + unselected
        stats.no_data_records += total["no_data"]
        stats.skip_data_records += total["skip_data"]
        stats.other_interface_records += total["other"] + unselected + total["not_found"]
        stats.outside_window_records += total["status_outside_window"] + total["outside_window"]
        stats.rejected_records += total["rejected"]
        stats.rejected_bytes += total["rejected_bytes"]
        stats.internet_leg_records += total["internet"]
        stats.internet_leg_bytes += total["internet_bytes"]
        stats.unclassified_nat_records += total["unclassified"]
        stats.unclassified_nat_bytes += total["unclassified_bytes"]
        stats.records_counted += total["counted"]
        if grouped.is_empty():
            return True
        first, last = total["first"], total["last"]
        self.first_time = first if self.first_time is None else min(self.first_time, first)
        self.last_time = last if self.last_time is None else max(self.last_time, last)
        self.rows.add(grouped)
        return True

    def _record_columns(self, schema: pl.Schema, canonical: dict[str, str], inside: pl.Series) -> dict[str, pl.Expr]:
        """Per record, what `add_parts` and `Reduction.add` decide, as columns."""
        status = pl.col("log-status")
        no_data, skip_data = status == "NODATA", status == "SKIPDATA"
        data = ~(no_data | skip_data)
        status_outside, unsure = self._status_outside_window(schema["start"])
        on_nat = pl.col("interface-id").is_in(self.nat_enis) if self.has_eni else pl.lit(True)
        numbers = {name: _number(name, schema[name]) for name in _NUMBER_FIELDS}
        (start, start_missing, start_ok), (end, end_missing, end_ok) = numbers["start"], numbers["end"]
        no_time = start_missing & end_missing
        malformed = ~(numbers["packets"][2] & numbers["bytes"][2]) | (~no_time & ~(start_ok & end_ok))
        if self.fallback_time is None:
            malformed = malformed | no_time
            first, last = pl.lit(None, pl.Int64), pl.lit(None, pl.Int64)
        else:
            first, last = pl.lit(self.fallback_time[0]), pl.lit(self.fallback_time[1])
        start_seconds, end_seconds = _flow_seconds(start), _flow_seconds(end)
        record = data & on_nat  # what reaches Reduction.add
        if self.has_eni:
            eni = pl.col("interface-id")
        else:  # Reduction.add: a NAT private IP on either side names the ENI
            src_eni = pl.col("srcaddr").replace_strict(self.eni_by_nat_ip, default=None, return_dtype=pl.String)
            dst_eni = pl.col("dstaddr").replace_strict(self.eni_by_nat_ip, default=None, return_dtype=pl.String)
            eni = pl.coalesce(src_eni, dst_eni)
        src, dst = (pl.col(name).replace(canonical) if canonical else pl.col(name) for name in ("srcaddr", "dstaddr"))
        src_nat, dst_nat = src.is_in(self.nat_ips), dst.is_in(self.nat_ips)
        # Inside tested on the text as read: the canonical text of an address is inside exactly when it is.
        outbound = dst_nat & ~src_nat & pl.col("srcaddr").is_in(inside)
        inbound = src_nat & ~dst_nat & pl.col("dstaddr").is_in(inside)
        return {
            "eni": eni,
            "src": src,
            "dst": dst,
            "nat_leg": src_nat | dst_nat,
            "outbound": outbound,
            "inbound": inbound,
            "status_outside": status_outside,
            "unsure": ~data & unsure,
            "no_data": no_data,
            "skip_data": skip_data,
            "other": data & ~on_nat,
            "record": record,
            "malformed": record & malformed,
            "packets": numbers["packets"][0],
            "bytes": numbers["bytes"][0],
            "start": pl.when(no_time).then(first).when(start_missing).then(end_seconds).otherwise(start_seconds),
            "end": pl.when(no_time).then(last).when(end_missing).then(start_seconds).otherwise(end_seconds),
        }

    def _legs(self) -> dict[str, pl.Expr]:
        """Reduction.add from the ENI test on: the fate of each record, from the record columns."""
        record = pl.col("record")
        found = record & pl.col("eni").is_not_null()
        start = pl.col("start")
        kept = found & ((start >= self.window[0]) & (start < self.window[1]) if self.window else pl.lit(True))
        accepted = kept & (pl.col("action") != "REJECT").fill_null(True)
        out, into = accepted & pl.col("outbound"), accepted & pl.col("inbound")
        return {"found": found, "kept": kept, "accepted": accepted, "out": out, "counted": out | into}

    @staticmethod
    def _totals() -> dict[str, pl.Expr]:
        record, found, kept, accepted, counted, status_outside, nat_leg, nbytes = (
            pl.col(name)
            for name in ("record", "found", "kept", "accepted", "counted", "status_outside", "nat_leg", "bytes")
        )
        return {
            "unsure": pl.col("unsure").sum(),
            "malformed": pl.col("malformed").sum(),
            "records": record.sum(),
            "largest_bytes": nbytes.filter(record).max(),
            "largest_packets": pl.col("packets").filter(record).max(),
            "no_data": (pl.col("no_data") & ~status_outside).sum(),
            "skip_data": (pl.col("skip_data") & ~status_outside).sum(),
            "status_outside_window": ((pl.col("no_data") | pl.col("skip_data")) & status_outside).sum(),
            "other": pl.col("other").sum(),
            "not_found": (record & ~found).sum(),
            "outside_window": (found & ~kept).sum(),
            "rejected": (kept & ~accepted).sum(),
            "rejected_bytes": nbytes.filter(kept & ~accepted).sum(),
            "internet": (accepted & ~counted & nat_leg).sum(),
            "internet_bytes": nbytes.filter(accepted & ~counted & nat_leg).sum(),
            "unclassified": (accepted & ~nat_leg).sum(),
            "unclassified_bytes": nbytes.filter(accepted & ~nat_leg).sum(),
            "counted": counted.sum(),
            "first": pl.col("start").filter(counted).min(),
            "last": pl.col("end").filter(counted).max(),
        }

    @staticmethod
    def _rows(computed: pl.LazyFrame) -> pl.LazyFrame:
        """The client legs, reduced to rows keyed as `reduce.RowKey`."""
        going_out = pl.col("out")
        peer = pl.when(going_out).then(pl.col("pkt-dstaddr")).otherwise(pl.col("pkt-srcaddr"))
        far_end = pl.when(going_out).then(pl.col("dst")).otherwise(pl.col("src"))
        service = pl.when(going_out).then(pl.col("pkt-dst-aws-service")).otherwise(pl.col("pkt-src-aws-service"))
        return (
            computed.filter("counted")
            .select(
                "eni",
                address=pl.when(going_out).then(pl.col("src")).otherwise(pl.col("dst")),
                direction=pl.when(going_out).then(pl.lit(OUT)).otherwise(pl.lit(IN)),
                minute=pl.col("start") // 60,
                # `peer or ""`: '-' and the leg's own other end read as no peer
                peer=pl.when((peer == "-") | (peer == far_end)).then(pl.lit("")).otherwise(peer),
                service=pl.when(service == "-").then(pl.lit("")).otherwise(service),
                bytes="bytes",
                packets="packets",
                first="start",
                last="end",
                records=pl.lit(1, pl.Int64),
            )
            .group_by(_GROUP_KEY)
            .agg(_SUMS)
        )

    def _status_outside_window(self, start_type: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
        """(outside the window, start unreadable) for NODATA/SKIPDATA records, as `_count_status` tests them."""
        if self.window is None:
            return pl.lit(False), pl.lit(False)
        value, missing, valid = _number("start", start_type)
        # Not digits: the key time's start; '+5' or Parquet's '-5' would be that too, but rare text that
        # polars and str.isdigit() may read differently (e.g. non-ASCII digits) is left to the reference.
        fallback_start = pl.lit(self.fallback_time[0] if self.fallback_time else None, pl.Int64)
        start = pl.when(missing).then(fallback_start).otherwise(_flow_seconds(value))
        inside_window = (start >= self.window[0]) & (start < self.window[1])
        return (start.is_not_null() & ~inside_window).fill_null(False), ~valid

    @staticmethod
    def _may_overflow(total: dict[str, int | None]) -> bool:
        """A 64-bit sum could overflow where Python ints would not."""
        records = total["records"] or 0
        return any((total[name] or 0) * records >= _INT64_LIMIT for name in ("largest_bytes", "largest_packets"))

    def grouped(self) -> pl.DataFrame | None:
        """The reduced rows, one per key (None when there are none)."""
        return self.rows.grouped()

    def finish(self, into: Reduction) -> None:
        """Fold the counters and times that the frames added into `into` (the rows are `grouped()`)."""
        done = Reduction(into.topology, into.window)
        done.stats = self.stats
        done.first_time, done.last_time = self.first_time, self.last_time
        into.merge(done)


class ReducedRows:
    """Frames of reduced rows, re-aggregated whenever they double: memory follows the keys, not the records."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.height = 0
        self.compacted = 0  # the height after the last re-aggregation

    def add(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)
        self.height += frame.height
        if self.height > max(2 * self.compacted, COMPACT_ROWS):
            self.frames = [regrouped(self.frames)]
            self.height = self.compacted = self.frames[0].height

    def grouped(self) -> pl.DataFrame | None:
        """One row per key (None when there are none)."""
        return regrouped(self.frames) if self.frames else None


def regrouped(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Reduced rows from several frames, one per key."""
    return pl.concat(frames).group_by(_GROUP_KEY).agg(_SUMS)


class AddressMemo:
    """Address text -> (canonical text, inside the VPC), learnt once per process for a set of CIDRs.

    Not CidrSet's own memo: that one would travel back from worker processes with the topology.
    """

    _by_set: ClassVar[weakref.WeakKeyDictionary[CidrSet, AddressMemo]] = weakref.WeakKeyDictionary()
    LIMIT = 1 << 20  # distinct addresses kept (many internet peers): then it starts again

    def __init__(self, inside: CidrSet) -> None:
        self.inside = inside
        self.known: set[str] = set()
        self.inside_addresses = pl.Series(dtype=pl.String)
        self.canonical: dict[str, str] = {}  # only the addresses written otherwise (IPv6)

    @classmethod
    def of(cls, inside: CidrSet) -> AddressMemo:
        memo = cls._by_set.get(inside)
        if memo is None or len(memo.known) > cls.LIMIT:
            memo = cls._by_set[inside] = cls(inside)
        return memo

    def learn(self, addresses: pl.Series) -> tuple[dict[str, str], pl.Series]:
        """Canonical texts that differ (for `replace`) and the inside addresses (for `is_in`), `addresses` known."""
        new = [address for address in addresses.to_list() if address not in self.known]
        if new:
            found_inside = []
            for address in new:
                key = address_key(address)
                if key is not None and self.inside.contains_key(key):
                    found_inside.append(address)
                if ":" in address and normalize_address(address) != address:
                    self.canonical[address] = normalize_address(address)
            self.known.update(new)
            self.inside_addresses = pl.concat([self.inside_addresses, pl.Series(found_inside, dtype=pl.String)])
        return self.canonical, self.inside_addresses.implode()

"""Parquet flow logs reduced in bulk with polars: the reference reader's result, faster.

`read_parquet` scans the used columns of a Parquet object a slice of rows at a time, keeping in the
scan only the rows on a NAT ENI or with NODATA/SKIPDATA (the others are counted as other
interfaces); `read_parquet_objects` scans many small objects of one layout as one. `FrameReducer`
reduces the rows kept exactly as `readers.add_rows` would: Parquet nulls, '-' and "None" read as
'-', every counter, first/last times, windows, files without interface-id. A slice that it refuses
(a malformed record, sums that could overflow 64 bits) goes through `readers.add_rows`; a file with
columns of other types than strings and integers, or damaged, goes whole to the reference reader
(`NeedsReference`). `add_rows_frame` turns the reduced rows into the `Reduction`'s dict.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Iterable, Sequence
from typing import ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from natflow.collector import no_cycle_collection
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import USED_FIELDS, LogFormat, canonical_name
from natflow.flowlogs.readers import FormatChoices, Layout, NeedsReference, Where, add_rows
from natflow.flowlogs.reduce import (
    BYTES,
    FIRST_START,
    IN,
    LAST_END,
    OUT,
    PACKETS,
    RECORDS,
    NatTopology,
    Reduction,
    ReductionStats,
    RowKey,
    RowValue,
)
from natflow.flowlogs.sources import FlowLogFile
from natflow.net import CidrSet, address_key, normalize_address
from natflow.timeutil import MAX_SECONDS

# Parquet rows per slice (also the unit handed to the reference when a record is malformed). Each
# slice costs ~10 ms however small; polars' working memory follows its size (~50 MB at this size).
PARQUET_SLICE_ROWS = 1 << 18
# Rows of a refused slice converted to Python values at a time for the reference code.
_REFERENCE_BATCH_ROWS = 1 << 16
# Reduced rows kept as polars frames before they are re-aggregated (then, once they double).
COMPACT_ROWS = 1 << 16

_INT64_LIMIT = 1 << 63
_NUMBER_FIELDS = ("packets", "bytes", "start", "end")
_GROUP_KEY = ("eni", "address", "direction", "minute", "peer", "service")  # reduce.RowKey
_ROW_VALUE = ("bytes", "packets", "first", "last", "records")  # reduce.RowValue
_TEXT_KEYS = ("eni", "address", "peer", "service")
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
    columns = [_shared(grouped[name]) if name in _TEXT_KEYS else grouped[name].to_list() for name in _GROUP_KEY]
    keys = zip(*columns, strict=True)
    values = map(list, zip(*(grouped[name].to_list() for name in _ROW_VALUE), strict=True))
    with no_cycle_collection():
        rows: dict[RowKey, RowValue] = dict(zip(keys, values, strict=True))
    held = reduction.rows
    if not held:
        reduction.rows = rows
        return
    # Keys already held (e.g. an earlier file of the same minutes) are merged as Reduction.merge
    # does; the others are taken as they are, without a Python step per row.
    for key in rows.keys() & held.keys():
        row, earlier = rows[key], held[key]
        row[BYTES] += earlier[BYTES]
        row[PACKETS] += earlier[PACKETS]
        row[FIRST_START] = min(row[FIRST_START], earlier[FIRST_START])
        row[LAST_END] = max(row[LAST_END], earlier[LAST_END])
        row[RECORDS] += earlier[RECORDS]
    held.update(rows)


def _shared(texts: pl.Series) -> list[str]:
    """The column's texts (no nulls), one str object per distinct text rather than one per row."""
    distinct = texts.unique().sort()
    objects: list[str] = np.array(distinct.to_list(), dtype=object)[distinct.search_sorted(texts).to_numpy()].tolist()
    return objects


# -- S3 Parquet ------------------------------------------------------------------------------------


def read_parquet(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> FrameReducer:
    """One Parquet object into `part` as `readers.read_parquet` would, but for the rows that the
    returned reducer holds (`finish` and `grouped` give them)."""
    return read_parquet_objects([file], choices, part, diagnostics)


def read_parquet_objects(
    files: Sequence[FlowLogFile], choices: FormatChoices, part: Reduction, diagnostics: Diagnostics
) -> FrameReducer:
    """Parquet objects (at least one) with the same columns and key time, read as `read_parquet`
    reads each in turn.

    They are scanned as one: many small objects cost one scan and one reduction per
    `PARQUET_SLICE_ROWS` rows instead of each their own (~15 ms). NeedsReference when they differ
    or one is damaged: then read them one at a time.
    """
    objects = [_ParquetObject(file) for file in files]
    first = objects[0]
    if any(o.schema != first.schema or o.file.key_time != first.file.key_time for o in objects[1:]):
        raise NeedsReference
    for o in objects:
        part.formats.setdefault(o.format.fields, o.format.origin)
    bulk = FrameReducer(first.used, part.topology, part.window, first.file.key_time)
    scan = first.scan([o.file.path for o in objects])
    selected = bulk.selection()
    rows = sum(o.rows for o in objects)
    for offset in range(0, rows, PARQUET_SLICE_ROWS):
        size = min(PARQUET_SLICE_ROWS, rows - offset)
        frame = scan.slice(offset, size).filter(selected).collect()
        if not bulk.add(frame, size - frame.height):
            _add_reference(objects, offset, offset + size, part)
    return bulk


class _ParquetObject:
    """A Parquet object's columns, as its footer tells them; NeedsReference when the bulk path cannot read it."""

    def __init__(self, file: FlowLogFile) -> None:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(file.path)
        except pa.ArrowException as error:  # damaged: the reference reader says how
            raise NeedsReference from error
        self.file = file
        self.schema = parquet.schema_arrow
        self.rows = parquet.metadata.num_rows
        self.columns = {canonical_name(name): name for name in self.schema.names}  # as readers.read_parquet
        self.format = LogFormat(tuple(self.columns), f"{file.path} columns")
        self.used = [f for f in USED_FIELDS if f in self.columns]
        if not self.used:  # frames without columns would have no rows to count
            raise NeedsReference
        for name in self.used:
            kind = self.schema.field(self.columns[name]).type
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
            integer = pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
            if not (text or (integer and name in _NUMBER_FIELDS)):
                raise NeedsReference  # str() of other types is the reference's business

    def scan(self, paths: str | list[str]) -> pl.LazyFrame:
        """The used columns of objects laid out like this one, named by field."""
        return pl.scan_parquet(paths).select(pl.col(self.columns[f]).alias(f) for f in self.used)


def _add_reference(objects: Sequence[_ParquetObject], begin: int, end: int, part: Reduction) -> None:
    """Rows `begin` to `end` of the objects one after another, through the reference code."""
    object_start = 0
    for o in objects:
        first, last = max(begin, object_start) - object_start, min(end, object_start + o.rows) - object_start
        object_start += o.rows
        if first >= last:
            continue
        # The reference validates only the used fields, so a layout of those alone reads the same.
        layout = Layout(LogFormat(tuple(o.used), o.format.origin))
        scan = o.scan(o.file.path)
        where = Where(o.file.path)
        where.line = first
        for start in range(first, last, _REFERENCE_BATCH_ROWS):  # Python values cost memory
            batch = scan.slice(start, min(_REFERENCE_BATCH_ROWS, last - start)).collect()
            add_rows([batch[f].to_list() for f in o.used], layout, part, where, o.file.key_time)


# -- the reduction, in bulk ------------------------------------------------------------------------

_MISSING_TEXTS = ("-", "None")  # with null: what the reference reads as '-'
_FEW_VALUES = 8  # up to this many short strings, a column is compared with each rather than hashed
_INLINE_BYTES = 12  # what a string view holds itself; longer strings are compared in their buffers


def _missing(column: pl.Expr) -> pl.Expr:
    """A string value reads as '-' in the reference: null, or the text '-' or "None"."""
    return column.is_null() | _one_of(column, _MISSING_TEXTS)


def _one_of(column: pl.Expr, values: Collection[str]) -> pl.Expr:
    """The string column is one of `values` (False for null)."""
    if len(values) <= _FEW_VALUES and all(len(value.encode()) <= _INLINE_BYTES for value in values):
        # Short strings sit whole in their views: a few comparisons beat hashing every value.
        return pl.any_horizontal([column == value for value in values] or [pl.lit(False)]).fill_null(False)
    return column.is_in(pl.Series(list(values), dtype=pl.String).implode()).fill_null(False)


def _text_in(column: pl.Expr, values: Iterable[str]) -> pl.Expr:
    """The column's text, as the reference reads it ('-' for null and "None"), is one of `values`."""
    values = set(values)
    found = _one_of(column, sorted(values - {"None"}))
    return found | column.is_null() | (column == "None") if "-" in values else found


def _number(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(value, is missing, is valid) of a number field, as `readers._number` reads its text."""
    column = pl.col(name)
    if dtype == pl.String:
        missing = _missing(column)
        value = column.cast(pl.Int64, strict=False)  # also takes a sign, which str.isdigit() does not
        signed = column.str.starts_with("+") | column.str.starts_with("-")
        return pl.when(missing).then(0).otherwise(value), missing, missing | (value.is_not_null() & ~signed)
    missing = column.is_null()  # a Parquet integer: a negative value is not all digits
    value = column.cast(pl.Int64)
    return value.fill_null(0), missing, missing | (value >= 0)


def _flow_seconds(value: pl.Expr) -> pl.Expr:
    """timeutil.flow_seconds, column-wise."""
    return pl.when(value > MAX_SECONDS).then(value // 1000).otherwise(value)


class FrameReducer:
    """Adds frames of one Parquet file's records to a Reduction exactly as `add_rows` would.

    Frames hold the used fields present in the file, named by field, as read (strings, or integers
    for number fields; null, '-' and "None" are '-'), and only the rows of `selection()`. Counters
    and reduced rows are collected here and folded into the file's Reduction by `finish`.
    """

    def __init__(
        self,
        fields: Sequence[str],
        topology: NatTopology,
        window: tuple[int, int] | None,
        fallback_time: tuple[int, int] | None,
    ) -> None:
        self.fields = list(fields)
        self.topology = topology
        # `nat_ips.get(src) or nat_ips.get(dst)`: an empty ENI id counts as not found.
        self.eni_by_nat_ip = {ip: eni for ip, eni in topology.eni_by_nat_ip.items() if eni}
        self.addresses = AddressMemo.of(topology.inside)
        self.window = window
        self.fallback_time = fallback_time
        self.stats = ReductionStats()
        self.rows = ReducedRows()
        self.first_time: int | None = None
        self.last_time: int | None = None

    def selection(self) -> pl.Expr:
        """The rows `add` takes: on a NAT ENI or NODATA/SKIPDATA; the others are other interfaces."""
        if "interface-id" not in self.fields:  # the ENI comes from the addresses, after every number is checked
            return pl.lit(True)
        selected = _text_in(pl.col("interface-id"), self.topology.natgw_by_eni)
        if "log-status" in self.fields:
            selected = selected | _text_in(pl.col("log-status"), ("NODATA", "SKIPDATA"))
        return selected

    def add(self, frame: pl.DataFrame, unselected: int = 0) -> bool:
        """Reduce `frame` (the selected rows of a slice), plus `unselected` records left out as other
        interfaces; False (and nothing added) when they must go through the reference path."""
        schema = frame.schema
        frame = frame.with_columns(pl.lit(None, pl.String).alias(f) for f in USED_FIELDS if f not in schema)
        addresses = pl.concat([frame["srcaddr"], frame["dstaddr"]]).drop_nulls().unique()
        canonical, inside = self.addresses.learn(addresses)
        records = frame.lazy().with_columns(**self._record_columns(frame.schema))
        fates = records.with_columns(**self._legs(canonical, inside)).collect()
        totals, grouped = pl.collect_all([fates.lazy().select(**self._totals()), self._rows(fates.lazy())])
        total = totals.row(0, named=True)
        if total["unsure"] or total["malformed"] or self._may_overflow(total):
            return False
        stats = self.stats
        stats.records_read += frame.height + unselected
        stats.no_data_records += total["no_data"]
        stats.skip_data_records += total["skip_data"]
        stats.other_interface_records += unselected + total["not_found"]
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

    def _record_columns(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """Per record, what `_add_parts` and `Reduction.add` decide up to the REJECT test, as columns."""
        status = pl.col("log-status")
        no_data, skip_data = (status == "NODATA").fill_null(False), (status == "SKIPDATA").fill_null(False)
        data = ~(no_data | skip_data)  # every other selected record is on a NAT ENI (or the ENI comes later)
        status_outside, unsure = self._status_outside_window(schema["start"])
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
        start = pl.when(no_time).then(first).when(start_missing).then(end_seconds).otherwise(start_seconds)
        end = pl.when(no_time).then(last).when(end_missing).then(start_seconds).otherwise(end_seconds)
        if "interface-id" in self.fields:
            eni = pl.col("interface-id")
            if "-" in self.topology.natgw_by_eni:  # null and "None" are that ENI too
                eni = pl.when(_missing(eni)).then(pl.lit("-")).otherwise(eni)
        else:  # Reduction.add: a NAT private IP on either side, as written, names the ENI
            src_eni, dst_eni = (
                self._as_text(name).replace_strict(self.eni_by_nat_ip, default=None, return_dtype=pl.String)
                for name in ("srcaddr", "dstaddr")
            )
            eni = pl.coalesce(src_eni, dst_eni)
        found = data & eni.is_not_null()
        kept = found & ((start >= self.window[0]) & (start < self.window[1]) if self.window else pl.lit(True))
        rejected = kept & (pl.col("action") == "REJECT").fill_null(False)
        return {
            "eni": eni,
            "status_outside": status_outside,
            "unsure": ~data & unsure,
            "no_data": no_data,
            "skip_data": skip_data,
            "data": data,
            "malformed": data & malformed,
            "packets": numbers["packets"][0],
            "bytes": numbers["bytes"][0],
            "start": start,
            "end": end,
            "found": found,
            "kept": kept,
            "rejected": rejected,
            "accepted": kept & ~rejected,
        }

    def _as_text(self, name: str) -> pl.Expr:
        """An address column as the reference reads it, where that matters: '-' for null and "None"
        when '-' or "None" is a NAT private IP (otherwise every missing address is just not one)."""
        column = pl.col(name)
        if not set(_MISSING_TEXTS) & set(self.topology.eni_by_nat_ip):
            return column
        return pl.when(_missing(column)).then(pl.lit("-")).otherwise(column)

    def _legs(self, canonical: dict[str, str], inside: pl.Series) -> dict[str, pl.Expr]:
        """Reduction.add after the REJECT test: which accepted records are client legs, out or in."""
        src_text, dst_text = self._as_text("srcaddr"), self._as_text("dstaddr")
        src, dst = (text.replace(canonical) if canonical else text for text in (src_text, dst_text))
        nat_ips = list(self.topology.eni_by_nat_ip)
        src_nat, dst_nat = _one_of(src, nat_ips), _one_of(dst, nat_ips)
        # Inside tested on the text as read: the canonical text of an address is inside exactly when it is.
        accepted = pl.col("accepted")
        out = accepted & dst_nat & ~src_nat & pl.col("srcaddr").is_in(inside).fill_null(False)
        into = accepted & src_nat & ~dst_nat & pl.col("dstaddr").is_in(inside).fill_null(False)
        return {"src": src, "dst": dst, "nat_leg": accepted & (src_nat | dst_nat), "out": out, "counted": out | into}

    @staticmethod
    def _totals() -> dict[str, pl.Expr]:
        data, found, kept, rejected, status_outside, nbytes = (
            pl.col(name) for name in ("data", "found", "kept", "rejected", "status_outside", "bytes")
        )
        counted, nat_leg = pl.col("counted"), pl.col("nat_leg")
        internet, unclassified = ~counted & nat_leg, pl.col("accepted") & ~nat_leg
        return {
            "unsure": pl.col("unsure").sum(),
            "malformed": pl.col("malformed").sum(),
            "records": data.sum(),
            "largest_bytes": nbytes.filter(data).max(),
            "largest_packets": pl.col("packets").filter(data).max(),
            "no_data": (pl.col("no_data") & ~status_outside).sum(),
            "skip_data": (pl.col("skip_data") & ~status_outside).sum(),
            "status_outside_window": ((pl.col("no_data") | pl.col("skip_data")) & status_outside).sum(),
            "not_found": (data & ~found).sum(),
            "outside_window": (found & ~kept).sum(),
            "rejected": rejected.sum(),
            "rejected_bytes": nbytes.filter(rejected).sum(),
            "internet": internet.sum(),
            "internet_bytes": nbytes.filter(internet).sum(),
            "unclassified": unclassified.sum(),
            "unclassified_bytes": nbytes.filter(unclassified).sum(),
            "counted": counted.sum(),
            "first": pl.col("start").filter(counted).min(),
            "last": pl.col("end").filter(counted).max(),
        }

    @staticmethod
    def _rows(fates: pl.LazyFrame) -> pl.LazyFrame:
        """The client legs, reduced to rows keyed as `reduce.RowKey`."""
        going_out = pl.col("out")
        peer = pl.when(going_out).then(pl.col("pkt-dstaddr")).otherwise(pl.col("pkt-srcaddr"))
        far_end = pl.when(going_out).then(pl.col("dst")).otherwise(pl.col("src"))
        service = pl.when(going_out).then(pl.col("pkt-dst-aws-service")).otherwise(pl.col("pkt-src-aws-service"))
        return (
            fates.filter("counted")
            .select(
                "eni",
                address=pl.when(going_out).then(pl.col("src")).otherwise(pl.col("dst")),
                direction=pl.when(going_out).then(pl.lit(OUT)).otherwise(pl.lit(IN)),
                minute=pl.col("start") // 60,
                # `peer or ""`: '-' and the leg's own other end read as no peer
                peer=pl.when(_missing(peer) | (peer == far_end)).then(pl.lit("")).otherwise(peer),
                service=pl.when(_missing(service)).then(pl.lit("")).otherwise(service),
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
        if len(self.frames) < 2:  # a frame added is one row per key already
            return self.frames[0] if self.frames else None
        return regrouped(self.frames)


def regrouped(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Reduced rows from several frames, one per key."""
    return pl.concat(frames).group_by(_GROUP_KEY).agg(_SUMS)


class AddressMemo:
    """Address text -> (canonical text, inside the VPC), learnt once per process for a set of CIDRs.

    The inside addresses are kept as a Series for `is_in`. Files are read by several threads at
    once: a lock keeps what one learns from being lost to another.
    """

    _by_set: ClassVar[weakref.WeakKeyDictionary[CidrSet, AddressMemo]] = weakref.WeakKeyDictionary()
    LIMIT = 1 << 20  # distinct addresses kept (many internet peers): then it starts again

    def __init__(self, inside: CidrSet) -> None:
        self.inside = inside
        self.known: set[str] = set()
        self.inside_addresses = pl.Series(dtype=pl.String)
        self.canonical: dict[str, str] = {}  # only the addresses written otherwise (IPv6)
        self.lock = threading.Lock()

    @classmethod
    def of(cls, inside: CidrSet) -> AddressMemo:
        memo = cls._by_set.get(inside)
        if memo is None or len(memo.known) > cls.LIMIT:
            memo = cls._by_set[inside] = cls(inside)
        return memo

    def learn(self, addresses: pl.Series) -> tuple[dict[str, str], pl.Series]:
        """Canonical texts that differ (for `replace`) and the inside addresses (for `is_in`), `addresses` known."""
        with self.lock:
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
            return dict(self.canonical), self.inside_addresses.implode()

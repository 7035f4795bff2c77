"""Vectorised reading of S3 text and Parquet flow logs: the reference readers' result, in bulk.

`readers.py` reads record by record and is the reference. This module reduces whole chunks of
records with polars and must give exactly the same `Reduction` (rows, every counter, formats,
first/last time) and the same warnings. It never guesses: whatever the bulk path does not
reproduce exactly goes to the reference code, so correctness does not depend on the fast path.

* A text chunk (about `TEXT_CHUNK_BYTES` of whole lines) takes the bulk path only when it holds
  nothing but printable ASCII, single spaces and newlines, every line has exactly the format's
  number of fields, and every record on a NAT Gateway ENI has valid numbers and times. Anything
  else (tabs, CR, other bytes, runs of spaces, short or long lines, blank lines, malformed
  records, sums that could overflow 64 bits) sends that chunk through `readers._add_lines`.
* A Parquet batch goes through `readers._add_rows` under the same conditions.
* A whole file goes to the reference reader when it is damaged (truncated gzip, unreadable
  Parquet), has an unusable header, a first line with CR, or Parquet columns of types other
  than strings and integers: the reference then produces the same records and warnings.
* CloudWatch Logs exports always take the reference path.

Memory does not grow with the size of a file: text is decompressed and reduced chunk by chunk,
Parquet is read in row slices, and only the reduced rows (what the result holds anyway) are kept.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import polars as pl

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import USED_FIELDS, FormatError, LogFormat, canonical_name
from natflow.flowlogs.readers import (
    _DAMAGE,
    READERS,
    FormatChoices,
    _add_lines,
    _add_rows,
    _begin_text,
    _Layout,
    _Where,
)
from natflow.flowlogs.reduce import IN, OUT, NatTopology, Reduction, ReductionStats
from natflow.flowlogs.sources import FileKind, FlowLogFile
from natflow.net import address_key, normalize_address
from natflow.timeutil import _MAX_SECONDS

# Decompressed bytes per text chunk (~25k records) and rows per Parquet slice: big enough to
# amortise polars' per-call cost, small enough to keep a worker near 250 MB (16 MB chunks: ~480 MB).
TEXT_CHUNK_BYTES = 4 << 20
COMPRESSED_BLOCK_BYTES = 1 << 20
PARQUET_SLICE_ROWS = 1 << 18
# Reduced rows kept as polars frames before they are re-aggregated (bounds memory per file).
COMPACT_ROWS = 1 << 20

# Bytes a plain record line is made of; any other byte may split differently under str.split().
_PLAIN_BYTES = bytes(range(0x20, 0x7F)) + b"\n"
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


class _NeedsReference(Exception):
    """The whole file must be read by the reference reader."""


def read_file_vectorised(
    file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics
) -> None:
    """Read one file into `reduction`, as `readers.READERS[file.kind]` would, faster."""
    reader = _VECTORISED.get(file.kind)
    if reader is None:
        READERS[file.kind](file, choices, reduction, diagnostics)
        return
    # Nothing reaches `reduction` before the file has been read to its end: a damaged file is
    # re-read by the reference reader, which keeps what comes before the damage and warns.
    part = Reduction(reduction.topology, reduction.window)  # what the reference code added
    notes = Diagnostics()
    try:
        bulk = reader(file, choices, part, notes)
    except (_NeedsReference, FormatError, pl.exceptions.PolarsError, *_DAMAGE):
        READERS[file.kind](file, choices, reduction, diagnostics)
        return
    reduction.merge(part)
    bulk.finish(reduction)
    diagnostics.extend(notes)


def read_all_parallel(
    files: Iterable[FlowLogFile],
    choices: FormatChoices,
    topology: NatTopology,
    window: tuple[int, int] | None,
    diagnostics: Diagnostics,
    workers: int,
) -> Reduction:
    """Read every file, in `workers` processes when there are several files; merged in file order."""
    files = list(files)
    reduction = Reduction(topology, window)
    if workers < 2 or len(files) < 2:
        for file in files:
            read_file_vectorised(file, choices, reduction, diagnostics)
        return reduction
    # spawn: polars' thread pool does not survive fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(files)), mp_context=context) as pool:
        shared = itertools.repeat(choices), itertools.repeat(topology), itertools.repeat(window)
        for part, notes in pool.map(_read_one, files, *shared):
            reduction.merge(part)
            diagnostics.extend(notes)
    return reduction


def _read_one(
    file: FlowLogFile, choices: FormatChoices, topology: NatTopology, window: tuple[int, int] | None
) -> tuple[Reduction, Diagnostics]:
    """One file in a worker process: its reduction and warnings travel back to be merged."""
    reduction = Reduction(topology, window)
    diagnostics = Diagnostics()
    read_file_vectorised(file, choices, reduction, diagnostics)
    return reduction, diagnostics


# -- S3 text ---------------------------------------------------------------------------------------


def _read_text(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> _FrameReducer:
    where = _Where(file.path)
    chunks = _line_chunks(_decompressed(file.path))
    first = next(chunks, b"")
    head_end = first.find(b"\n") + 1 or len(first)
    if b"\r" in first[:head_end]:  # universal newlines would end the first line at the CR
        raise _NeedsReference
    layout = _begin_text(file, first[:head_end].decode("utf-8", "replace"), choices, part, diagnostics, where)
    fields = layout.format.fields
    used = [f for f in USED_FIELDS if f in fields]
    bulk = _FrameReducer(used, part.topology, part.window, file.key_time)
    schema = dict.fromkeys(fields, pl.String)
    line = 2
    for chunk in itertools.chain([first[head_end:]], chunks):
        if not chunk:
            continue
        frame = _text_frame(chunk, schema, used)
        if frame is not None and bulk.add(frame):
            line += frame.height
        else:
            lines = io.StringIO(chunk.decode("utf-8", "replace"), newline=None)  # as TextIOWrapper splits
            _add_lines(lines, line, layout, part, where, file.key_time)
            line = where.line + 1
    return bulk


def _decompressed(path: str) -> Iterator[bytes]:
    """The object's bytes, gunzipped when it is gzip; a truncated or corrupt gzip raises (EOFError, zlib.error)."""
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raw.seek(0)
            yield from iter(lambda: raw.read(TEXT_CHUNK_BYTES), b"")
            return
        raw.seek(0)
        inflate = zlib.decompressobj(wbits=31)  # gzip framing: zlib checks the CRC and length too
        while data := raw.read(COMPRESSED_BLOCK_BYTES):
            if inflate.eof:  # a second member or padding: the gzip module's rules, in the reference
                raise _NeedsReference
            while data:
                yield inflate.decompress(data, TEXT_CHUNK_BYTES)  # ~TEXT_CHUNK_BYTES at a time
                data = inflate.unconsumed_tail
        if not inflate.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        if inflate.unused_data:
            raise _NeedsReference


def _line_chunks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """At least TEXT_CHUNK_BYTES of whole lines at a time (the last may lack its newline)."""
    pending: list[bytes] = []
    size = 0
    for block in blocks:
        pending.append(block)
        size += len(block)
        if size >= TEXT_CHUNK_BYTES:
            joined = b"".join(pending)
            cut = joined.rfind(b"\n") + 1
            if cut:
                yield joined[:cut]
                joined = joined[cut:]
            pending, size = [joined], len(joined)
    if size:
        yield b"".join(pending)


def _text_frame(chunk: bytes, schema: dict[str, type[pl.String]], used: list[str]) -> pl.DataFrame | None:
    """The chunk's `used` fields as string columns, or None when str.split() might read the lines differently."""
    if chunk.translate(None, _PLAIN_BYTES):
        return None
    try:
        frame = pl.read_csv(chunk, has_header=False, separator=" ", quote_char=None, schema=schema)
    except pl.exceptions.PolarsError:  # a line with more fields than the format
        return None
    # Empty fields (runs of spaces, leading or trailing spaces, blank lines) and short lines read as
    # nulls, in any column: hence every column is read, not only the used ones.
    if any(frame.null_count().row(0)):
        return None
    return frame.select(used)


# -- S3 Parquet ------------------------------------------------------------------------------------


def _read_parquet(
    file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics
) -> _FrameReducer:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file.path)
    except pa.ArrowException as error:  # damaged: the reference reader says how
        raise _NeedsReference from error
    schema = parquet.schema_arrow
    columns = {canonical_name(name): name for name in schema.names}  # as readers.read_parquet names them
    fmt = LogFormat(tuple(columns), f"{file.path} columns")
    part.formats.setdefault(fmt.fields, fmt.origin)
    used = [f for f in USED_FIELDS if f in columns]
    for name in used:
        kind = schema.field(columns[name]).type
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
        integer = pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
        if not (text or (integer and name in _NUMBER_FIELDS)):
            raise _NeedsReference  # str() of other types is the reference's business
    # The reference validates only the used fields, so a layout of those alone reads the same.
    layout = _Layout(LogFormat(tuple(used), fmt.origin))
    bulk = _FrameReducer(used, part.topology, part.window, file.key_time)
    scan = pl.scan_parquet(file.path).select(pl.col(columns[f]).alias(f) for f in used)
    where = _Where(file.path)
    for offset in range(0, parquet.metadata.num_rows, PARQUET_SLICE_ROWS):
        frame = scan.slice(offset, PARQUET_SLICE_ROWS).collect()
        # Parquet nulls (and the text "None") are what '-' is in a text record.
        text = frame.with_columns(
            pl.when(pl.col(f).is_null() | (pl.col(f) == "None")).then(pl.lit("-")).otherwise(pl.col(f)).alias(f)
            for f in used
            if frame.schema[f] == pl.String
        )
        if not bulk.add(text):
            where.line = offset
            _add_rows([frame[f].to_list() for f in used], layout, part, where, file.key_time)
    return bulk


_VECTORISED = {FileKind.TEXT: _read_text, FileKind.PARQUET: _read_parquet}


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
    return pl.when(value > _MAX_SECONDS).then(value // 1000).otherwise(value)


class _FrameReducer:
    """Adds frames of one file's records to a Reduction exactly as `_add_parts` and `Reduction.add` would.

    Frames hold the used fields present in the format, named by field: strings with '-' for a
    missing value, or (Parquet) integers with nulls for number fields. Counters and reduced rows
    are collected here and folded into the file's Reduction by `finish`.
    """

    def __init__(
        self,
        fields: Sequence[str],
        topology: NatTopology,
        window: tuple[int, int] | None,
        fallback_time: tuple[int, int] | None,
    ) -> None:
        self.inside = topology.inside
        self.has_eni = "interface-id" in fields
        self.absent = [f for f in USED_FIELDS if f not in fields and f != "interface-id"]
        self.nat_enis = pl.Series(list(topology.natgw_by_eni), dtype=pl.String).implode()
        self.nat_ips = pl.Series(list(topology.eni_by_nat_ip), dtype=pl.String).implode()
        # `nat_ips.get(src) or nat_ips.get(dst)`: an empty ENI id counts as not found.
        self.eni_by_nat_ip = {ip: eni for ip, eni in topology.eni_by_nat_ip.items() if eni}
        self.window = window
        self.fallback_time = fallback_time
        self.stats = ReductionStats()
        self.groups: list[pl.DataFrame] = []
        self.group_rows = 0
        self.first_time: int | None = None
        self.last_time: int | None = None
        self.inside_memo: dict[str, bool] = {}  # not CidrSet's memo: that one would travel back from workers

    def add(self, frame: pl.DataFrame) -> bool:
        """Reduce `frame`; False (and nothing added) when it must go through the reference path."""
        lazy = frame.lazy().with_columns(pl.lit("-").alias(f) for f in self.absent)
        no_data, skip_data = pl.col("log-status") == "NODATA", pl.col("log-status") == "SKIPDATA"
        data = ~(no_data | skip_data)
        outside, unsure = self._status_outside_window(lazy.collect_schema()["start"])
        on_nat = pl.col("interface-id").is_in(self.nat_enis) if self.has_eni else pl.lit(True)
        counts = lazy.select(
            no_data=(no_data & ~outside).sum(),
            skip_data=(skip_data & ~outside).sum(),
            outside_window=(~data & outside).sum(),
            unsure=(~data & unsure).sum(),
            other=(data & ~on_nat).sum(),
        )
        head, records = pl.collect_all([counts, self._records(lazy.filter(data & on_nat))])
        if head["unsure"].item() or not self._bulk_ready(records):
            return False
        if self.has_eni:
            records = records.with_columns(eni=pl.col("interface-id"))
        else:  # Reduction.add: a NAT private IP on either side names the ENI
            src_eni = pl.col("srcaddr").replace_strict(self.eni_by_nat_ip, default=None, return_dtype=pl.String)
            dst_eni = pl.col("dstaddr").replace_strict(self.eni_by_nat_ip, default=None, return_dtype=pl.String)
            records = records.with_columns(eni=pl.coalesce(src_eni, dst_eni))
        records = self._normalised(records)
        src, dst = pl.col("srcaddr"), pl.col("dstaddr")
        src_nat, dst_nat = src.is_in(self.nat_ips), dst.is_in(self.nat_ips)
        outbound, inbound = dst_nat & ~src_nat, src_nat & ~dst_nat  # the sides a client leg can have
        inside = self._inside(
            pl.concat([records.filter(outbound)["srcaddr"], records.filter(inbound)["dstaddr"]]).unique()
        )
        self._add_legs(records.lazy(), outbound & src.is_in(inside), inbound & dst.is_in(inside), src_nat | dst_nat)
        self.stats.records_read += frame.height
        self.stats.outside_window_records += head["outside_window"].item()
        self.stats.no_data_records += head["no_data"].item()
        self.stats.skip_data_records += head["skip_data"].item()
        self.stats.other_interface_records += head["other"].item()
        return True

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

    def _records(self, candidates: pl.LazyFrame) -> pl.LazyFrame:
        """Numbers and times as `_add_parts` reads them, with a `malformed` flag."""
        schema = candidates.collect_schema()
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
        return candidates.select(
            *(["interface-id"] if self.has_eni else []),
            "srcaddr",
            "dstaddr",
            "pkt-srcaddr",
            "pkt-dstaddr",
            "pkt-src-aws-service",
            "pkt-dst-aws-service",
            "action",
            packets=numbers["packets"][0],
            bytes=numbers["bytes"][0],
            start=pl.when(no_time).then(first).when(start_missing).then(end_seconds).otherwise(start_seconds),
            end=pl.when(no_time).then(last).when(end_missing).then(start_seconds).otherwise(end_seconds),
            malformed=malformed,
        )

    @staticmethod
    def _bulk_ready(records: pl.DataFrame) -> bool:
        """No malformed record, and no 64-bit sum that could overflow where Python ints would not."""
        if records["malformed"].any():
            return False
        for name in ("bytes", "packets"):
            largest = records[name].max()
            if isinstance(largest, int) and largest * records.height >= _INT64_LIMIT:
                return False
        return True

    @staticmethod
    def _normalised(records: pl.DataFrame) -> pl.DataFrame:
        """IPv6 addresses in their canonical text, as Reduction.add compares them (rare: done in Python)."""
        for name in ("srcaddr", "dstaddr"):
            ipv6 = records.filter(pl.col(name).str.contains(":", literal=True))[name].unique().to_list()
            if ipv6:
                records = records.with_columns(pl.col(name).replace({a: normalize_address(a) for a in ipv6}))
        return records

    def _add_legs(self, records: pl.LazyFrame, out: pl.Expr, into: pl.Expr, nat_leg: pl.Expr) -> None:
        """Reduction.add from the window test on: client legs become rows, the rest counters."""
        found = pl.col("eni").is_not_null()
        start = pl.col("start")
        kept = found & ((start >= self.window[0]) & (start < self.window[1]) if self.window else pl.lit(True))
        accepted = kept & (pl.col("action") != "REJECT").fill_null(True)
        legs = records.with_columns(direction=pl.when(accepted & out).then(OUT).when(accepted & into).then(IN))
        counted = pl.col("direction").is_not_null()
        nbytes = pl.col("bytes")
        counts = legs.select(
            not_found=(~found).sum(),
            outside_window=(found & ~kept).sum(),
            rejected=(kept & ~accepted).sum(),
            rejected_bytes=nbytes.filter(kept & ~accepted).sum(),
            internet=(accepted & ~counted & nat_leg).sum(),
            internet_bytes=nbytes.filter(accepted & ~counted & nat_leg).sum(),
            unclassified=(accepted & ~nat_leg).sum(),
            unclassified_bytes=nbytes.filter(accepted & ~nat_leg).sum(),
            counted=counted.sum(),
            first=pl.col("start").filter(counted).min(),
            last=pl.col("end").filter(counted).max(),
        )
        going_out = pl.col("direction") == OUT
        peer = pl.when(going_out).then(pl.col("pkt-dstaddr")).otherwise(pl.col("pkt-srcaddr"))
        far_end = pl.when(going_out).then(pl.col("dstaddr")).otherwise(pl.col("srcaddr"))
        service = pl.when(going_out).then(pl.col("pkt-dst-aws-service")).otherwise(pl.col("pkt-src-aws-service"))
        rows = (
            legs.filter(counted)
            .select(
                "eni",
                address=pl.when(going_out).then(pl.col("srcaddr")).otherwise(pl.col("dstaddr")),
                direction="direction",
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
        totals, grouped = pl.collect_all([counts, rows])
        found_counts = totals.row(0, named=True)
        stats = self.stats
        stats.other_interface_records += found_counts["not_found"]
        stats.outside_window_records += found_counts["outside_window"]
        stats.rejected_records += found_counts["rejected"]
        stats.rejected_bytes += found_counts["rejected_bytes"]
        stats.internet_leg_records += found_counts["internet"]
        stats.internet_leg_bytes += found_counts["internet_bytes"]
        stats.unclassified_nat_records += found_counts["unclassified"]
        stats.unclassified_nat_bytes += found_counts["unclassified_bytes"]
        stats.records_counted += found_counts["counted"]
        if grouped.is_empty():
            return
        first, last = found_counts["first"], found_counts["last"]
        self.first_time = first if self.first_time is None else min(self.first_time, first)
        self.last_time = last if self.last_time is None else max(self.last_time, last)
        self.groups.append(grouped)
        self.group_rows += grouped.height
        if self.group_rows > COMPACT_ROWS:
            self.groups = [self._grouped()]
            self.group_rows = self.groups[0].height

    def _inside(self, addresses: pl.Series) -> pl.Series:
        """Those of `addresses` in topology.inside (one list for is_in), memoised per file."""
        memo = self.inside_memo
        for address in addresses.to_list():
            if address not in memo:
                key = address_key(address)
                memo[address] = key is not None and self.inside.contains_key(key)
        return pl.Series([a for a in addresses.to_list() if memo[a]], dtype=pl.String).implode()

    def _grouped(self) -> pl.DataFrame:
        return pl.concat(self.groups).group_by(_GROUP_KEY).agg(_SUMS)

    def finish(self, into: Reduction) -> None:
        """Fold what the frames added into `into`."""
        done = Reduction(into.topology, into.window)
        done.stats = self.stats
        done.first_time, done.last_time = self.first_time, self.last_time
        if self.groups:
            grouped = self._grouped()
            keys = zip(*(grouped[name].to_list() for name in _GROUP_KEY), strict=True)
            values = zip(*(grouped[name].to_list() for name in _ROW_VALUE), strict=True)
            done.rows = {key: list(value) for key, value in zip(keys, values, strict=True)}
        into.merge(done)

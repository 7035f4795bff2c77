"""Parquet flow logs through the compiled scanner, with the text scanner's rules.

Two ways in, the same rules and results:

* Decoded (`_parquet`, our own C decoder of column chunks): for each row group, each used column
  becomes a table of entries (the dictionary, then any plain-encoded values) and each row's entry.
  `TextScanner.scan_tables` reads every entry once, as a line's token, then each row is a lookup
  per field; rows neither on a NAT ENI nor NODATA/SKIPDATA are counted as other interfaces without
  reading their other fields. Pages are decompressed by ISA-L (GZIP, what AWS writes) or pyarrow's
  codecs (SNAPPY, ZSTD, BROTLI, LZ4_RAW); nothing else is loaded.
* Arrow (polars), for what the decoder does not take (other encodings or codecs, row groups above
  `DECODED_MAX_ROWS`, columns of other types, a footer it cannot read): polars scans the used
  columns a slice of rows at a time, keeps only the rows on a NAT ENI or with NODATA/SKIPDATA (its
  pre-filtered decoding reads the other columns of those rows only) and `TextScanner.scan_columns`
  reads them from the Arrow buffers, without a copy.

Either way a value is read as the token a text line would hold (null and "None" as '-', integers
as their digits). The rows the scanner cannot take with certainty (a value that is no plain token,
a malformed record, an address other than dotted-quad IPv4, a sum past 64 bits) come back by
position and go through `readers.add_rows`, in file order, so the malformed examples are the
reference's. A file with columns of other types than strings and integers, or damaged, goes whole
to the reference reader (`NeedsReference`).

Memory is one row group's decoded columns (or one slice's kept rows) and the file's reduced rows.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from isal import isal_zlib

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import _parquet
from natflow.flowlogs.fields import USED_FIELDS, LogFormat, canonical_name
from natflow.flowlogs.readers import FormatChoices, Layout, NeedsReference, Where, add_rows
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FlowLogFile
from natflow.flowlogs.textscan import INFLATE_ERROR, ScannedText, scanner_for

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

# Parquet rows per slice on the Arrow path: polars' working memory follows it; each slice costs a few
# ms however small. Two readers at 10M bench records: 128k rows 263 MB peak (~4% slower), 256k 320 MB,
# 1M 405 MB (~12% faster, at the 400 MB limit).
PARQUET_SLICE_ROWS = 1 << 18
# Larger row groups go the Arrow path: a decoded row group costs ~60 bytes a row (two at once).
DECODED_MAX_ROWS = 1 << 20
# So do pages said to be larger than this once decompressed (writers make ~1 MB pages).
PAGE_MAX_BYTES = 1 << 26

_NUMBER_FIELDS = ("packets", "bytes", "start", "end")
_ROW = "natflow_row"  # the row's position in the file, for the reference's examples
# TextScanner.scan_columns' and scan_tables' column kinds
_TEXT, _INT64 = 0, 1
_UNCOMPRESSED, _GZIP = 0, 2
_PYARROW_CODECS = {1: "snappy", 4: "brotli", 6: "zstd", 7: "lz4_raw"}  # Parquet's CompressionCodec
_Decompress = Callable[[memoryview, int], Any]


class _NotDecodable(Exception):
    """The decoder does not take this file: the Arrow path reads it."""


def read_parquet(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> ScannedText:
    """One Parquet object as `readers.read_parquet` would read it: the records the reference code
    read are in `part`, the scanner's in the result, to be folded with `finish`."""
    trial = Reduction(part.topology, part.window)  # thrown away when the Arrow path must start again
    try:
        scanned = _read_decoded(file, trial)
    except _NotDecodable:
        return _read_arrow(file, part)
    part.merge(trial)
    return scanned


def _read_decoded(file: FlowLogFile, part: Reduction) -> ScannedText:
    try:
        with open(file.path, "rb") as handle:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        scanned = _DecodedObject(file, data).read(part)
    except (OSError, ValueError, INFLATE_ERROR) as error:  # damaged or not for the decoder
        # Not closed here: the error's frames may still hold views of the map (a decompressor's
        # page); it is unmapped with the last of them.
        raise _NotDecodable from error
    data.close()
    return scanned


class _DecodedObject:
    """A Parquet object as the decoder reads it; _NotDecodable when it does not take it."""

    def __init__(self, file: FlowLogFile, data: mmap.mmap) -> None:
        self.file, self.data = file, data
        rows, columns, self.row_groups = _parquet.read_footer(data)
        if any(kind not in ("string", "int") or levels > 1 for _, _, levels, kind in columns):
            raise _NotDecodable  # nested or of other types: the Arrow path decides
        position = {canonical_name(name): index for index, (name, *_) in enumerate(columns)}
        self.format, self.used = _used_fields(position, file)
        if not self.used or sum(size for size, _ in self.row_groups) != rows:
            raise _NotDecodable
        self.columns = [(position[name], columns[position[name]]) for name in self.used]
        for name, (_, (_, _, _, kind)) in zip(self.used, self.columns, strict=True):
            if not _readable(name, text=kind == "string", integer=kind == "int"):
                raise _NotDecodable
        if any(size > DECODED_MAX_ROWS for size, _ in self.row_groups):
            raise _NotDecodable
        codecs = {chunks[index][0] for _, chunks in self.row_groups for index, _ in self.columns}
        self.decompressors = {codec: _decompressor(codec) for codec in codecs}

    def read(self, part: Reduction) -> ScannedText:
        part.formats.setdefault(self.format.fields, self.format.origin)
        layout = Layout(LogFormat(tuple(self.used), self.format.origin))
        scanner = scanner_for(layout, part.topology, part.window, self.file.key_time)
        selected = tuple(eni.encode() for eni in part.topology.natgw_by_eni)
        where = Where(self.file.path)
        first = 0
        for rows, chunks in self.row_groups:
            tables = []
            for index, (_, physical_type, levels, kind) in self.columns:
                codec, start, size, _ = chunks[index]
                values, offsets, entry_of_row = _parquet.decode_chunk(
                    self.data, start, size, physical_type, levels, rows, self.decompressors[codec]
                )
                tables.append((_TEXT if kind == "string" else _INT64, values, offsets, entry_of_row))
            for position in scanner.scan_tables(tuple(tables), rows, selected):
                where.line = first + position  # add_rows counts the row in
                add_rows([[value] for value in _row(tables, position)], layout, part, where, self.file.key_time)
            first += rows
        return ScannedText(scanner)


def _used_fields(columns: Collection[str], file: FlowLogFile) -> tuple[LogFormat, list[str]]:
    """The file's format (its columns, by field name, as readers.read_parquet names them) and the
    used fields among them."""
    return LogFormat(tuple(columns), f"{file.path} columns"), [f for f in USED_FIELDS if f in columns]


def _readable(name: str, text: bool, integer: bool) -> bool:
    """A column either way reads as the reference does: text for any field, integers for numbers
    (str() of another type, or of an integer where text belongs, is the reference's business)."""
    return text or (integer and name in _NUMBER_FIELDS)


def _decompressor(codec: int) -> _Decompress | None:
    if codec == _UNCOMPRESSED:
        return None
    if codec == _GZIP:
        return _gunzip
    name = _PYARROW_CODECS.get(codec)
    if name is None:
        raise _NotDecodable  # LZ4 (Hadoop framing), LZO
    import pyarrow as pa

    codec_of_pyarrow = pa.Codec(name)

    def decompress(page: memoryview, size: int) -> Any:
        return codec_of_pyarrow.decompress(page, _page_size(size))

    return decompress


def _gunzip(page: memoryview, size: int) -> bytes:
    # Never more than the page says it holds (+1, to tell a longer one): a damaged or hostile page
    # cannot inflate beyond it. 47: gzip or zlib framing.
    return isal_zlib.decompressobj(wbits=47).decompress(page, _page_size(size) + 1)


def _page_size(size: int) -> int:
    """A page's size as its header says, if it is one a writer makes (they write ~1 MB)."""
    if size > PAGE_MAX_BYTES:
        raise ValueError(f"a Parquet page of {size} bytes")  # the Arrow path reads the file
    return size


def _row(tables: list[tuple[int, bytearray, bytearray | None, bytearray]], position: int) -> list[Any]:
    """The values of one row of decoded tables, as polars would give them (str, int or None)."""
    values: list[Any] = []
    for kind, entries, offsets, entry_of_row in tables:
        entry = memoryview(entry_of_row).cast("i")[position]
        if entry < 0:
            values.append(None)
        elif kind == _INT64:
            values.append(memoryview(entries).cast("q")[entry])
        else:
            assert offsets is not None
            bounds = memoryview(offsets).cast("q")
            values.append(bytes(entries[bounds[entry] : bounds[entry + 1]]).decode())
    return values


def _read_arrow(file: FlowLogFile, part: Reduction) -> ScannedText:
    import polars as pl

    try:
        return _read_polars(file, part)
    except pl.exceptions.PolarsError as error:
        raise NeedsReference from error


def _read_polars(file: FlowLogFile, part: Reduction) -> ScannedText:
    import polars as pl

    parquet = _ParquetObject(file)
    part.formats.setdefault(parquet.format.fields, parquet.format.origin)
    layout = Layout(LogFormat(tuple(parquet.used), parquet.format.origin))  # the reference checks only these
    scanner = scanner_for(layout, part.topology, part.window, file.key_time)
    scan = parquet.scan()
    selected = _selection(parquet.used, part.topology)
    where = Where(file.path)
    newest = pl.CompatLevel.newest()  # string views: polars' own strings, handed over without a copy
    for offset in range(0, parquet.rows, PARQUET_SLICE_ROWS):
        size = min(PARQUET_SLICE_ROWS, parquet.rows - offset)
        frame = scan.slice(offset, size).filter(selected).collect()
        left_out = size - frame.height  # other interfaces
        part.stats.records_read += left_out
        part.stats.other_interface_records += left_out
        if frame.is_empty():
            continue
        columns = tuple(_arrow_column(frame[name], newest) for name in parquet.used)
        for position in scanner.scan_columns(columns, frame.height):
            row = frame.row(position, named=True)
            where.line = row[_ROW]  # add_rows counts the row in
            add_rows([[row[name]] for name in parquet.used], layout, part, where, file.key_time)
    return ScannedText(scanner)


class _ParquetObject:
    """A Parquet object's columns, as its footer tells them; NeedsReference when this path cannot read it."""

    def __init__(self, file: FlowLogFile) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(file.path)
        except pa.ArrowException as error:  # damaged: the reference reader says how
            raise NeedsReference from error
        self.file = file
        schema = parquet.schema_arrow
        self.rows = parquet.metadata.num_rows
        self.columns = {canonical_name(name): name for name in schema.names}  # as readers.read_parquet
        self.format, self.used = _used_fields(self.columns, file)
        if not self.used:  # frames without columns would have no rows to count
            raise NeedsReference
        for name in self.used:
            kind = schema.field(self.columns[name]).type
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
            integer = pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
            if not _readable(name, text, integer):
                raise NeedsReference

    def scan(self) -> pl.LazyFrame:
        """The used columns, named by field, and each row's position in the file (`_ROW`)."""
        import polars as pl

        # The scan numbers the rows itself: numbering them after it would keep polars from decoding
        # only the selected rows of each column (five times slower).
        used = (pl.col(self.columns[f]).alias(f) for f in self.used)
        return pl.scan_parquet(self.file.path, row_index_name=_ROW).select(_ROW, *used)


def _arrow_column(
    values: pl.Series, newest: pl.CompatLevel
) -> tuple[int, int, pa.Buffer | None, pa.Buffer, tuple[pa.Buffer, ...]]:
    """A column as `scan_columns` takes it: (kind, offset, validity, values, data buffers)."""
    import polars as pl
    import pyarrow as pa

    if values.dtype.is_integer():
        array = values.cast(pl.Int64).to_arrow()
        kind = _INT64
    else:
        array = values.to_arrow(compat_level=newest)
        kind = _TEXT
        if not pa.types.is_string_view(array.type):
            raise NeedsReference  # not a string view: not a layout the scanner reads
    validity, main, *data = array.buffers()
    return kind, array.offset, validity, main, tuple(buffer for buffer in data if buffer is not None)


_FEW_VALUES = 8  # up to this many short strings, a column is compared with each rather than hashed
_INLINE_BYTES = 12  # what a string view holds itself; longer strings are compared in their buffers


def _selection(fields: Collection[str], topology: NatTopology) -> pl.Expr:
    """The rows the scanner reads: on a NAT ENI, of a regional NAT Gateway or NODATA/SKIPDATA; the
    others are other interfaces (without interface-id, every row: the ENI comes from the addresses)."""
    import polars as pl

    if "interface-id" not in fields:
        return pl.lit(True)
    selected = _text_in(pl.col("interface-id"), topology.natgw_by_eni)
    if topology.regional and "resource-id" in fields:  # a regional gateway's rows, whatever interface-id
        selected = selected | _text_in(pl.col("resource-id"), topology.regional)
    if "log-status" in fields:
        selected = selected | _text_in(pl.col("log-status"), ("NODATA", "SKIPDATA"))
    return selected


def _one_of(column: pl.Expr, values: Collection[str]) -> pl.Expr:
    """The string column is one of `values` (False for null)."""
    import polars as pl

    if len(values) <= _FEW_VALUES and all(len(value.encode()) <= _INLINE_BYTES for value in values):
        # Short strings sit whole in their views: a few comparisons beat hashing every value.
        return pl.any_horizontal([column == value for value in values] or [pl.lit(False)]).fill_null(False)
    return column.is_in(pl.Series(list(values), dtype=pl.String).implode()).fill_null(False)


def _text_in(column: pl.Expr, values: Iterable[str]) -> pl.Expr:
    """The column's text, as the reference reads it ('-' for null and "None"), is one of `values`."""
    values = set(values)
    found = _one_of(column, sorted(values - {"None"}))
    return found | column.is_null() | (column == "None") if "-" in values else found

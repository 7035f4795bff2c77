"""Parquet flow logs through the compiled scanner: polars decodes, the text scanner's rules reduce.

polars scans the used columns of an object a slice of rows at a time and keeps only the rows on a
NAT ENI or with NODATA/SKIPDATA: its pre-filtered decoding reads the other columns of those rows
only. The rows left out are other interfaces, which the reference counts without reading further.
The kept rows go to `TextScanner.scan_columns` as Arrow buffers, without a copy: the rules of the
text path, each value read as the token a text line would hold (null and "None" as '-', integers
as their digits). The rows it cannot take with certainty (a value that is no plain token, a
malformed record, an address other than dotted-quad IPv4, a sum past 64 bits) come back by
position and go through `readers.add_rows`, in file order, so the malformed examples are the
reference's. A file with columns of other types than strings and integers, or damaged, goes
whole to the reference reader (`NeedsReference`).

Memory is one slice's kept rows and the file's reduced rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import polars as pl
import pyarrow as pa

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import USED_FIELDS, LogFormat, canonical_name
from natflow.flowlogs.readers import FormatChoices, Layout, NeedsReference, Where, add_rows
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FlowLogFile
from natflow.flowlogs.textscan import ScannedText, scanner_for

# Parquet rows per slice: polars' working memory follows it; each slice costs a few ms however small.
# Two readers at 10M bench records: 128k rows 263 MB peak (~4% slower), 256k 320 MB, 1M 405 MB
# (~12% faster, at the 400 MB limit).
PARQUET_SLICE_ROWS = 1 << 18

_NUMBER_FIELDS = ("packets", "bytes", "start", "end")
_ROW = "natflow_row"  # the row's position in the file, for the reference's examples
# TextScanner.scan_columns' column kinds
_TEXT, _INT64 = 0, 1
_NEWEST = pl.CompatLevel.newest()  # string views: polars' own strings, handed over without a copy


def read_parquet(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> ScannedText:
    """One Parquet object as `readers.read_parquet` would read it: the records the reference code
    read are in `part`, the scanner's in the result, to be folded with `finish`."""
    parquet = _ParquetObject(file)
    part.formats.setdefault(parquet.format.fields, parquet.format.origin)
    layout = Layout(LogFormat(tuple(parquet.used), parquet.format.origin))  # the reference checks only these
    scanner = scanner_for(layout, part.topology, part.window, file.key_time)
    scan = parquet.scan()
    selected = _selection(parquet.used, part.topology)
    where = Where(file.path)
    for offset in range(0, parquet.rows, PARQUET_SLICE_ROWS):
        size = min(PARQUET_SLICE_ROWS, parquet.rows - offset)
        frame = scan.slice(offset, size).filter(selected).collect()
        left_out = size - frame.height  # other interfaces
        part.stats.records_read += left_out
        part.stats.other_interface_records += left_out
        if frame.is_empty():
            continue
        columns = tuple(_arrow_column(frame[name]) for name in parquet.used)
        for position in scanner.scan_columns(columns, frame.height):
            row = frame.row(position, named=True)
            where.line = row[_ROW]  # add_rows counts the row in
            add_rows([[row[name]] for name in parquet.used], layout, part, where, file.key_time)
    return ScannedText(scanner)


class _ParquetObject:
    """A Parquet object's columns, as its footer tells them; NeedsReference when this path cannot read it."""

    def __init__(self, file: FlowLogFile) -> None:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(file.path)
        except pa.ArrowException as error:  # damaged: the reference reader says how
            raise NeedsReference from error
        self.file = file
        schema = parquet.schema_arrow
        self.rows = parquet.metadata.num_rows
        self.columns = {canonical_name(name): name for name in schema.names}  # as readers.read_parquet
        self.format = LogFormat(tuple(self.columns), f"{file.path} columns")
        self.used = [f for f in USED_FIELDS if f in self.columns]
        if not self.used:  # frames without columns would have no rows to count
            raise NeedsReference
        for name in self.used:
            kind = schema.field(self.columns[name]).type
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
            integer = pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
            if not (text or (integer and name in _NUMBER_FIELDS)):
                raise NeedsReference  # str() of other types is the reference's business

    def scan(self) -> pl.LazyFrame:
        """The used columns, named by field, and each row's position in the file (`_ROW`)."""
        # The scan numbers the rows itself: numbering them after it would keep polars from decoding
        # only the selected rows of each column (five times slower).
        used = (pl.col(self.columns[f]).alias(f) for f in self.used)
        return pl.scan_parquet(self.file.path, row_index_name=_ROW).select(_ROW, *used)


def _arrow_column(values: pl.Series) -> tuple[int, int, pa.Buffer | None, pa.Buffer, tuple[pa.Buffer, ...]]:
    """A column as `scan_columns` takes it: (kind, offset, validity, values, data buffers)."""
    if values.dtype.is_integer():
        array = values.cast(pl.Int64).to_arrow()
        kind = _INT64
    else:
        array = values.to_arrow(compat_level=_NEWEST)
        kind = _TEXT
        if not pa.types.is_string_view(array.type):
            raise NeedsReference  # not a string view: not a layout the scanner reads
    validity, main, *data = array.buffers()
    return kind, array.offset, validity, main, tuple(buffer for buffer in data if buffer is not None)


_FEW_VALUES = 8  # up to this many short strings, a column is compared with each rather than hashed
_INLINE_BYTES = 12  # what a string view holds itself; longer strings are compared in their buffers


def _selection(fields: Collection[str], topology: NatTopology) -> pl.Expr:
    """The rows the scanner reads: on a NAT ENI or NODATA/SKIPDATA; the others are other interfaces
    (without interface-id, every row: the ENI comes from the addresses)."""
    if "interface-id" not in fields:
        return pl.lit(True)
    selected = _text_in(pl.col("interface-id"), topology.natgw_by_eni)
    if "log-status" in fields:
        selected = selected | _text_in(pl.col("log-status"), ("NODATA", "SKIPDATA"))
    return selected


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

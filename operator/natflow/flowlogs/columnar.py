"""Parquet flow logs: pyarrow decodes the used columns, the compiled scanner reduces the rows.

Runs in a decoder process (`decoders.py`): pyarrow parses untrusted bytes in C++, and whatever it
does on them (an abort, a crash, a runaway allocation) must not take the run down.

One object, one row group at a time, a batch of rows at a time:

* only the used fields' columns are read (projection), text columns as dictionaries: the rows on
  a NAT ENI or NODATA/SKIPDATA are picked by marking the few dictionary entries that match, and
  only those rows are decoded (~20% of a flow log); the others are counted as other interfaces;
* the picked rows' columns go to `TextScanner.scan_columns` as Arrow string views and int64
  values, without a copy, and are read as the text a line would hold (null and "None" as '-',
  integers as their digits). Rows it cannot take with certainty come back by position and go
  through `readers.add_rows`, in file order, so the malformed examples are the reference's.

What the file claims is checked against what it delivers: the footer's row count against its row
groups', each row group's against the rows its pages give (a damaged page header can make a reader
skip pages without an error), page checksums where the writer wrote them, and GZIP's own CRC.
The footer is refused before it is parsed when it claims more bytes than a flow log's footer
needs, and pyarrow's thrift limits refuse metadata that claims absurd sizes. A damaged row group
is counted as lost and the others are kept; the object gets one `DamagedFlowLog` warning.

A file with columns of other types than strings and integers goes whole to the reference reader
(`NeedsReference`), in the same decoder process; the result is checked against the row count the
footer claims there too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import readers
from natflow.flowlogs.fields import USED_FIELDS, LogFormat, canonical_name
from natflow.flowlogs.readers import FormatChoices, Layout, NeedsReference, Where, add_rows
from natflow.flowlogs.reduce import NatTopology, ObjectReading, Reduction, ReductionStats
from natflow.flowlogs.sources import FlowLogFile
from natflow.flowlogs.textscan import ScannedText, scanner_for

if TYPE_CHECKING:
    from natflow.flowlogs._textscan import TextScanner

# Rows decoded at a time: the decoder's working memory follows it.
BATCH_ROWS = 1 << 16
# A flow log's footer (schema, row groups' column chunks and statistics) is a few kB per row group:
# a footer claiming more is refused before pyarrow parses it.
FOOTER_MAX_BYTES = 1 << 24
# pyarrow's limits on what the footer's thrift may claim: a string (names, statistics, key/value
# metadata) and a list (schema entries, row groups, column chunks).
THRIFT_STRING_MAX = 1 << 24
THRIFT_CONTAINER_MAX = 1 << 16

_NUMBER_FIELDS = ("packets", "bytes", "start", "end")
_TEXT, _INT64 = 0, 1  # TextScanner.scan_columns' column kinds
_STATUS_KEPT = ("NODATA", "SKIPDATA")
# What a row group's reading may raise on damaged bytes (pyarrow's errors are ArrowException and
# subclasses of ValueError, OSError, MemoryError, NotImplementedError).
_DAMAGE = (pa.ArrowException, ValueError, OSError, MemoryError, NotImplementedError, UnicodeError, EOFError)


def read_object(
    file: FlowLogFile, choices: FormatChoices, topology: NatTopology, window: tuple[int, int] | None
) -> ObjectReading:
    """One Parquet object as `readers.read_parquet` reads it (the fast way when it can), with what
    it lacks of what it claims counted and said."""
    part, notes = Reduction(topology, window), Diagnostics()
    try:
        parquet = _ParquetObject(file)
    except _Damaged as damage:
        _warn_damaged(file, notes, part.stats, str(damage), lost=None)
        return ObjectReading.of(part, notes)
    try:
        parquet.read(part, notes).finish(part)
    except NeedsReference:
        return read_reference(file, choices, topology, window, parquet.claimed_rows)
    finally:
        pa.default_memory_pool().release_unused()  # an idle decoder keeps only what pyarrow needs
    return ObjectReading.of(part, notes)


def read_reference(
    file: FlowLogFile,
    choices: FormatChoices,
    topology: NatTopology,
    window: tuple[int, int] | None,
    claimed: int | None = None,
) -> ObjectReading:
    """The object through the reference reader, its rows checked against the row groups' claim
    (the reference stops at damage, and may be given fewer rows than claimed without an error)."""
    if claimed is None:
        with contextlib.suppress(_Damaged):  # the reference reader says what is wrong
            claimed = _ParquetObject(file).claimed_rows
    part, notes = Reduction(topology, window), Diagnostics()
    readers.read_parquet(file, choices, part, notes)
    read = part.stats.records_read
    if any(item.reason == "DamagedFlowLog" for item in notes.items):
        part.stats.damaged_files += 1
        part.stats.lost_records += max((claimed or 0) - read, 0)
    elif claimed is not None and read != claimed:
        _warn_damaged(file, notes, part.stats, f"its row groups claim {claimed} records, {read} were read",
                      lost=max(claimed - read, 0))  # fmt: skip
    return ObjectReading.of(part, notes)


class _Damaged(Exception):
    """The object cannot be read at all; the message says why."""


def _warn_damaged(file: FlowLogFile, notes: Diagnostics, stats: ReductionStats, problem: str, lost: int | None) -> None:
    """One DamagedFlowLog warning for the object, on one line; `lost`: the records it claims and did
    not give (None: not known)."""
    stats.damaged_files += 1
    stats.lost_records += lost or 0
    details: dict[str, Any] = {"file": file.path} if lost is None else {"file": file.path, "lostRecords": lost}
    notes.warn("DamagedFlowLog", " ".join(f"{file.path}: damaged Parquet: {problem}".split()), **details)


def _check_footer(path: str) -> None:
    """_Damaged when the file's tail is not Parquet's or its footer claims more bytes than the file
    holds or a flow log needs."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 12:
            raise _Damaged(f"{size} bytes, too short for Parquet")
        handle.seek(size - 8)
        tail = handle.read(8)
    if tail[4:] != b"PAR1":
        raise _Damaged("no Parquet magic at its end (truncated, or not Parquet)")
    claimed = int.from_bytes(tail[:4], "little")
    if claimed > size - 12 or claimed > FOOTER_MAX_BYTES:
        raise _Damaged(f"its footer claims {claimed} bytes of {size} (at most {FOOTER_MAX_BYTES} taken)")


class _ParquetObject:
    """A Parquet object's footer, read with limits; the used columns' types decide the way in."""

    def __init__(self, file: FlowLogFile) -> None:
        self.file = file
        try:
            _check_footer(file.path)
        except OSError as error:  # not damage: the file cannot be read at all
            raise _Damaged(f"unreadable ({error.strerror or error})") from error
        try:
            probe = self._open()
            names = probe.schema_arrow.names
            metadata = probe.metadata
            self.claimed_rows = sum(metadata.row_group(index).num_rows for index in range(metadata.num_row_groups))
            self.footer_rows = metadata.num_rows
            self.row_groups = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
            self.encodings = _encodings(metadata)
        except _DAMAGE as error:
            raise _Damaged(f"unreadable footer ({type(error).__name__}: {error})") from error
        self.columns = {canonical_name(name): name for name in names}  # as readers.read_parquet
        self.format = LogFormat(tuple(self.columns), f"{file.path} columns")
        self.used = [name for name in USED_FIELDS if name in self.columns]

    def _open(self, dictionaries: Iterable[str] = ()) -> pq.ParquetFile:
        return pq.ParquetFile(
            self.file.path,
            read_dictionary=list(dictionaries) or None,
            page_checksum_verification=True,
            thrift_string_size_limit=THRIFT_STRING_MAX,
            thrift_container_size_limit=THRIFT_CONTAINER_MAX,
            pre_buffer=False,
        )

    def read(self, part: Reduction, notes: Diagnostics) -> ScannedText:
        """The rows of every row group into a scanner (and the odd ones into `part`)."""
        if not self.used:  # no column to count rows by: the reference counts them
            raise NeedsReference
        columns = [self.columns[name] for name in self.used]
        parquet = self._open(name for name in columns if self.encodings.get(name, set()) <= _DICTIONARY_READ)
        schema = parquet.schema_arrow
        kinds = [_kind(name, schema.field(self.columns[name]).type) for name in self.used]
        part.formats.setdefault(self.format.fields, self.format.origin)
        layout = Layout(LogFormat(tuple(self.used), self.format.origin))  # the reference checks only these
        scanner = scanner_for(layout, part.topology, part.window, self.file.key_time)
        reader = _BatchReader(self, scanner, layout, kinds, part)
        problems: list[str] = []
        lost = 0
        first = 0
        for index, claimed in enumerate(self.row_groups):
            delivered = 0
            reader.first = first  # rows are numbered as the footer places them, whatever came before
            first += claimed
            try:
                for batch in parquet.iter_batches(BATCH_ROWS, [index], columns, use_threads=False):
                    reader.read(batch)
                    delivered += batch.num_rows
            except _DAMAGE as error:
                problems.append(f"row group {index}: {type(error).__name__}: {error} ({delivered} of its rows read)")
            else:
                if delivered != claimed:
                    problems.append(f"row group {index} claims {claimed} rows, its pages gave {delivered}")
            lost += max(claimed - delivered, 0)
        if self.footer_rows != self.claimed_rows:
            problems.insert(0, f"its footer claims {self.footer_rows} rows, its row groups {self.claimed_rows}")
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            read = self.claimed_rows - lost
            summary = f"{read} of the {self.claimed_rows} records its row groups claim were read (the intact ones)"
            _warn_damaged(self.file, notes, part.stats, f"{shown}; {summary}", lost)
        return ScannedText(scanner)


# The encodings pyarrow reads into dictionaries (its dictionary reading lacks the DELTA ones).
_DICTIONARY_READ = {"PLAIN_DICTIONARY", "RLE_DICTIONARY", "PLAIN", "RLE", "BIT_PACKED"}


def _encodings(metadata: pq.FileMetaData) -> dict[str, set[str]]:
    """Each top-level column's encodings, over its chunks."""
    found: dict[str, set[str]] = {}
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        for column in range(group.num_columns):
            chunk = group.column(column)
            found.setdefault(chunk.path_in_schema, set()).update(chunk.encodings)
    return found


def _kind(name: str, kind: pa.DataType) -> int:
    """The scanner's column kind of a used column read as the reference reads it: text for any
    field, integers for numbers (str() of another type, or of an integer where text belongs, is the
    reference's business)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return _TEXT
    if name in _NUMBER_FIELDS and pa.types.is_integer(kind) and not pa.types.is_uint64(kind):
        return _INT64
    raise NeedsReference


class _BatchReader:
    """Batches of one object's used columns into its scanner."""

    def __init__(
        self, parquet: _ParquetObject, scanner: TextScanner, layout: Layout, kinds: list[int], part: Reduction
    ) -> None:
        self.scanner, self.layout, self.kinds, self.part = scanner, layout, kinds, part
        self.used = parquet.used
        self.where = Where(parquet.file.path)
        self.fallback = parquet.file.key_time
        self.first = 0  # the file's row number of the next batch's first row
        topology = part.topology
        self.enis = _TextSet(topology.natgw_by_eni) if "interface-id" in self.used else None
        # A regional NAT Gateway's rows are found by resource-id, whatever their interface-id.
        self.regional = _TextSet(topology.regional) if topology.regional and "resource-id" in self.used else None
        self.statuses = _TextSet(_STATUS_KEPT) if "log-status" in self.used else None

    def read(self, batch: pa.RecordBatch) -> None:
        rows = batch.num_rows
        picked = self._picked(batch)
        count = rows if picked is None else len(picked)
        self.part.stats.records_read += rows - count  # other interfaces
        self.part.stats.other_interface_records += rows - count
        if count:
            columns = tuple(self._column(index, batch.column(index), picked) for index in range(batch.num_columns))
            handed_back = self.scanner.scan_columns(columns, count)
            for position in handed_back:  # rows for the reference code, in file order, numbered as it numbers them
                row = position if picked is None else int(picked[position])
                self.where.line = self.first + row
                values = [[batch.column(index)[row].as_py()] for index in range(batch.num_columns)]
                add_rows(values, self.layout, self.part, self.where, self.fallback)  # counts the row in
        self.first += rows

    def _picked(self, batch: pa.RecordBatch) -> np.ndarray | None:
        """The positions of the rows the scanner reads: on a NAT ENI, of a regional NAT Gateway or
        NODATA/SKIPDATA (None: every row; without interface-id, the ENI comes from the addresses)."""
        if self.enis is None:
            return None
        found = self.enis.found(batch.column(self.used.index("interface-id")))
        if self.regional is not None:
            found |= self.regional.found(batch.column(self.used.index("resource-id")))
        if self.statuses is not None:
            found |= self.statuses.found(batch.column(self.used.index("log-status")))
        return np.flatnonzero(found)

    def _column(self, index: int, column: pa.Array, picked: np.ndarray | None) -> tuple[Any, ...]:
        """The picked rows of a column as `scan_columns` takes it: (kind, 0, validity, values, data
        buffers), and for a dictionary column the dictionary's entries as values and each picked
        row's entry number (the scanner reads the entry; out of range is damage it refuses). Only the
        picked rows are touched: a fifth of a flow log's."""
        kind = self.kinds[index]
        dictionary_column = isinstance(column, pa.DictionaryArray)
        valid = _valid(column.indices if dictionary_column else column, picked)
        validity = None if valid is None or valid.all() else np.packbits(valid, bitorder="little")
        if dictionary_column:
            entries = _numbers(column.indices)
            entries = entries if picked is None else entries[picked]
            if entries.dtype.itemsize > 4 and len(entries) and (entries.min() < 0 or entries.max() >= 1 << 31):
                raise ValueError("a dictionary index out of range")
            dictionary = column.dictionary
            if not len(dictionary):
                dictionary = pa.array([0] if kind == _INT64 else [""], dictionary.type)
            values, data = _integers(dictionary) if kind == _INT64 else _views(dictionary)  # each batch has its own
            return kind, 0, validity, np.ascontiguousarray(values), data, np.ascontiguousarray(entries, np.int32)
        if kind == _INT64:
            numbers = _numbers(column)
            chosen, data = (numbers if picked is None else numbers[picked]).astype(np.int64), ()
        else:
            values, data = _views(column)
            chosen = values if picked is None else values[picked]
        return kind, 0, validity, np.ascontiguousarray(chosen), data

_Views = tuple[np.ndarray, tuple[Any, ...]]  # values (int64, or string views: 16 bytes each) and data buffers


def _valid(column: pa.Array, rows: np.ndarray | None = None) -> np.ndarray | None:
    """The validity of each value, or of the values at `rows` (None: no nulls)."""
    bitmap = column.buffers()[0]
    if bitmap is None or not column.null_count:
        return None
    bits = np.frombuffer(bitmap, np.uint8)
    at: np.ndarray = column.offset + (np.arange(len(column)) if rows is None else rows)
    valid: np.ndarray = ((bits[at >> 3] >> (at & 7)) & 1).astype(bool)
    return valid


def _numbers(column: pa.Array) -> np.ndarray:
    """An integer array's values as numpy (any at a null)."""
    dtype = np.dtype(column.type.to_pandas_dtype())
    values = np.frombuffer(column.buffers()[1], dtype)
    return values[column.offset : column.offset + len(column)]


def _integers(column: pa.Array) -> _Views:
    return _numbers(column).astype(np.int64), ()


_INLINE = 12  # the bytes a string view holds itself


def _views(column: pa.Array) -> _Views:
    """A string array as Arrow string views (16 bytes a value: the length, then the text itself up
    to 12 bytes, else its first 4 bytes, buffer 0 and its offset there) and its data buffer."""
    if pa.types.is_string_view(column.type):
        _, views, *data = column.buffers()
        values = np.frombuffer(views, np.uint8).reshape(-1, 16)[column.offset : column.offset + len(column)]
        return values, tuple(buffer for buffer in data if buffer is not None)
    _, offsets_buffer, data_buffer = column.buffers()
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, width)[column.offset : column.offset + len(column) + 1].astype(np.int64)
    empty = data_buffer is None or not data_buffer.size
    data = np.zeros(1, np.uint8) if empty else np.frombuffer(data_buffer, np.uint8)
    starts, lengths = offsets[:-1], offsets[1:] - offsets[:-1]
    if len(offsets) and (offsets[-1] >= 1 << 31 or lengths.max(initial=0) >= 1 << 31):
        raise NeedsReference  # not what a view can point at
    values = np.zeros((len(lengths), 16), np.uint8)
    values[:, 0:4] = lengths.astype("<i4").view(np.uint8).reshape(-1, 4)
    places = np.minimum(starts[:, None] + np.arange(_INLINE), len(data) - 1)
    text = np.where(np.arange(_INLINE) < lengths[:, None], data[places], 0).astype(np.uint8)
    long = lengths > _INLINE
    values[:, 4:16] = text
    values[long, 8:12] = 0  # buffer 0
    values[long, 12:16] = starts[long].astype("<i4").view(np.uint8).reshape(-1, 4)
    return values, (data,)


class _TextSet:
    """Texts a column is compared with, as the reference reads a value: null and "None" as '-'."""

    def __init__(self, values: Collection[str]) -> None:
        self.values = set(values) - {"None"}
        self.null_matches = "-" in values

    def found(self, column: pa.Array) -> np.ndarray:
        """Whether each value of a text column reads as one of the texts (a dictionary column's
        entries are compared once each)."""
        valid = _valid(column.indices if isinstance(column, pa.DictionaryArray) else column)
        if isinstance(column, pa.DictionaryArray):
            entries = np.array([self._matches(text) for text in column.dictionary.to_pylist()] + [False])
            indices = _numbers(column.indices).astype(np.int64)
            indices = np.where((indices < 0) | (indices >= len(entries) - 1), len(entries) - 1, indices)
            found = entries[indices]
        else:
            found = np.array([self._matches(text) for text in column.to_pylist()], dtype=bool)
        if valid is not None:
            found = np.where(valid, found, self.null_matches)
        return found

    def _matches(self, text: str | None) -> bool:
        if text is None:
            return self.null_matches
        return text in self.values or (text == "None" and self.null_matches)

"""Parquet flow logs: pyarrow decodes the used columns, the compiled scanner reduces the rows.

Runs in a decoder process (`decoders.py`): pyarrow parses untrusted bytes in C++, and whatever it
does on them (an abort, a crash, a runaway allocation) must not take the run down.

One object, one row group at a time, a batch of rows at a time:

* only the used fields' columns are read (projection), text columns as dictionaries, and handed
  to `TextScanner.scan_columns` as Arrow holds them, without a copy:
  the scanner reads each dictionary entry once a batch (is it a NAT ENI, a regional NAT Gateway,
  NODATA/SKIPDATA, an address?), counts the rows on other interfaces (~80% of a flow log) from
  their entry numbers alone, and reads the others' values as the text a line would hold (null and
  "None" as '-', integers as their digits). Rows it cannot take with certainty come back by
  position and go through `readers.add_rows`, in file order, so the malformed examples are the
  reference's.

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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

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
BATCH_ROWS = 1 << 17
# A flow log's footer (schema, row groups' column chunks and statistics) is a few kB per row group:
# a footer claiming more is refused before pyarrow parses it.
FOOTER_MAX_BYTES = 1 << 24
# pyarrow's limits on what the footer's thrift may claim: a string (names, statistics, key/value
# metadata) and a list (schema entries, row groups, column chunks).
THRIFT_STRING_MAX = 1 << 24
THRIFT_CONTAINER_MAX = 1 << 16

_NUMBER_FIELDS = ("packets", "bytes", "start", "end")
_TEXT, _INT64 = 0, 1  # how a used column is read: as text, or as integers
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
        parquet = ParquetObject(file)
    except Damaged as damage:
        _warn_damaged(file, notes, part.stats, str(damage), lost=None)
        return ObjectReading.of(part, notes)
    try:
        parquet.read(part, notes).finish(part)
    except NeedsReference:
        return read_reference(file, choices, topology, window, parquet.claimed_rows)
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
        with contextlib.suppress(Damaged):  # the reference reader says what is wrong
            claimed = ParquetObject(file).claimed_rows
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


class Damaged(Exception):
    """The object cannot be read at all; the message says why."""


def _warn_damaged(file: FlowLogFile, notes: Diagnostics, stats: ReductionStats, problem: str, lost: int | None) -> None:
    """`warn_damaged`, counted in the reduction's stats."""
    stats.damaged_files += 1
    stats.lost_records += lost or 0
    warn_damaged(file, notes, problem, lost)


def warn_damaged(file: FlowLogFile, notes: Diagnostics, problem: str, lost: int | None) -> None:
    """One DamagedFlowLog warning for the object, on one line; `lost`: the records it claims and did
    not give (None: not known)."""
    details: dict[str, Any] = {"file": file.path} if lost is None else {"file": file.path, "lostRecords": lost}
    notes.warn("DamagedFlowLog", " ".join(f"{file.path}: damaged Parquet: {problem}".split()), **details)


def _check_footer(path: str) -> None:
    """Damaged when the file's tail is not Parquet's or its footer claims more bytes than the file
    holds or a flow log needs."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 12:
            raise Damaged(f"{size} bytes, too short for Parquet")
        handle.seek(size - 8)
        tail = handle.read(8)
    if tail[4:] != b"PAR1":
        raise Damaged("no Parquet magic at its end (truncated, or not Parquet)")
    claimed = int.from_bytes(tail[:4], "little")
    if claimed > size - 12 or claimed > FOOTER_MAX_BYTES:
        raise Damaged(f"its footer claims {claimed} bytes of {size} (at most {FOOTER_MAX_BYTES} taken)")


class ParquetObject:
    """A Parquet object's footer, read with limits; the used columns' types decide the way in."""

    def __init__(self, file: FlowLogFile) -> None:
        self.file = file
        try:
            _check_footer(file.path)
        except OSError as error:  # not damage: the file cannot be read at all
            raise Damaged(f"unreadable ({error.strerror or error})") from error
        try:
            probe = self.open()
            names = probe.schema_arrow.names
            metadata = probe.metadata
            self.claimed_rows = sum(metadata.row_group(index).num_rows for index in range(metadata.num_row_groups))
            self.footer_rows = metadata.num_rows
            self.row_groups = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
            self.encodings = _encodings(metadata)
        except _DAMAGE as error:
            raise Damaged(f"unreadable footer ({type(error).__name__}: {error})") from error
        self.columns = {canonical_name(name): name for name in names}  # as readers.read_parquet
        self.format = LogFormat(tuple(self.columns), f"{file.path} columns")
        self.used = [name for name in USED_FIELDS if name in self.columns]

    def open(self, dictionaries: Iterable[str] = ()) -> pq.ParquetFile:
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
        parquet = self.open(name for name in columns if self.encodings.get(name, set()) <= _DICTIONARY_READ)
        schema = parquet.schema_arrow
        kinds = [_kind(name, schema.field(self.columns[name]).type) for name in self.used]
        part.formats.setdefault(self.format.fields, self.format.origin)
        layout = Layout(LogFormat(tuple(self.used), self.format.origin))  # the reference checks only these
        scanner = scanner_for(layout, part.topology, part.window, self.file.key_time)
        reader = _BatchReader(self, scanner, layout, kinds, part)
        damage = self.read_batches(parquet, columns, reader.read)
        if damage is not None:
            _warn_damaged(self.file, notes, part.stats, *damage)
        return ScannedText(scanner)

    def read_batches(
        self, parquet: pq.ParquetFile, columns: list[str], read: Callable[[int, pa.RecordBatch], None]
    ) -> tuple[str, int] | None:
        """Every row group's batches of `columns`, each given to `read` with the file's row number of
        its first row (numbered as the footer places them, whatever came before). A row group that is
        damaged (pyarrow or `read` raises) or gives fewer rows than it claims is lost and the others
        are read. Returns what was wrong, as one line, and the records lost; None when nothing was."""
        problems: list[str] = []
        lost = first = 0
        for index, claimed in enumerate(self.row_groups):
            delivered = 0
            try:
                for batch in parquet.iter_batches(BATCH_ROWS, [index], columns, use_threads=False):
                    read(first + delivered, batch)
                    delivered += batch.num_rows
            except _DAMAGE as error:
                problems.append(f"row group {index}: {type(error).__name__}: {error} ({delivered} of its rows read)")
            else:
                if delivered != claimed:
                    problems.append(f"row group {index} claims {claimed} rows, its pages gave {delivered}")
            lost += max(claimed - delivered, 0)
            first += claimed
        if self.footer_rows != self.claimed_rows:
            problems.insert(0, f"its footer claims {self.footer_rows} rows, its row groups {self.claimed_rows}")
        if not problems:
            return None
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        summary = f"{self.claimed_rows - lost} of the {self.claimed_rows} records its row groups claim were read"
        return f"{shown}; {summary} (the intact ones)", lost


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
        self, parquet: ParquetObject, scanner: TextScanner, layout: Layout, kinds: list[int], part: Reduction
    ) -> None:
        self.scanner, self.layout, self.kinds, self.part = scanner, layout, kinds, part
        self.where = Where(parquet.file.path)
        self.fallback = parquet.file.key_time

    def read(self, first: int, batch: pa.RecordBatch) -> None:
        """A batch whose first row is the file's row `first`."""
        columns = tuple(_column(self.kinds[index], batch.column(index)) for index in range(batch.num_columns))
        handed_back = self.scanner.scan_columns(columns, batch.num_rows)
        for row in handed_back:  # rows for the reference code, in file order, numbered as it numbers them
            self.where.line = first + row
            values = [[batch.column(index)[row].as_py()] for index in range(batch.num_columns)]
            add_rows(values, self.layout, self.part, self.where, self.fallback)  # counts the row in


def _column(kind: int, column: pa.Array) -> tuple[Any, ...]:
    """A column as `scan_columns` takes it, without a copy: (kind, offset, validity, entries' values,
    data buffers, entry numbers, entry count). A dictionary column's entries are its dictionary's
    and each row has an entry number (the scanner reads each entry once a batch and refuses a
    number out of range); a plain column's entries are its rows. Integers of other widths are
    widened to int64 (a copy; flow logs' numbers are int64)."""
    if isinstance(column, pa.DictionaryArray):
        indices = column.indices if column.indices.type == pa.int32() else column.indices.cast(pa.int32())
        validity, numbers = indices.buffers()
        dictionary = column.dictionary
        if dictionary.null_count:  # a null entry: not what the scanner reads (Parquet's have none)
            raise NeedsReference
        if kind == _INT64 and dictionary.type != pa.int64():
            dictionary = dictionary.cast(pa.int64())
        return (*_entries(kind, dictionary, validity if indices.null_count else None, indices.offset),
                numbers, len(dictionary))  # fmt: skip
    if kind == _INT64 and column.type != pa.int64():
        column = column.cast(pa.int64())
    return (*_entries(kind, column, column.buffers()[0] if column.null_count else None, column.offset),
            None, len(column))  # fmt: skip


# TextScanner.scan_columns' kinds of entries: string views, int64, strings with 32- or 64-bit offsets.
_VIEWS, _INT64_VALUES, _TEXT32, _TEXT64 = 0, 1, 2, 3
_EMPTY = pa.py_buffer(b"")


def _entries(kind: int, values: pa.Array, validity: pa.Buffer | None, offset: int) -> tuple[Any, ...]:
    """(kind, offset, validity, values, data buffers) of an array's values as entries 0, 1, ...
    (the array's own offset applied to its buffers)."""
    buffers = [_EMPTY if buffer is None else buffer for buffer in values.buffers()]
    first = values.offset
    if kind == _INT64:
        return _INT64_VALUES, offset, validity, buffers[1].slice(8 * first), ()
    if pa.types.is_string_view(values.type):
        return _VIEWS, offset, validity, buffers[1].slice(16 * first), tuple(buffers[2:])
    if pa.types.is_large_string(values.type):
        return _TEXT64, offset, validity, buffers[1].slice(8 * first), (buffers[2],)
    return _TEXT32, offset, validity, buffers[1].slice(4 * first), (buffers[2],)

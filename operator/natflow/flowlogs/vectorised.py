"""Vectorised reading of S3 text and Parquet flow logs: the reference readers' result, in bulk.

`readers.py` reads record by record and is the reference. This module reduces whole blocks of
records with numpy and polars and must give exactly the same `Reduction` (rows, every counter,
formats, first/last time) and the same warnings. It never guesses: whatever the bulk path does not
reproduce exactly goes to the reference code, so correctness does not depend on the fast path.

* Text is gunzipped with ISA-L (`isal`) and cut into blocks of about `TEXT_CHUNK_BYTES` of whole
  lines. numpy checks a block in a few passes over its bytes (`_LineScanner`): it takes the bulk
  path only when it holds nothing but printable ASCII, single spaces and newlines, and every line
  has exactly the format's number of fields. The same passes give every field's place, so only the
  lines that matter are taken further: those on a NAT Gateway ENI (picked by a 64-bit key of the
  interface-id field, decided exactly later) and NODATA/SKIPDATA. The other lines, about four in
  five, are only counted, as `_add_parts` counts them: other interfaces. The picked lines' used
  fields become Arrow string views into the block (no copy) and are reduced by polars, a batch
  of blocks (`BATCH_BYTES`) at a time. A block that fails the check, and every block of a batch
  with a malformed record or sums that could overflow 64 bits, goes through `readers._add_lines`.
* Parquet is read by polars, the used columns only, keeping in the scan the rows on a NAT ENI or
  with NODATA/SKIPDATA; a slice of rows goes through `readers._add_rows` under the same conditions.
* A whole file goes to the reference reader when it is damaged (truncated gzip, unreadable
  Parquet), has an unusable header, a first line with CR, or Parquet columns of types other
  than strings and integers: the reference then produces the same records and warnings.
* CloudWatch Logs exports always take the reference path.

Memory does not grow with the size of a file: text is decompressed and reduced block by block,
Parquet is read in row slices, and only the reduced rows (what the result holds anyway) are kept.
Many files are read by several processes, this one included (`read_all_parallel`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import multiprocessing
import os
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from typing import ClassVar, cast

import numpy as np
import polars as pl
import pyarrow as pa
from isal import isal_zlib

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
from natflow.flowlogs.reduce import IN, MAX_EXAMPLES, OUT, NatTopology, Reduction, ReductionStats, RowKey, RowValue
from natflow.flowlogs.sources import FileKind, FlowLogFile
from natflow.net import CidrSet, address_key, normalize_address
from natflow.timeutil import _MAX_SECONDS

# Decompressed bytes per text block (~6k records): numpy's passes over it stay in the caches.
TEXT_CHUNK_BYTES = 1 << 20
# Text reduced by polars at a time (~17k picked records): each reduction costs ~4 ms however small,
# and the batch's blocks stay in memory until it is reduced.
BATCH_BYTES = 16 << 20
COMPRESSED_BLOCK_BYTES = 1 << 18
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


# isal's stubs declare its error class as an instance.
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)


class _NeedsReference(Exception):
    """The whole file must be read by the reference reader."""


def read_file_vectorised(
    file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics
) -> None:
    """Read one file into `reduction`, as `readers.READERS[file.kind]` would, faster."""
    _add_rows_frame(reduction, _read_file(file, choices, reduction, diagnostics))


def _read_file(
    file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics
) -> pl.DataFrame | None:
    """Read one file into `reduction`, but for the rows the bulk path reduced: those are returned."""
    reader = _VECTORISED.get(file.kind)
    if reader is None:
        READERS[file.kind](file, choices, reduction, diagnostics)
        return None
    # Nothing reaches `reduction` before the file has been read to its end: a damaged file is
    # re-read by the reference reader, which keeps what comes before the damage and warns.
    part = Reduction(reduction.topology, reduction.window)  # what the reference code added
    notes = Diagnostics()
    try:
        bulk = reader(file, choices, part, notes)
    except (_NeedsReference, FormatError, pl.exceptions.PolarsError, _INFLATE_ERROR, *_DAMAGE):
        READERS[file.kind](file, choices, reduction, diagnostics)
        return None
    reduction.merge(part)
    bulk.finish(reduction)
    diagnostics.extend(notes)
    return bulk.grouped()


def _add_rows_frame(reduction: Reduction, grouped: pl.DataFrame | None) -> None:
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


def read_all_parallel(
    files: Iterable[FlowLogFile],
    choices: FormatChoices,
    topology: NatTopology,
    window: tuple[int, int] | None,
    diagnostics: Diagnostics,
    workers: int,
) -> Reduction:
    """Read every file, in `workers` processes (this one included) when there are several files.

    Files are handed out one at a time to whichever process is free; the result is what reading
    them in order gives (formats, malformed examples and warnings are merged in file order).
    """
    files = list(files)
    reduction = Reduction(topology, window)
    if workers < 2 or len(files) < 2:
        for file in files:
            read_file_vectorised(file, choices, reduction, diagnostics)
        return reduction
    # spawn: polars' thread pool does not survive fork. This process reads while the others start.
    context = multiprocessing.get_context("spawn")
    next_file = context.Value("q", 0)
    helpers = min(workers, len(files)) - 1
    with ProcessPoolExecutor(helpers, mp_context=context, initializer=_share, initargs=(next_file,)) as pool:
        with _environment(POLARS_MAX_THREADS="1"):  # one core each: no polars threads competing for it
            shares = [pool.submit(_read_share, files, choices, topology, window) for _ in range(helpers)]
        _share(next_file)
        results = [_read_share(files, choices, topology, window)] + [share.result() for share in shares]
    _merge_shares(reduction, results, diagnostics)
    return reduction


@contextlib.contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Environment variables for the processes started meanwhile (spawn copies the environment)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


class _FileNotes:
    """What of one file's reading depends on the order of files, kept apart until the merge."""

    __slots__ = ("diagnostics", "formats", "index", "malformed_examples")

    def __init__(self, index: int, part: Reduction, diagnostics: Diagnostics) -> None:
        self.index = index
        self.formats = part.formats
        self.malformed_examples = part.stats.malformed_examples
        self.diagnostics = diagnostics


# What `_read_share` returns: the sums of some files, their reduced rows, and the notes of each.
_Share = tuple[Reduction, pl.DataFrame | None, list[_FileNotes]]


def _merge_shares(reduction: Reduction, shares: Iterable[_Share], diagnostics: Diagnostics) -> None:
    """Fold the processes' shares into `reduction` as reading the files in order would."""
    notes: list[_FileNotes] = []
    rows = []
    for share, share_rows, share_notes in shares:
        reduction.merge(share)
        rows.extend([] if share_rows is None else [share_rows])
        notes.extend(share_notes)
    _add_rows_frame(reduction, _regrouped(rows) if rows else None)
    examples = reduction.stats.malformed_examples
    for file_notes in sorted(notes, key=lambda n: n.index):
        for fields, origin in file_notes.formats.items():
            reduction.formats.setdefault(fields, origin)
        examples.extend(file_notes.malformed_examples[: max(MAX_EXAMPLES - len(examples), 0)])
        diagnostics.extend(file_notes.diagnostics)


_next_file: Synchronized[int] | None = None  # the index of the next file to read, shared by the processes


def _share(next_file: Synchronized[int]) -> None:
    global _next_file
    _next_file = next_file


def _read_share(
    files: Sequence[FlowLogFile],
    choices: FormatChoices,
    topology: NatTopology,
    window: tuple[int, int] | None,
    indices: Iterable[int] | None = None,
) -> _Share:
    """Read the files at `indices` (by default, those no other process has taken yet)."""
    share = Reduction(topology, window)
    rows = _ReducedRows()
    notes: list[_FileNotes] = []
    for index in _unclaimed(len(files)) if indices is None else indices:
        part = Reduction(topology, window)
        file_diagnostics = Diagnostics()
        file_rows = _read_file(files[index], choices, part, file_diagnostics)
        notes.append(_FileNotes(index, part, file_diagnostics))
        part.formats, part.stats.malformed_examples = {}, []
        share.merge(part)
        if file_rows is not None:
            rows.add(file_rows)
    return share, rows.grouped(), notes


def _unclaimed(count: int) -> Iterator[int]:
    """Indices below `count` that no process has taken yet, taken one at a time."""
    assert _next_file is not None
    while True:
        with _next_file.get_lock():
            index = _next_file.value
            _next_file.value = index + 1
        if index >= count:
            return
        yield index


# -- S3 text ---------------------------------------------------------------------------------------


def _read_text(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> _FrameReducer:
    where = _Where(file.path)
    blocks = _line_blocks(_decompressed(file.path))
    first = next(blocks, None)
    rest: list[_Block] = []
    head = b""
    if first is not None:
        head_end = first.data.find(b"\n", 0, first.size) + 1
        head = first.data[:head_end]
        if head_end < first.size:
            rest.append(_Block(first.data[head_end:], first.size - head_end))
    if b"\r" in head:  # universal newlines would end the first line at the CR
        raise _NeedsReference
    layout = _begin_text(file, head.decode("utf-8", "replace"), choices, part, diagnostics, where)
    fields = layout.format.fields
    used = [f for f in USED_FIELDS if f in fields]
    if not used:  # frames without columns would have no rows to count
        raise _NeedsReference
    bulk = _FrameReducer(used, part.topology, part.window, file.key_time)
    batch = _TextBatch(_LineScanner(fields, used, part.topology.natgw_by_eni), bulk, layout, part, where, file.key_time)
    line = 2
    for block in itertools.chain(rest, blocks):
        line = batch.add(block, line)
    batch.flush()
    return bulk


def _decompressed(path: str) -> Iterator[bytes]:
    """The object's bytes, gunzipped when it is gzip; a truncated or corrupt gzip raises (EOFError, IsalError)."""
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raw.seek(0)
            yield from iter(lambda: raw.read(TEXT_CHUNK_BYTES), b"")
            return
        raw.seek(0)
        inflate = isal_zlib.decompressobj(wbits=31)  # gzip framing: the CRC and length are checked too
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


class _Block:
    """Whole lines of text (`size` bytes, ending with a newline), then zero bytes: word-wide reads stay inside."""

    __slots__ = ("data", "size")

    def __init__(self, data: bytes, size: int) -> None:
        self.data = data
        self.size = size

    def lines(self) -> io.StringIO:
        """The lines as the reference reads them (TextIOWrapper's decoding and newlines)."""
        return io.StringIO(self.data[: self.size].decode("utf-8", "replace"), newline=None)


_PADDING = bytes(16)


def _line_blocks(pieces: Iterable[bytes]) -> Iterator[_Block]:
    """About TEXT_CHUNK_BYTES of whole lines at a time; a last line without newline gets one (it splits the same)."""
    carry: list[bytes] = []
    for piece in pieces:
        cut = piece.rfind(b"\n") + 1
        if not cut:
            carry.append(piece)
            continue
        data = b"".join([*carry, memoryview(piece)[:cut], _PADDING])
        yield _Block(data, len(data) - len(_PADDING))
        carry = [piece[cut:]]
    if any(carry):
        data = b"".join([*carry, b"\n", _PADDING])
        yield _Block(data, len(data) - len(_PADDING))


class _TextBatch:
    """Scanned blocks of one file waiting to be reduced together: polars' cost per call is paid per batch.

    A block that fails the scan, and every block of a batch that the reducer refuses, goes through
    the reference code, in file order (the first malformed records are kept as examples).
    """

    def __init__(
        self,
        scanner: _LineScanner,
        bulk: _FrameReducer,
        layout: _Layout,
        part: Reduction,
        where: _Where,
        fallback_time: tuple[int, int] | None,
    ) -> None:
        self.scanner = scanner
        self.bulk = bulk
        self.layout = layout
        self.part = part
        self.where = where
        self.fallback_time = fallback_time
        self.pending: list[tuple[_Block, int, _Scan]] = []
        self.pending_bytes = 0

    def add(self, block: _Block, line: int) -> int:
        """Take `block`, whose first line is number `line`; returns the number of the line after it."""
        scan = self.scanner.scan(block)
        if scan is None:
            self.flush()
            self._reference(block, line)
            return self.where.line + 1
        self.pending.append((block, line, scan))
        self.pending_bytes += block.size
        if self.pending_bytes >= BATCH_BYTES:
            self.flush()
        return line + scan.lines

    def flush(self) -> None:
        if not self.pending:
            return
        unselected = sum(scan.lines - scan.selected for _, _, scan in self.pending)
        if not self.bulk.add(self._frame(), unselected):
            for block, line, _ in self.pending:
                self._reference(block, line)
        self.pending, self.pending_bytes = [], 0

    def _reference(self, block: _Block, line: int) -> None:
        _add_lines(block.lines(), line, self.layout, self.part, self.where, self.fallback_time)

    def _frame(self) -> pl.DataFrame:
        """The selected lines' used fields as string columns that point into the blocks (no copy)."""
        columns = {}
        for index, name in enumerate(self.scanner.used):
            chunks = [
                pa.Array.from_buffers(
                    pa.string_view(), scan.selected, [None, pa.py_buffer(scan.views[index]), pa.py_buffer(block.data)]
                )
                for block, _, scan in self.pending
            ]
            columns[name] = pl.Series(name, pa.chunked_array(chunks, pa.string_view()))
        return pl.DataFrame(columns)


class _Scan:
    """What `_LineScanner.scan` found in a block: its line count and the selected lines' used fields."""

    __slots__ = ("lines", "selected", "views")

    def __init__(self, lines: int, selected: int, views: np.ndarray) -> None:
        self.lines = lines
        self.selected = selected
        self.views = views  # per used field, Arrow string views (rows x 4 uint32) into the block


# Arrow string views hold up to 12 bytes themselves; longer strings point into a buffer.
_INLINE_BYTES = 12
_SPACE, _NEWLINE, _TILDE = 0x20, 0x0A, 0x7E
_NO_DATA, _SKIP_DATA = (int.from_bytes(status, "little") for status in (b"NODATA", b"SKIPDATA"))
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
# The two 64-bit words of a string view that hold its length and up to 12 bytes, by length (13: longer
# strings, whose view keeps a 4-byte prefix).
_VIEW_MASKS = np.array(
    [
        [0xFFFFFFFF | ((1 << (8 * min(n, 4))) - 1) << 32 for n in range(13)] + [(1 << 64) - 1],
        [(1 << (8 * max(min(n - 4, 8), 0))) - 1 for n in range(13)] + [0],
    ],
    dtype=np.uint64,
)
_KEY_MIX = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)  # odd multipliers: any good 64-bit mixing does


class _LineScanner:
    """Checks a block of lines with numpy and finds the lines, and their used fields, that must be reduced.

    A block passes only when every line is what `str.split()` reads as the format's fields: printable
    ASCII, single spaces between fields, no leading or trailing space, the format's number of fields.
    Of those lines, the ones on a NAT Gateway ENI or with NODATA/SKIPDATA need the reduction; the
    others are counted as other interfaces, as `_add_parts` counts them. The ENI test is a superset
    (a 64-bit key of the field) that the reducer then decides exactly.
    """

    def __init__(self, fields: Sequence[str], used: Sequence[str], nat_enis: Iterable[str]) -> None:
        self.width = len(fields)
        self.used = list(used)
        self.interface = fields.index("interface-id") if "interface-id" in fields else None
        self.status = fields.index("log-status") if "log-status" in fields else None
        self.columns = np.array([fields.index(name) for name in used])
        # An ENI that a checked line cannot hold (other bytes, empty) matches no line.
        plain = [eni.encode() for eni in nat_enis if eni and all(_SPACE < ord(c) <= _TILDE for c in eni)]
        self.nat_keys = np.array(sorted({_bytes_key(eni) for eni in plain}), dtype=np.uint64)

    def scan(self, block: _Block) -> _Scan | None:
        """The block's lines and selected fields, or None when some line must be read by the reference code."""
        data, size = block.data, block.size
        text = np.frombuffer(data, np.uint8, count=size)
        if text.max() > _TILDE or size >= 1 << 32:  # string views hold 32-bit offsets
            return None
        separators = np.flatnonzero(text <= _SPACE)  # spaces, newlines and other control bytes
        lines, extra = divmod(len(separators), self.width)
        if extra or not lines:
            return None
        table = separators.reshape(lines, self.width)
        ends = table[:, -1]
        # The last separator of every line is its newline and no other control byte is left: every line
        # has width - 1 spaces. None of them next to another or at the start: no field is empty.
        if np.count_nonzero(text < _SPACE) != lines or np.count_nonzero(text[ends] == _NEWLINE) != lines:
            return None
        if separators[0] == 0 or np.diff(separators).min(initial=2) < 2:
            return None
        # Field i of a line ends at its separator i and starts after the separator before (for the first
        # field, the previous line's newline).
        previous = np.empty(len(separators) + 1, dtype=np.int64)
        previous[0] = -1
        previous[1:] = separators
        ends_before = previous[:-1].reshape(lines, self.width)
        chosen = self._selected(data, table, ends_before)
        if chosen is not None:
            table, ends_before = table[chosen], ends_before[chosen]
        starts = ends_before[:, self.columns] + 1
        lengths = table[:, self.columns] - starts
        views = _string_views(data, starts.T.ravel(), lengths.T.ravel())
        return _Scan(lines, len(starts), views.reshape(len(self.used), len(starts), 4))

    def _selected(self, data: bytes, table: np.ndarray, ends_before: np.ndarray) -> np.ndarray | None:
        """Indices of the lines on a NAT ENI or with NODATA/SKIPDATA (and maybe a few others); None for all."""
        if self.interface is None:  # the ENI comes from the addresses, after every number is checked
            return None
        start = ends_before[:, self.interface] + 1
        chosen = np.isin(_token_keys(data, start, table[:, self.interface] - start), self.nat_keys)
        if self.status is not None:
            start = ends_before[:, self.status] + 1
            length = table[:, self.status] - start
            word = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))[start]
            chosen |= (length == 6) & ((word & _LOW_BYTES[6]) == _NO_DATA)
            chosen |= (length == 8) & (word == _SKIP_DATA)
        return np.flatnonzero(chosen)


def _token_keys(data: bytes, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """`_bytes_key` of each field: equal fields have equal keys."""
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    first = words[start] & _LOW_BYTES[np.minimum(length, 8)]
    last = np.where(length >= 8, words[np.maximum(start + length - 8, 0)], first)
    keys: np.ndarray = (first * np.uint64(_KEY_MIX[0])) ^ (last * np.uint64(_KEY_MIX[1])) ^ length.astype(np.uint64)
    return keys


def _bytes_key(token: bytes) -> int:
    """A 64-bit key from a field's length, first and last eight bytes."""
    first = int.from_bytes(token[:8], "little")
    last = int.from_bytes(token[-8:], "little") if len(token) >= 8 else first
    return ((first * _KEY_MIX[0]) ^ (last * _KEY_MIX[1]) ^ len(token)) & ((1 << 64) - 1)


def _string_views(data: bytes, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Arrow string views of fields of `data`: length, then the bytes, or a prefix, buffer 0 and the offset."""
    head = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))[start]  # bytes 0-7
    tail = np.ndarray((len(data) - 3,), dtype="<u4", buffer=data, strides=(1,))[start + 8]  # bytes 8-11
    kept = np.minimum(length, _INLINE_BYTES + 1)  # (1-D tables and np.where: much faster than 2-D or masks)
    views = np.empty((len(start), 2), dtype=np.uint64)
    # The length, then bytes 0-3 (all that a longer string keeps); then bytes 4-11, or buffer 0 and the offset.
    views[:, 0] = (length.astype(np.uint64) | (head << 32)) & _VIEW_MASKS[0][kept]
    inline = ((head >> 32) | (tail.astype(np.uint64) << 32)) & _VIEW_MASKS[1][kept]
    views[:, 1] = np.where(length > _INLINE_BYTES, start.astype(np.uint64) << 32, inline)
    as_words: np.ndarray = views.view(np.uint32)
    return as_words


# -- S3 Parquet ------------------------------------------------------------------------------------


def _read_parquet(
    file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics
) -> _FrameReducer:
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
    if not used:  # frames without columns would have no rows to count
        raise _NeedsReference
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
    strings = [f for f in used if not pa.types.is_integer(schema.field(columns[f]).type)]
    # Parquet nulls (and the text "None") are what '-' is in a text record.
    as_text = [
        pl.when(pl.col(f).is_null() | (pl.col(f) == "None")).then(pl.lit("-")).otherwise(f).alias(f) for f in strings
    ]
    selected = _parquet_selection(used, part.topology)
    where = _Where(file.path)
    rows = parquet.metadata.num_rows
    for offset in range(0, rows, PARQUET_SLICE_ROWS):
        frame = scan.slice(offset, PARQUET_SLICE_ROWS).filter(selected).with_columns(as_text).collect()
        if not bulk.add(frame, min(PARQUET_SLICE_ROWS, rows - offset) - frame.height):
            where.line = offset
            full = scan.slice(offset, PARQUET_SLICE_ROWS).collect()
            _add_rows([full[f].to_list() for f in used], layout, part, where, file.key_time)
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
        self.addresses = _AddressMemo.of(topology.inside)
        self.window = window
        self.fallback_time = fallback_time
        self.stats = ReductionStats()
        self.rows = _ReducedRows()
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
        """Per record, what `_add_parts` and `Reduction.add` decide, as columns."""
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


class _ReducedRows:
    """Frames of reduced rows, re-aggregated whenever they double: memory follows the keys, not the records."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.height = 0
        self.compacted = 0  # the height after the last re-aggregation

    def add(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)
        self.height += frame.height
        if self.height > max(2 * self.compacted, COMPACT_ROWS):
            self.frames = [_regrouped(self.frames)]
            self.height = self.compacted = self.frames[0].height

    def grouped(self) -> pl.DataFrame | None:
        """One row per key (None when there are none)."""
        return _regrouped(self.frames) if self.frames else None


def _regrouped(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Reduced rows from several frames, one per key."""
    return pl.concat(frames).group_by(_GROUP_KEY).agg(_SUMS)


class _AddressMemo:
    """Address text -> (canonical text, inside the VPC), learnt once per process for a set of CIDRs.

    Not CidrSet's own memo: that one would travel back from worker processes with the topology.
    """

    _by_set: ClassVar[weakref.WeakKeyDictionary[CidrSet, _AddressMemo]] = weakref.WeakKeyDictionary()
    LIMIT = 1 << 20  # distinct addresses kept (many internet peers): then it starts again

    def __init__(self, inside: CidrSet) -> None:
        self.inside = inside
        self.known: set[str] = set()
        self.inside_addresses = pl.Series(dtype=pl.String)
        self.canonical: dict[str, str] = {}  # only the addresses written otherwise (IPv6)

    @classmethod
    def of(cls, inside: CidrSet) -> _AddressMemo:
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

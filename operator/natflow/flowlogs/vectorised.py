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
  with a malformed record or sums that could overflow 64 bits, goes through `readers.add_lines`.
* Parquet is read by polars, the used columns only, keeping in the scan the rows on a NAT ENI or
  with NODATA/SKIPDATA; a slice of rows goes through `readers.add_rows` under the same conditions.
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
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from typing import cast

import numpy as np
import polars as pl
import pyarrow as pa
from isal import isal_zlib

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import columnar
from natflow.flowlogs.columnar import FrameReducer, ReducedRows, add_rows_frame, regrouped
from natflow.flowlogs.fields import USED_FIELDS, FormatError
from natflow.flowlogs.readers import (
    DAMAGE,
    READERS,
    FormatChoices,
    Layout,
    NeedsReference,
    Where,
    add_lines,
    begin_text,
)
from natflow.flowlogs.reduce import MAX_EXAMPLES, NatTopology, Reduction
from natflow.flowlogs.sources import FileKind, FlowLogFile

# Decompressed bytes per text block (~6k records): numpy's passes over it stay in the caches.
TEXT_CHUNK_BYTES = 1 << 20
# Text reduced by polars at a time (~17k picked records): each reduction costs ~4 ms however small,
# and the batch's blocks stay in memory until it is reduced.
BATCH_BYTES = 16 << 20
COMPRESSED_BLOCK_BYTES = 1 << 18

# isal's stubs declare its error class as an instance.
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)


def read_file_vectorised(
    file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics
) -> None:
    """Read one file into `reduction`, as `readers.READERS[file.kind]` would, faster."""
    add_rows_frame(reduction, _read_file(file, choices, reduction, diagnostics))


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
    except (NeedsReference, FormatError, pl.exceptions.PolarsError, _INFLATE_ERROR, *DAMAGE):
        READERS[file.kind](file, choices, reduction, diagnostics)
        return None
    reduction.merge(part)
    bulk.finish(reduction)
    diagnostics.extend(notes)
    return bulk.grouped()


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
    add_rows_frame(reduction, regrouped(rows) if rows else None)
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
    rows = ReducedRows()
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


def _read_text(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> FrameReducer:
    where = Where(file.path)
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
        raise NeedsReference
    layout = begin_text(file, head.decode("utf-8", "replace"), choices, part, diagnostics, where)
    fields = layout.format.fields
    used = [f for f in USED_FIELDS if f in fields]
    if not used:  # frames without columns would have no rows to count
        raise NeedsReference
    bulk = FrameReducer(used, part.topology, part.window, file.key_time)
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
                raise NeedsReference
            while data:
                yield inflate.decompress(data, TEXT_CHUNK_BYTES)  # ~TEXT_CHUNK_BYTES at a time
                data = inflate.unconsumed_tail
        if not inflate.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        if inflate.unused_data:
            raise NeedsReference


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
        bulk: FrameReducer,
        layout: Layout,
        part: Reduction,
        where: Where,
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
        add_lines(block.lines(), line, self.layout, self.part, self.where, self.fallback_time)

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


_VECTORISED = {FileKind.TEXT: _read_text, FileKind.PARQUET: columnar.read_parquet}

"""Read only what a trace needs: the objects whose keys can hold the window, and of them the records
that name given addresses.

* S3 text: gunzipped a piece at a time (ISA-L) and filtered by the compiled scanner
  (`_textscan.filter_lines`): a line is rejected in C unless one of its address fields holds one
  of the addresses; the few lines kept (and any line the C code cannot split with certainty) are
  checked again and parsed here.
* S3 Parquet: in a decoder process (`trace/parquet.py`, with natflow attribute's checks), pyarrow
  reads the trace columns a batch at a time and keeps the rows whose address columns hold one of
  the addresses (`pyarrow.compute.is_in`); a decoder that dies loses that object, said in a warning.
* CloudWatch Logs exports: each event's message, checked here.

Damaged objects keep the records read before the damage, with a warning, as `natflow attribute`.
Memory is one decompressed piece (or one Parquet batch) and the records kept.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from array import array
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from natflow.aws.flowsource import OBJECT_SLACK_SECONDS
from natflow.diagnostics import Diagnostics
from natflow.flowlogs import decoders
from natflow.flowlogs._textscan import filter_lines
from natflow.flowlogs.fields import MAX_LINE_BYTES, FormatError, LogFormat, header_format
from natflow.flowlogs.readers import (
    DAMAGE,
    FormatChoices,
    NeedsReference,
    line_spans,
    raw_lines,
    span_lines,
    text_lines,
)
from natflow.flowlogs.sources import FileKind, FlowLogFile
from natflow.flowlogs.textscan import INFLATE_ERROR, _decompressed, _first_line
from natflow.jsonstream import JsonStreamError, iter_member_elements
from natflow.net import CidrSet, normalize_address
from natflow.trace.records import (
    ADDRESS_FIELDS,
    FlowRecord,
    MalformedRecord,
    ParquetRows,
    Row,
    record_of,
    record_of_tokens,
)

MAX_TEXT_ADDRESSES = 64  # filter_lines compares at most this many non-IPv4 texts; more go the Python way


@dataclass
class ScanStats:
    files_read: int = 0
    files_skipped_by_key: int = 0
    records_read: int = 0
    records_kept: int = 0
    outside_window_records: int = 0
    malformed_records: int = 0
    malformed_examples: list[str] = field(default_factory=list)

    def malformed(self, where: str, why: str) -> None:
        self.malformed_records += 1
        if len(self.malformed_examples) < 5:
            self.malformed_examples.append(f"{where}: {why}")

    def too_long(self, where: str) -> None:
        """A line longer than any record: one malformed record."""
        self.records_read += 1
        self.malformed(where, f"a line longer than any record ({MAX_LINE_BYTES} bytes); skipped")

    def merge(self, other: ScanStats) -> None:
        for name, value in vars(other).items():
            if name == "malformed_examples":
                self.malformed_examples.extend(value[: 5 - len(self.malformed_examples)])
            else:
                setattr(self, name, getattr(self, name) + value)


class AddressFilter:
    """The addresses looked for, and in which fields: IPv4 as sorted integers for the C filter."""

    def __init__(
        self, addresses: Collection[str], fields: Sequence[str] = ADDRESS_FIELDS, inside: CidrSet | None = None
    ) -> None:
        self.texts = frozenset(normalize_address(a) for a in addresses)
        self.fields = tuple(fields)
        # For collecting: a line's other address must lie outside these (an internet leg's remote).
        self.inside = inside
        self.inside_ranges = array("I", [bound for pair in (inside.ipv4_ranges() if inside else []) for bound in pair])
        ipv4: list[int] = []
        other: list[str] = []
        for text in sorted(self.texts):
            try:
                parsed = ipaddress.ip_address(text)
            except ValueError:
                other.append(text)
                continue
            if parsed.version == 4:
                ipv4.append(int(parsed))
            else:
                other.append(text)
        self.ipv4 = array("I", sorted(set(ipv4)))  # native uint32, as filter_lines reads them
        self.other = tuple(t.encode() for t in other)

    def __bool__(self) -> bool:
        return bool(self.texts)

    def positions(self, fmt: LogFormat) -> tuple[int, ...]:
        return tuple(i for i in (fmt.index(name) for name in self.fields) if i is not None)

    def matches(self, tokens: Sequence[str], positions: Sequence[int]) -> bool:
        texts = self.texts
        return any(normalize_address(tokens[i]) in texts for i in positions if i < len(tokens))

    def collects(self, tokens: Sequence[str], positions: Sequence[int]) -> bool:
        """filter_lines' collect rule: one field holds an address of the filter, another one an
        address outside `inside`."""
        values = [normalize_address(tokens[i]) for i in positions if i < len(tokens)]
        if not any(value in self.texts for value in values):
            return False
        inside = self.inside if self.inside is not None else CidrSet()
        return any(
            value not in self.texts and value != "-" and _is_address(value) and value not in inside for value in values
        )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class Wanted:
    """What a pass keeps: records naming `subject` addresses; and, of the other records, those whose
    srcaddr or dstaddr is one of `collect` (the NAT gateways' own addresses: internet legs), held
    until the file's end, when `choose` (given the file's kept records) says which to keep."""

    subject: AddressFilter
    collect: AddressFilter | None = None
    choose: Callable[[list[FlowRecord]], AddressFilter | None] | None = None


@dataclass
class Kept:
    """What files gave: the records kept (in file order), the collected ones chosen, counts, warnings."""

    records: list[FlowRecord] = field(default_factory=list)
    chosen: list[FlowRecord] = field(default_factory=list)
    chosen_by: dict[str, frozenset[str]] = field(default_factory=dict)  # file path -> the addresses chosen
    stats: ScanStats = field(default_factory=ScanStats)
    notes: Diagnostics = field(default_factory=Diagnostics)


class _Reader:
    """One file's records that pass the filter and the window, and its collected lines."""

    def __init__(self, file: FlowLogFile, wanted: Wanted, window: tuple[int, int] | None) -> None:
        self.file = file
        self.wanted = wanted
        self.window = window
        self.kept = Kept()
        self.kept.stats.files_read = 1
        self.blobs: list[tuple[LogFormat, bytes]] = []  # collected text lines
        self.tables: list[tuple[tuple[str, ...], list[Row]]] = []  # collected Parquet rows (their fields, rows)
        self.pending: list[tuple[LogFormat, Sequence[str], str, tuple[int, int] | None]] = []  # collected, split

    def add(
        self, values: dict[str, str | None], where: str, fallback: tuple[int, int] | None, chosen: bool = False
    ) -> None:
        try:
            record = record_of(values, where, fallback)
        except MalformedRecord as error:
            self.kept.stats.malformed(where, str(error))
            return
        self._keep(record, chosen)

    def add_line(self, fmt: LogFormat, text: str | None, where: str) -> None:
        """A text line: a record (counted as read), blank, or None for a line longer than any record."""
        if text is None:
            self.kept.stats.too_long(where)
            return
        tokens = text.split()
        if tokens:
            self.kept.stats.records_read += 1
            self.add_tokens(fmt, tokens, where, self.file.key_time)

    def add_tokens(
        self, fmt: LogFormat, tokens: Sequence[str], where: str, fallback: tuple[int, int] | None, chosen: bool = False
    ) -> None:
        """A split record that may or may not match (it is counted as read by the caller)."""
        if len(tokens) != len(fmt.fields):
            self.kept.stats.malformed(where, f"{len(tokens)} fields, the format has {len(fmt.fields)}")
            return
        if not chosen and not self.wanted.subject.matches(tokens, self.wanted.subject.positions(fmt)):
            collect = self.wanted.collect
            if collect is not None and collect.collects(tokens, collect.positions(fmt)):
                self.pending.append((fmt, tokens, where, fallback))
            return
        try:
            record = record_of_tokens(fmt.fields, tokens, where, fallback)
        except MalformedRecord as error:
            self.kept.stats.malformed(where, str(error))
            return
        self._keep(record, chosen)

    def _keep(self, record: FlowRecord | None, chosen: bool) -> None:
        if record is None:
            return
        window = self.window
        if window is not None and not (window[0] <= record.start < window[1]):
            if not chosen:
                self.kept.stats.outside_window_records += 1
            return
        if chosen:
            self.kept.chosen.append(record)
        else:
            self.kept.stats.records_kept += 1
            self.kept.records.append(record)

    def finish(self) -> None:
        """Keep the collected records the file's own records call for."""
        choose = self.wanted.choose
        chooser = choose(self.kept.records) if choose is not None else None
        if chooser is None or not chooser:
            return
        self.kept.chosen_by[self.file.path] = chooser.texts
        number = 0
        for fmt, blob in self.blobs:
            positions = chooser.positions(fmt)
            if len(chooser.other) > MAX_TEXT_ADDRESSES:
                spans = [(0, len(blob))]
            else:
                _, _, found, _ = filter_lines(
                    blob,
                    0,
                    len(blob),
                    len(fmt.fields),
                    positions,
                    chooser.ipv4,
                    chooser.other,
                    (),
                    b"",
                    b"",
                    MAX_LINE_BYTES,
                )
                spans = [(span_start, span_end) for _, span_start, span_end in found]
            for span_start, span_end in spans:
                for line in blob[span_start:span_end].decode("utf-8", "replace").splitlines():
                    tokens = line.split()
                    number += 1
                    if tokens and chooser.matches(tokens, positions):
                        self.add_tokens(
                            fmt,
                            tokens,
                            f"{self.file.path} (an internet leg, {number})",
                            self.file.key_time,
                            chosen=True,
                        )
        for fmt, split, where, fallback in self.pending:
            if chooser.matches(split, chooser.positions(fmt)):
                self.add_tokens(fmt, split, where, fallback, chosen=True)
        for table in self.tables:
            _chosen_rows(table, chooser, self)


# -- S3 text ------------------------------------------------------------------------------------------
def _read_text(file: FlowLogFile, choices: FormatChoices, reader: _Reader) -> None:
    pieces = _decompressed(file.path)
    head, rest = _first_line(pieces)
    first = head.decode("utf-8", "replace")
    header = header_format(first, f"{file.path} header")
    fmt = choices.text_format(file, header)
    stats = reader.kept.stats
    line = 1
    if header is None:
        reader.add_line(fmt, first, f"{file.path}:1")
    subject, collect = reader.wanted.subject, reader.wanted.collect
    positions = subject.positions(fmt)
    collect_positions = collect.positions(fmt) if collect is not None else ()
    collect_ipv4 = collect.ipv4 if collect is not None else b""
    collect_inside = collect.inside_ranges if collect is not None else b""
    fast = len(fmt.fields) <= 64 and len(subject.other) <= MAX_TEXT_ADDRESSES

    def scan(data: bytes, start: int, end: int) -> None:
        nonlocal line
        if start == end:
            return
        if not fast:
            _python_lines(data, start, end, line + 1)
            line += data.count(b"\n", start, end)
            return
        lines, rejected, spans, collected = filter_lines(
            data,
            start,
            end,
            len(fmt.fields),
            positions,
            subject.ipv4,
            subject.other,
            collect_positions,
            collect_ipv4,
            collect_inside,
            MAX_LINE_BYTES,
        )
        stats.records_read += rejected
        if collected:
            reader.blobs.append((fmt, collected))
        for index, span_start, span_end in spans:
            _python_lines(data, span_start, span_end, line + 1 + index)
        line += lines

    def _python_lines(data: bytes, start: int, end: int, number: int) -> None:
        # Universal newlines, as the reference reader splits: a CR ends a line too.
        for offset, text in enumerate(text_lines(span_lines(data, start, end))):
            reader.add_line(fmt, text, f"{file.path}:{number + offset}")

    for span in line_spans(rest, pieces):
        if span is None:
            line += 1
            stats.too_long(f"{file.path}:{line}")
        else:
            scan(*span)


# -- S3 Parquet ----------------------------------------------------------------------------------------
# The reader of a Parquet object in a decoder process (by name: this process never loads pyarrow).
PARQUET_READER = "natflow.trace.parquet:read_object"


def _read_parquet(file: FlowLogFile, reader: _Reader) -> None:
    subject, collect = reader.wanted.subject, reader.wanted.collect
    looked = (subject.texts, subject.fields), (collect.texts, collect.fields) if collect is not None else None
    try:
        limit = decoders.time_limit(os.stat(file.path).st_size)
    except OSError:
        limit = decoders.time_limit(0)  # the decoder says what is wrong with the file
    try:
        rows: ParquetRows = decoders.pool().call(PARQUET_READER, (file, *looked), limit)
    except decoders.DecoderFailed as failure:
        reader.kept.notes.warn(
            "DamagedFlowLog", f"{file.path}: {failure}; none of its records are counted", file=file.path
        )
        return
    reader.kept.stats.records_read += rows.records_read
    for number, values in rows.kept:
        reader.add(dict(zip(rows.names, values, strict=True)), f"{file.path} row {number}", file.key_time)
    collected = b"".join(rows.collected_lines)
    if collected:
        reader.blobs.append((LogFormat(rows.names, f"{file.path} columns"), collected))
    if rows.collected:
        reader.tables.append((rows.names, rows.collected))
    for item in rows.warnings:
        reader.kept.notes.warn(item.reason, item.message, **item.details)


def _chosen_rows(item: tuple[tuple[str, ...], list[Row]], chooser: AddressFilter, reader: _Reader) -> None:
    names, collected = item
    positions = [names.index(name) for name in chooser.fields if name in names]
    for number, values in collected:
        if any(values[position] in chooser.texts for position in positions):
            where = f"{reader.file.path} row {number}"
            reader.add(dict(zip(names, values, strict=True)), where, reader.file.key_time, True)


# -- CloudWatch Logs exports -------------------------------------------------------------------------
def _read_cloudwatch(file: FlowLogFile, choices: FormatChoices, reader: _Reader) -> None:
    formats = choices.cloudwatch_formats()
    by_width: dict[int, LogFormat] = {}
    for fmt in formats:
        by_width.setdefault(len(fmt.fields), fmt)
    stats = reader.kept.stats
    with open(file.path, encoding="utf-8", errors="replace") as handle:
        for index, (kind, item) in enumerate(_events(handle), start=1):
            if kind != "element":
                continue
            stats.records_read += 1
            where = f"{file.path} event {index}"
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                stats.malformed(where, "event without a message")
                continue
            tokens = item["message"].split()
            timestamp = item.get("timestamp")
            fallback = None
            if isinstance(timestamp, int) and not isinstance(timestamp, bool):
                fallback = (timestamp // 1000, timestamp // 1000)
            reader.add_tokens(by_width.get(len(tokens), formats[0]), tokens, where, fallback)


def _events(handle: IO[str]) -> Iterator[tuple[str, Any]]:
    return iter_member_elements(handle, "events")


# -- many files --------------------------------------------------------------------------------------
def in_window(file: FlowLogFile, window: tuple[int, int] | None) -> bool:
    """Whether the object's key can hold records that start in the window."""
    if window is None or file.key_time is None:
        return True
    first, last = file.key_time
    return not (last < window[0] or first > window[1] + OBJECT_SLACK_SECONDS)


def read_file(file: FlowLogFile, choices: FormatChoices, wanted: Wanted, window: tuple[int, int] | None) -> Kept:
    """One file's kept records; damage is a warning that keeps what came before it."""
    reader = _Reader(file, wanted, window)
    try:
        if file.kind is FileKind.TEXT:
            try:
                _read_text(file, choices, reader)
            except NeedsReference:  # a gzip of several members: read again by the gzip module
                reader = _Reader(file, wanted, window)
                _read_text_plain(file, choices, reader)
        elif file.kind is FileKind.PARQUET:
            _read_parquet(file, reader)
        else:
            _read_cloudwatch(file, choices, reader)
    except FormatError as error:
        reader.kept.notes.warn("UnreadableFlowLog", str(error), file=file.path)
    except (JsonStreamError, INFLATE_ERROR, *DAMAGE) as error:
        reader.kept.notes.warn(
            "DamagedFlowLog",
            f"{file.path}: truncated or corrupt ({type(error).__name__}: {error}); records read before the "
            "damage are kept",
            file=file.path,
        )
    reader.finish()
    return reader.kept


def _read_text_plain(file: FlowLogFile, choices: FormatChoices, reader: _Reader) -> None:
    """What the gzip module reads (a gzip of several members), line by line as the reference reader
    splits: a line longer than any record is one malformed record, read past without being kept."""
    import gzip

    with open(file.path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    with gzip.open(file.path, "rb") if gzipped else open(file.path, "rb") as raw:
        lines = text_lines(raw_lines(raw))
        first = next(lines, "")
        header = header_format(first, f"{file.path} header") if first is not None else None
        fmt = choices.text_format(file, header)
        numbered = enumerate(lines, start=2)
        for number, text in itertools.chain([(1, first)] if header is None else [], numbered):
            reader.add_line(fmt, text, f"{file.path}:{number}")


def read_files(
    files: Sequence[FlowLogFile],
    choices: FormatChoices,
    wanted: Wanted,
    window: tuple[int, int] | None,
    workers: int,
) -> Kept:
    """Every file's kept records in file order, `workers` files at a time (the gunzip and the
    filter run without the GIL)."""
    total = Kept()
    chosen = [file for file in files if in_window(file, window)]
    total.stats.files_skipped_by_key = len(files) - len(chosen)
    with ThreadPoolExecutor(max(1, min(workers, len(chosen) or 1))) as pool:
        for kept in pool.map(lambda file: read_file(file, choices, wanted, window), chosen):
            total.records.extend(kept.records)
            total.chosen.extend(kept.chosen)
            total.chosen_by.update(kept.chosen_by)
            total.stats.merge(kept.stats)
            total.notes.extend(kept.notes)
    return total

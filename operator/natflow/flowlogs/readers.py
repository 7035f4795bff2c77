"""Read flow-log files (S3 text, S3 Parquet, CloudWatch Logs exports) into a `Reduction`.

This is the straightforward, record-at-a-time path: it is the reference that faster readers
must match. Each reader streams: memory does not grow with the size of a file.
"""

from __future__ import annotations

import gzip
import io
import itertools
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any, Protocol

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import (
    MAX_LINE_BYTES,
    FormatError,
    LogFormat,
    canonical_name,
    default_format,
    header_format,
)
from natflow.flowlogs.plausible import (
    MAX_NUMBER_DIGITS,
    MAX_RECORD_BYTES,
    MAX_RECORD_PACKETS,
    TOO_LARGE,
    shown,
    time_bounds,
)
from natflow.flowlogs.reduce import Reduction
from natflow.flowlogs.sources import FileKind, FlowLogFile
from natflow.jsonstream import JsonStreamError, iter_member_elements
from natflow.paths import os_reason
from natflow.timeutil import flow_seconds, format_time


@dataclass
class FormatChoices:
    """Where a record's format can come from, in order of precedence (see `text_format`)."""

    override: LogFormat | None = None
    by_flow_log_id: Mapping[str, LogFormat] = field(default_factory=dict)
    cloudwatch: list[LogFormat] = field(default_factory=list)
    s3: list[LogFormat] = field(default_factory=list)

    def text_format(self, file: FlowLogFile, header: LogFormat | None) -> LogFormat:
        """``--log-format`` > the file's header > describe-flow-logs LogFormat > AWS default."""
        if self.override is not None:
            return self.override
        if header is not None:
            return header
        if file.flow_log_id and file.flow_log_id in self.by_flow_log_id:
            return self.by_flow_log_id[file.flow_log_id]
        if len(self.s3) == 1:
            return self.s3[0]
        return default_format()

    def cloudwatch_formats(self) -> list[LogFormat]:
        """Candidates for headerless CloudWatch messages, best first."""
        if self.override is not None:
            return [self.override]
        return [*self.cloudwatch, default_format()]


class NeedsReference(Exception):
    """Raised by a faster reader: the whole file must be read by this module's reader."""


class Layout:
    """Positions of the used fields in a split record; absent fields point at an appended '-'."""

    def __init__(self, fmt: LogFormat) -> None:
        self.format = fmt
        self.width = len(fmt.fields)

        def at(name: str) -> int:
            index = fmt.index(name)
            return self.width if index is None else index

        self.eni = fmt.index("interface-id")
        self.src, self.dst = at("srcaddr"), at("dstaddr")
        self.pkt_src, self.pkt_dst = at("pkt-srcaddr"), at("pkt-dstaddr")
        self.src_service, self.dst_service = at("pkt-src-aws-service"), at("pkt-dst-aws-service")
        self.packets, self.bytes = at("packets"), at("bytes")
        self.start, self.end = at("start"), at("end")
        self.action, self.status = at("action"), at("log-status")
        self.resource = at("resource-id")


def _number(text: str) -> int | None:
    """Digits to int (`TOO_LARGE` past `MAX_NUMBER_DIGITS`), '-' (missing) to 0, anything else None."""
    if text.isascii() and text.isdigit():  # str.isdigit() alone takes '²', which int() refuses
        if len(text) <= MAX_NUMBER_DIGITS:
            return int(text)
        digits = text.lstrip("0")  # leading zeros change nothing, however many
        return int(digits or "0") if len(digits) <= MAX_NUMBER_DIGITS else TOO_LARGE
    if text == "-":
        return 0
    return None


def _optional(text: str) -> str | None:
    return None if text == "-" else text


def add_parts(
    parts: list[str],
    layout: Layout,
    reduction: Reduction,
    where: Any,
    fallback_time: tuple[int, int] | None,
) -> None:
    """Validate one split record and add it; `where` is formatted only when there is a problem."""
    stats = reduction.stats
    stats.records_read += 1
    if len(parts) != layout.width:
        stats.malformed(str(where), f"{len(parts)} fields, the format has {layout.width}")
        return
    parts.append("-")
    status = parts[layout.status]
    if status == "NODATA" or status == "SKIPDATA":
        _count_status(status, parts[layout.start], reduction, fallback_time)
        return
    eni = parts[layout.eni] if layout.eni is not None else None
    resource = parts[layout.resource]
    topology = reduction.topology
    regional = resource in topology.regional
    if eni is not None and not regional and eni not in topology.natgw_by_eni:
        stats.other_interface_records += 1
        return
    packets = _number(parts[layout.packets])
    nbytes = _number(parts[layout.bytes])
    if packets is None or nbytes is None:
        stats.malformed(str(where), "packets/bytes is not a number")
        return
    if nbytes > MAX_RECORD_BYTES or packets > MAX_RECORD_PACKETS:
        stats.malformed(
            str(where),
            f"packets {shown(parts[layout.packets])} / bytes {shown(parts[layout.bytes])}: more than any interface "
            f"carries in an aggregation interval (at most {MAX_RECORD_PACKETS} packets, {MAX_RECORD_BYTES} bytes)",
        )
        return
    start_text, end_text = parts[layout.start], parts[layout.end]
    if start_text != "-" or end_text != "-":
        start, end = _number(start_text), _number(end_text)
        if start is None or end is None:
            stats.malformed(str(where), "start/end is not a number")
            return
        start = flow_seconds(start) if start_text != "-" else flow_seconds(end)
        end = flow_seconds(end) if end_text != "-" else start
    elif fallback_time is not None:
        start, end = fallback_time
    else:
        stats.malformed(str(where), "no start/end and no time from the event or the object key")
        return
    earliest, latest = time_bounds(fallback_time)
    if not (earliest <= start <= latest and earliest <= end <= latest):
        stats.malformed(
            str(where),
            f"start {shown(start_text)} / end {shown(end_text)}: not between {format_time(earliest)} and "
            f"{format_time(latest)} (the object's own time, a day either side)",
        )
        return
    reduction.add(
        eni,
        parts[layout.src],
        parts[layout.dst],
        _optional(parts[layout.pkt_src]),
        _optional(parts[layout.pkt_dst]),
        _optional(parts[layout.src_service]),
        _optional(parts[layout.dst_service]),
        packets,
        nbytes,
        start,
        end,
        _optional(parts[layout.action]),
        resource if regional else None,
    )


def _count_status(status: str, start_text: str, reduction: Reduction, fallback_time: tuple[int, int] | None) -> None:
    """Count a NODATA/SKIPDATA record, unless its start lies outside the window."""
    window = reduction.window
    if window is not None:
        start_number = _number(start_text) if start_text != "-" else None
        if start_number is not None:
            start: int | None = flow_seconds(start_number)
        else:
            start = fallback_time[0] if fallback_time else None
        if start is not None and not (window[0] <= start < window[1]):
            reduction.stats.outside_window_records += 1
            return
    if status == "NODATA":
        reduction.stats.no_data_records += 1
    else:
        reduction.stats.skip_data_records += 1


class Where:
    """file:line, formatted only when a message needs it."""

    __slots__ = ("line", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.line = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


GZIP_MAGIC = b"\x1f\x8b"
# First bytes of what an S3 text object must not be: the formats a bucket's other writers produce.
NOT_TEXT = {
    b"PAR1": "Parquet",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}


class NotTextFlowLog(Exception):
    """An S3 text object whose bytes are not what its name says (gzip) or not text at all."""


def text_problem(path: str, head: bytes) -> str | None:
    """What is wrong with a text object whose first bytes are `head` (6 or all), or None."""
    for magic, name in NOT_TEXT.items():
        if head.startswith(magic):
            return f"{name} data, not a text flow log"
    if path.lower().endswith(".gz") and not head.startswith(GZIP_MAGIC):
        return f"not gzip (named .gz, it starts with {head[:2]!r})" if head else "not gzip (named .gz, it is empty)"
    return None


def _open_text(path: str) -> gzip.GzipFile | io.BufferedReader:
    with open(path, "rb") as probe:
        head = probe.read(6)
    problem = text_problem(path, head)
    if problem is not None:
        raise NotTextFlowLog(problem)
    return gzip.open(path, "rb") if head.startswith(GZIP_MAGIC) else open(path, "rb")


# Raised by gzip, zlib and the file for a damaged object (OSError also for one that cannot be read).
DAMAGE = (EOFError, gzip.BadGzipFile, zlib.error, OSError)


class _Blocks(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# Bytes read at a time: small, so that a damaged gzip loses little before the damage.
_BLOCK_BYTES = 1 << 14


def line_spans(rest: bytes, pieces: Iterable[bytes]) -> Iterator[tuple[bytes, int, int] | None]:
    """The lines of `rest` and then `pieces` (one text, a piece at a time) as spans (buffer, start, end)
    of whole lines, the last ending with a newline (a last line without one gets one); None in place of
    a line longer than `MAX_LINE_BYTES` that does not fit in one piece, which is read past to its
    newline without joining the pieces, so memory stays one piece and one line at most. (A long line
    inside one piece comes in a span: the consumer checks complete lines.)"""
    carry, skipping = b"", False  # the start of a line that continues in the next piece; or passing one by
    for piece in itertools.chain((rest,), pieces):
        start = 0
        if skipping or carry:
            newline = piece.find(b"\n")
            if newline < 0:
                if not skipping and len(carry) + len(piece) <= MAX_LINE_BYTES:
                    carry += piece
                elif not skipping:
                    yield None
                    carry, skipping = b"", True
                continue
            start = newline + 1
            if not skipping:  # the line that spans two pieces
                yield carry + piece[:start], 0, len(carry) + start
            carry, skipping = b"", False
        cut = piece.rfind(b"\n") + 1
        if cut > start:
            yield piece, start, cut
        carry = piece[max(cut, start) :]
        if len(carry) > MAX_LINE_BYTES:
            yield None
            carry, skipping = b"", True
    if carry:
        yield carry + b"\n", 0, len(carry) + 1  # a last line without newline splits the same


def span_lines(data: bytes, start: int, end: int) -> Sequence[bytes | None]:
    """The lines of a span of `line_spans` (data[start:end], whole lines, the last ending with a
    newline), without their newline; None for a line longer than `MAX_LINE_BYTES`."""
    lines = data[start : end - 1].split(b"\n") if start < end else []
    if max(map(len, lines), default=0) <= MAX_LINE_BYTES:
        return lines
    return [line if len(line) <= MAX_LINE_BYTES else None for line in lines]


def raw_lines(handle: _Blocks) -> Iterator[bytes | None]:
    """The lines of a binary stream, without their newline (the last may have had none); None for a
    line longer than `MAX_LINE_BYTES`, which is read past without being kept."""
    for span in line_spans(b"", iter(partial(handle.read, _BLOCK_BYTES), b"")):
        if span is None:
            yield None
        else:
            yield from span_lines(*span)


def text_lines(lines: Iterable[bytes | None]) -> Iterator[str | None]:
    """Raw lines (split at newlines) as text lines: UTF-8 (undecodable bytes replaced), a lone CR also
    ends a line, CR LF is one line end (universal newlines); None (a line too long) stays one line."""
    for line in lines:
        if line is None:
            yield None
            continue
        text = line.decode("utf-8", "replace")
        if "\r" not in text:
            yield text
            continue
        pieces = text.split("\r")
        if not pieces[-1]:  # a CR before the newline (or the end) ended the last line
            pieces.pop()
        yield from pieces


def add_too_long(reduction: Reduction, where: Any) -> None:
    """A line longer than any record: one malformed record."""
    reduction.stats.records_read += 1
    reduction.stats.malformed(str(where), f"a line longer than any record ({MAX_LINE_BYTES} bytes); skipped")


def begin_text(
    file: FlowLogFile,
    first: str | None,
    choices: FormatChoices,
    reduction: Reduction,
    diagnostics: Diagnostics,
    where: Where,
) -> Layout:
    """The layout of a text object from its first line (a header or a record, which is then added;
    None: a line too long, a malformed record)."""
    where.line = 1
    header = header_format(first, f"{file.path} header") if first is not None else None
    fmt = choices.text_format(file, header)
    if header is not None and choices.override is not None and header.fields != fmt.fields:
        diagnostics.warn(
            "LogFormatOverridesHeader",
            f"{file.path}: --log-format differs from the file's header; using --log-format",
        )
    layout = Layout(fmt)
    reduction.formats.setdefault(fmt.fields, fmt.origin)
    if first is None:
        add_too_long(reduction, where)
    elif header is None and first.strip():
        add_parts(first.split(), layout, reduction, where, file.key_time)
    return layout


def add_lines(
    lines: Iterable[str | None],
    first_number: int,
    layout: Layout,
    reduction: Reduction,
    where: Where,
    fallback_time: tuple[int, int] | None,
) -> None:
    """Split and add record lines (None: a line too long); blank lines are skipped, not counted."""
    for where.line, line in enumerate(lines, start=first_number):
        if line is None:
            add_too_long(reduction, where)
            continue
        parts = line.split()
        if parts:
            add_parts(parts, layout, reduction, where, fallback_time)


def read_text(file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics) -> None:
    """An S3 text object: optional header line, then one record per line."""
    where = Where(file.path)
    try:
        with _open_text(file.path) as handle:
            lines = text_lines(raw_lines(handle))
            layout = begin_text(file, next(lines, ""), choices, reduction, diagnostics, where)
            add_lines(lines, 2, layout, reduction, where, file.key_time)
    except FormatError as error:
        diagnostics.warn("UnreadableFlowLog", str(error), file=file.path)
    except NotTextFlowLog as error:
        diagnostics.warn("DamagedFlowLog", f"{file.path}: {error}; not read", file=file.path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        diagnostics.warn(
            "DamagedFlowLog",
            f"{file.path}: truncated or corrupt after line {where.line} ({error}); "
            f"records read before the damage are kept",
            file=file.path,
        )
    except OSError as error:
        diagnostics.warn("UnreadableFlowLog", f"{file.path}: cannot be read: {os_reason(error)}", file=file.path)


def read_parquet(file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics) -> None:
    """An S3 Parquet object: underscore column names, nulls for missing values."""
    import pyarrow.parquet as pq

    where = Where(file.path)
    try:
        parquet = pq.ParquetFile(file.path)
        columns = {canonical_name(name): name for name in parquet.schema_arrow.names}
        fmt = LogFormat(tuple(columns), f"{file.path} columns")
        layout = Layout(fmt)
        reduction.formats.setdefault(fmt.fields, fmt.origin)
        for batch in parquet.iter_batches(batch_size=65536, columns=list(columns.values())):
            values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            add_rows(values, layout, reduction, where, file.key_time)
    except Exception as error:  # pyarrow raises many types for damaged files; report and go on
        diagnostics.warn(
            "DamagedFlowLog",
            f"{file.path}: unreadable Parquet after row {where.line} ({type(error).__name__}: {error}); "
            f"rows read before the damage are kept",
            file=file.path,
        )


def add_rows(
    columns: list[list[Any]],
    layout: Layout,
    reduction: Reduction,
    where: Where,
    fallback_time: tuple[int, int] | None,
) -> None:
    """Add rows given column by column (Parquet values); `where.line` counts them."""
    as_text = [_column_text(values) for values in columns]
    for row in zip(*as_text, strict=True):
        where.line += 1
        add_parts(list(row), layout, reduction, where, fallback_time)


def _column_text(values: list[Any]) -> list[str]:
    """Parquet values as the text a record line would have, so one validator serves both."""
    return ["-" if value is None or value == "None" else str(value) for value in values]


def add_events(events: Iterable[Any], source: str, choices: FormatChoices, reduction: Reduction) -> None:
    """CloudWatch Logs events (``message`` without header, ``timestamp`` in ms) from a file or the API."""
    candidates = [Layout(f) for f in choices.cloudwatch_formats()]
    by_width: dict[int, Layout] = {}
    for layout in candidates:
        by_width.setdefault(layout.width, layout)
    for index, item in enumerate(events, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            reduction.stats.records_read += 1
            reduction.stats.malformed(f"{source} event {index}", "event without a message")
            continue
        parts = item["message"].split()
        layout = by_width.get(len(parts), candidates[0])
        reduction.formats.setdefault(layout.format.fields, layout.format.origin)
        timestamp = item.get("timestamp")
        fallback = None
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            fallback = (timestamp // 1000, timestamp // 1000)
        add_parts(parts, layout, reduction, _EventWhere(source, index), fallback)


def read_cloudwatch(file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics) -> None:
    """``aws logs filter-log-events`` / ``get-log-events`` JSON: ``events[].message`` has no header."""
    counted = [0]

    def events(handle: IO[str]) -> Iterator[Any]:
        for kind, item in iter_member_elements(handle, "events"):
            if kind == "element":
                counted[0] += 1
                yield item

    try:
        with open(file.path, encoding="utf-8", errors="replace") as handle:
            add_events(events(handle), file.path, choices, reduction)
    except JsonStreamError as error:
        diagnostics.warn(
            "DamagedFlowLog",
            f"{file.path}: {error} after event {counted[0]}; events read before it are kept",
            file=file.path,
        )
    except UnicodeError as error:
        diagnostics.warn("DamagedFlowLog", f"{file.path}: {error}", file=file.path)
    except OSError as error:
        diagnostics.warn("UnreadableFlowLog", f"{file.path}: cannot be read: {os_reason(error)}", file=file.path)


class _EventWhere:
    __slots__ = ("index", "path")

    def __init__(self, path: str, index: int) -> None:
        self.path = path
        self.index = index

    def __str__(self) -> str:
        return f"{self.path} event {self.index}"


READERS = {FileKind.TEXT: read_text, FileKind.PARQUET: read_parquet, FileKind.CLOUDWATCH: read_cloudwatch}


def read_all(
    files: Iterable[FlowLogFile], choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics
) -> int:
    """Read every file into `reduction`; returns how many files were read."""
    count = 0
    for file in files:
        READERS[file.kind](file, choices, reduction, diagnostics)
        count += 1
    return count

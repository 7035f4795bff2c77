"""S3 text flow logs through the compiled scanner: the reference reader's result, at the speed of gunzip.

ISA-L (`isal`) gunzips an object a megabyte at a time; `_textscan.TextScanner` (C) reads the whole
lines of each piece in one pass, without the GIL, and reduces them as `readers.add_parts` and
`Reduction.add` would. The lines it cannot read with certainty (odd bytes, a wrong number of
fields, numbers that are not plain digits, addresses other than dotted-quad IPv4, sums past 64
bits) come back with their line number and go through `readers.add_parts`, in file order, so the
malformed examples are the reference's. A piece holding a CR, which universal newlines would split
differently, goes through `readers.add_lines` whole.

Memory is one compressed block, one decompressed piece and the file's reduced rows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from isal import isal_zlib

from natflow.diagnostics import Diagnostics
from natflow.flowlogs._textscan import TextScanner
from natflow.flowlogs.fields import MAX_LINE_BYTES
from natflow.flowlogs.plausible import MAX_RECORD_BYTES, MAX_RECORD_PACKETS, time_bounds
from natflow.flowlogs.readers import (
    GZIP_MAGIC,
    FormatChoices,
    Layout,
    NeedsReference,
    Where,
    add_lines,
    add_parts,
    add_too_long,
    begin_text,
    line_spans,
    span_lines,
    text_lines,
    text_problem,
)
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FlowLogFile

# Decompressed bytes handed to the scanner at a time.
TEXT_CHUNK_BYTES = 1 << 20
COMPRESSED_BLOCK_BYTES = 1 << 18

# isal's stubs declare its error class as an instance.
INFLATE_ERROR = cast(type[Exception], isal_zlib.error)


def read_text(file: FlowLogFile, choices: FormatChoices, part: Reduction, diagnostics: Diagnostics) -> ScannedText:
    """Read one S3 text object as `readers.read_text` would: the lines the reference code read are in
    `part`, the scanner's in the result, to be folded with `finish`.

    Damage (truncated or corrupt gzip) raises, so that the caller can let the reference reader keep
    what came before it and warn; so does anything the scanner does not take (`NeedsReference`).
    A line longer than `MAX_LINE_BYTES` is one malformed record: the pieces are read past it to its
    newline without joining them, so memory stays one piece and one line at most.
    """
    where = Where(file.path)
    pieces = _decompressed(file.path)
    head, rest = _first_line(pieces)
    if b"\r" in head:  # universal newlines would end the first line at the CR
        raise NeedsReference
    layout = begin_text(file, head.decode("utf-8", "replace"), choices, part, diagnostics, where)
    scanner = scanner_for(layout, part.topology, part.window, file.key_time)
    reader = _LineReader(scanner, layout, part, where, file.key_time)
    for span in line_spans(rest, pieces):
        if span is None:
            reader.too_long()
        else:
            reader.read(*span)
    return ScannedText(scanner)


def _first_line(pieces: Iterator[bytes]) -> tuple[bytes, bytes]:
    """The first line (with its newline) and what follows it in the pieces taken so far; a first line
    longer than any record goes to the reference reader."""
    taken = b""
    for piece in pieces:
        taken += piece
        end = taken.find(b"\n") + 1
        if end:
            if end - 1 > MAX_LINE_BYTES:
                raise NeedsReference
            return taken[:end], taken[end:]
        if len(taken) > MAX_LINE_BYTES:
            raise NeedsReference
    return taken, b""


def _decompressed(path: str) -> Iterator[bytes]:
    """The object's bytes, gunzipped when it is gzip; a truncated or corrupt gzip raises (EOFError, IsalError)."""
    with open(path, "rb") as raw:
        head = raw.read(6)
        if text_problem(path, head) is not None:  # the reference reader says what is wrong
            raise NeedsReference
        raw.seek(0)
        if not head.startswith(GZIP_MAGIC):
            yield from iter(lambda: raw.read(TEXT_CHUNK_BYTES), b"")
            return
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


class _LineReader:
    """Whole lines of one file, numbered from 2 (line 1 is the header or first record)."""

    def __init__(
        self,
        scanner: TextScanner,
        layout: Layout,
        part: Reduction,
        where: Where,
        fallback_time: tuple[int, int] | None,
    ) -> None:
        self.scanner = scanner
        self.layout = layout
        self.part = part
        self.where = where
        self.fallback_time = fallback_time
        self.line = 2

    def read(self, data: bytes, start: int, end: int) -> None:
        """The lines of data[start:end], which ends with a newline."""
        if start == end:
            return
        if data.find(b"\r", start, end) >= 0:
            add_lines(
                text_lines(span_lines(data, start, end)),
                self.line,
                self.layout,
                self.part,
                self.where,
                self.fallback_time,
            )
            self.line = self.where.line + 1
            return
        lines, handed_back = self.scanner.scan(data, start, end, self.line)
        for number, line_start, line_end in handed_back:
            self.where.line = number
            if line_end - line_start - 1 > MAX_LINE_BYTES:
                add_too_long(self.part, self.where)
                continue
            parts = data[line_start:line_end].decode("utf-8", "replace").split()
            if parts:
                add_parts(parts, self.layout, self.part, self.where, self.fallback_time)
        self.line += lines

    def too_long(self) -> None:
        """The next line is longer than any record: one malformed record."""
        self.where.line = self.line
        add_too_long(self.part, self.where)
        self.line += 1


class ScannedText:
    """What the scanner reduced of one file, until it is folded into a Reduction."""

    def __init__(self, scanner: TextScanner) -> None:
        self.scanner = scanner

    def finish(self, into: Reduction) -> None:
        """Fold the counters, times and rows into `into`."""
        done = Reduction(into.topology, into.window)
        for name, count in self.scanner.stats().items():
            setattr(done.stats, name, count)
        for key, (records, nbytes) in self.scanner.unclassified().items():
            done.stats.unclassified_by_key[key] = [records, nbytes]
        times = self.scanner.times()
        if times is not None:
            done.first_time, done.last_time = times
        into.merge(done)
        self.scanner.merge_rows(into.rows)


@dataclass(frozen=True)
class _Topology:
    """A NatTopology as the scanner takes it."""

    eni_names: tuple[str, ...]
    nat_enis: tuple[tuple[bytes, int], ...]
    regional: tuple[tuple[bytes, int], ...]
    nat_addresses: tuple[tuple[int, int], ...]
    inside: tuple[tuple[int, int], ...]


_prepared: dict[int, tuple[NatTopology, _Topology]] = {}  # by id(): NatTopology holds dicts, so no hash


def _topology(topology: NatTopology) -> _Topology:
    known = _prepared.get(id(topology))
    if known is not None and known[0] is topology:
        return known[1]
    names = sorted(
        set(topology.natgw_by_eni) | {eni for eni in topology.eni_by_nat_ip.values() if eni} | topology.regional
    )
    index = {name: position for position, name in enumerate(names)}
    # An id that is not a plain printable-ASCII token can never equal one the scanner reads.
    nat_enis = tuple((eni.encode(), index[eni]) for eni in topology.natgw_by_eni if _token(eni))
    regional = tuple((gateway.encode(), index[gateway]) for gateway in sorted(topology.regional) if _token(gateway))
    # Only addresses written as the scanner reads them: other text never equals a dotted quad it takes.
    nat_addresses = tuple(
        (int(ipaddress.IPv4Address(ip)), index[eni] if eni else -1)
        for ip, eni in topology.eni_by_nat_ip.items()
        if _dotted_quad(ip)
    )
    prepared = _Topology(tuple(names), nat_enis, regional, nat_addresses, tuple(topology.inside.ipv4_ranges()))
    if len(_prepared) >= 8:
        _prepared.clear()
    _prepared[id(topology)] = (topology, prepared)
    return prepared


def _token(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable() and " " not in text


def _dotted_quad(text: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


_INT64 = range(-(1 << 63), 1 << 63)


def scanner_for(
    layout: Layout, topology: NatTopology, window: tuple[int, int] | None, fallback: tuple[int, int] | None
) -> TextScanner:
    """A scanner for one file of this layout (text lines, or Parquet columns of the layout's fields)."""
    fields = (
        layout.eni if layout.eni is not None else layout.width,
        layout.src,
        layout.dst,
        layout.pkt_src,
        layout.pkt_dst,
        layout.src_service,
        layout.dst_service,
        layout.packets,
        layout.bytes,
        layout.start,
        layout.end,
        layout.action,
        layout.status,
        layout.resource,
    )
    times = [value for pair in (window, fallback) if pair for value in pair]
    if layout.width > 64 or not all(value in _INT64 for value in times):
        raise NeedsReference
    seen = _topology(topology)
    earliest, latest = time_bounds(fallback)
    return TextScanner(
        layout.width,
        tuple(-1 if index >= layout.width else index for index in fields),
        seen.eni_names,
        seen.nat_enis,
        seen.nat_addresses,
        seen.inside,
        window,
        fallback,
        (MAX_RECORD_PACKETS, MAX_RECORD_BYTES, earliest, latest, MAX_LINE_BYTES),
        seen.regional,
    )

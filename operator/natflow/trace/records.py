"""Flow-log records as trace shows them: the fields of one record, typed, None where absent.

A field the record's format does not have is None, as is AWS's '-' (not applicable); nothing is
guessed. Numbers that are not plain digits make the record malformed (counted, never shown).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from natflow.diagnostics import Diagnostic
from natflow.net import normalize_address
from natflow.timeutil import flow_seconds

ADDRESS_FIELDS = ("srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr")
_NUMBERS = frozenset({"srcport", "dstport", "protocol", "packets", "bytes", "start", "end", "tcp-flags"})


class MalformedRecord(ValueError):
    """A record trace cannot read; the message says why."""


@dataclass(frozen=True, slots=True)
class FlowRecord:
    interface_id: str | None
    resource_id: str | None
    srcaddr: str | None
    dstaddr: str | None
    pkt_srcaddr: str | None
    pkt_dstaddr: str | None
    srcport: int | None
    dstport: int | None
    protocol: int | None
    packets: int | None
    bytes: int | None
    start: int
    end: int
    action: str | None
    log_status: str | None
    tcp_flags: int | None
    reject_reason: str | None
    flow_direction: str | None
    az_id: str | None
    where: str  # file and line (or row, or event), for messages

    @property
    def packet_source(self) -> str | None:
        """The packet's own source: pkt-srcaddr where the format has it, else srcaddr."""
        return self.pkt_srcaddr or self.srcaddr

    @property
    def packet_destination(self) -> str | None:
        return self.pkt_dstaddr or self.dstaddr


# The fields trace reads, hyphenated as in a log format: FlowRecord's.
TRACE_FIELDS = tuple(f.name.replace("_", "-") for f in dataclasses.fields(FlowRecord) if f.name != "where")


def _value(text: str | None, name: str) -> str | int | None:
    if text is None or text == "-" or text == "None":
        return None
    if name in _NUMBERS:
        if not (text.isascii() and text.isdigit()):
            raise MalformedRecord(f"{name} is not a number: {text[:40]!r}")
        return int(text)
    if name in ADDRESS_FIELDS:
        return normalize_address(text)
    return text


def record_of(values: dict[str, str | None], where: str, fallback_time: tuple[int, int] | None) -> FlowRecord | None:
    """A record from its fields' text by name (absent names: not in the format); None for NODATA/SKIPDATA.

    Raises MalformedRecord for numbers that are not plain digits or a record without a time.
    """
    typed = {name: _value(values.get(name), name) for name in TRACE_FIELDS}
    if typed["log-status"] in ("NODATA", "SKIPDATA"):
        return None
    start, end = typed["start"], typed["end"]
    if start is None and end is None:
        if fallback_time is None:
            raise MalformedRecord("no start/end and no time from the event or the object key")
        start, end = fallback_time
    start_seconds = flow_seconds(int(start if start is not None else end or 0))
    end_seconds = flow_seconds(int(end)) if end is not None else start_seconds
    # _value typed each field as FlowRecord declares it: numbers as int, the rest as str
    fields: dict[str, Any] = {
        name.replace("-", "_"): typed[name] for name in TRACE_FIELDS if name not in ("start", "end")
    }
    return FlowRecord(**fields, start=start_seconds, end=end_seconds, where=where)


def record_of_tokens(
    fields: Sequence[str], tokens: Sequence[str], where: str, fallback_time: tuple[int, int] | None
) -> FlowRecord | None:
    """A record from a split line of the format `fields`; MalformedRecord when the count differs."""
    if len(tokens) != len(fields):
        raise MalformedRecord(f"{len(tokens)} fields, the format has {len(fields)}")
    return record_of(dict(zip(fields, tokens, strict=True)), where, fallback_time)


Row = tuple[int, tuple[str | None, ...]]  # a Parquet row's number in its object (from 1) and its values, as text


@dataclass
class ParquetRows:
    """What a trace keeps of one Parquet object (`trace/parquet.py`, in a decoder process): its rows
    naming the subject, and of the others those naming an address to collect, as lines of text
    (values of `names`, the trace fields the object has, separated by spaces) or, where a value
    holds whitespace or nothing, as rows."""

    names: tuple[str, ...] = ()
    records_read: int = 0
    kept: list[Row] = field(default_factory=list)
    collected_lines: list[bytes] = field(default_factory=list)
    collected: list[Row] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

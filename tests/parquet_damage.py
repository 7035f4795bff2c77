"""Damaged Parquet objects made from good ones written by pyarrow: the bytes a bad disk, a broken
writer or an attacker would leave, each changed at a known place.

Page headers and the footer are Thrift compact protocol; `_Thrift` reads just enough of it to say
where a field's value lies, so that a mutation changes exactly that value. Values are rewritten
in the same number of bytes (varints may carry redundant continuation bytes), so nothing after
them moves.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FIRST = 1_795_255_200  # 2026-11-21T10:00:00Z
COLUMNS = ("version", "account_id", "interface_id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
           "packets", "bytes", "start", "end", "action", "log_status")  # fmt: skip
ROWS, ROW_GROUP_ROWS = 600, 100

# Thrift compact types
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


@dataclass
class Field:
    """A field's value and where its bytes lie (the value's, after the field header)."""

    value: Any
    start: int
    end: int


class _Thrift:
    """A Thrift compact struct at `position`: {field id: Field}, nested structs as dicts."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data, self.position = data, position

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    def value(self, kind: int) -> Any:
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            return kind == _BOOL_TRUE
        if kind == _BYTE:
            self.position += 1
            return self.data[self.position - 1]
        if kind in (_I16, _I32, _I64):
            raw = self.varint()
            return (raw >> 1) ^ -(raw & 1)
        if kind == _DOUBLE:
            self.position += 8
            return None
        if kind == _BINARY:
            length = self.varint()
            self.position += length
            return self.data[self.position - length : self.position]
        if kind in (_LIST, _SET):
            header = self.data[self.position]
            self.position += 1
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return [self.value(element) for _ in range(size)]
        if kind == _STRUCT:
            return self.struct()
        raise ValueError(f"thrift type {kind} not read here")

    def struct(self) -> dict[int, Field]:
        fields: dict[int, Field] = {}
        last = 0
        while True:
            header = self.data[self.position]
            self.position += 1
            if header == 0:
                return fields
            delta, kind = header >> 4, header & 0x0F
            last = last + delta if delta else self.value(_I16)
            start = self.position
            value = self.value(kind)
            fields[last] = Field(value, start, self.position)


def varint(value: int, width: int) -> bytes:
    """A zigzag varint of `value` in exactly `width` bytes (redundant continuation bytes are valid)."""
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    for index in range(width):
        byte = raw & 0x7F
        raw >>= 7
        out.append(byte | (0x80 if index < width - 1 else 0))
    if raw:
        raise ValueError(f"{value} does not fit {width} varint bytes")
    return bytes(out)


def table(eni: str, nat_ip: str, inside: str, rows: int = ROWS) -> pa.Table:
    """Client legs out: `inside`.N -> the NAT IP on the NAT ENI, one a second from FIRST."""
    columns: dict[str, list[Any]] = {
        "version": [2] * rows,
        "account_id": ["123456789012"] * rows,
        "interface_id": [eni] * rows,
        "srcaddr": [f"{inside}.{10 + index % 50}" for index in range(rows)],
        "dstaddr": [nat_ip] * rows,
        "srcport": [40000 + index for index in range(rows)],
        "dstport": [443] * rows,
        "protocol": [6] * rows,
        "packets": [1 + index % 7 for index in range(rows)],
        "bytes": [1000 + index for index in range(rows)],
        "start": [FIRST + index for index in range(rows)],
        "end": [FIRST + index + 30 for index in range(rows)],
        "action": ["ACCEPT"] * rows,
        "log_status": ["OK"] * rows,
    }
    integers = {"version", "srcport", "dstport", "protocol"}
    return pa.table({
        name: pa.array(values, pa.int32() if name in integers else pa.int64() if isinstance(values[0], int) else pa.string())
        for name, values in columns.items()
    })  # fmt: skip


def write(data: pa.Table, path: Path, **options: Any) -> Path:
    """As a flow-log writer would (no Arrow schema in the footer), GZIP pages with checksums."""
    settings: dict[str, Any] = {"compression": "gzip", "row_group_size": ROW_GROUP_ROWS, "store_schema": False,
                                "write_page_checksum": True, **options}  # fmt: skip
    pq.write_table(data, path, **settings)
    return path


def footer(data: bytes) -> tuple[int, dict[int, Field]]:
    """The footer's offset in the file and its fields."""
    length = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - length
    fields = _Thrift(data, start).struct()
    return start, fields


def page_header(data: bytes, offset: int) -> tuple[dict[int, Field], int]:
    """The page header at `offset` and where its page's bytes start."""
    reader = _Thrift(data, offset)
    fields = reader.struct()
    return fields, reader.position


def first_page(path: Path, column: str, row_group: int = 0, dictionary: bool = False) -> int:
    """The offset of a column chunk's dictionary page or first data page."""
    meta = pq.ParquetFile(path).metadata.row_group(row_group)
    chunk = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column)
    if dictionary:
        return int(chunk.dictionary_page_offset)
    return int(chunk.data_page_offset)


def replaced(data: bytes, start: int, new: bytes) -> bytes:
    return data[:start] + new + data[start + len(new) :]


def with_footer(data: bytes, new_footer: bytes) -> bytes:
    """The file with another footer (its length in the tail rewritten)."""
    start, _ = footer(data)
    return data[:start] + new_footer + struct.pack("<I", len(new_footer)) + b"PAR1"


def _data_page_values(data: bytes, offset: int) -> Field:
    """A data page's num_values field (v1 or v2)."""
    header, _ = page_header(data, offset)
    page = header[5] if 5 in header else header[8]
    return page.value[1]


def _schema_element(data: bytes, name: str) -> dict[int, Field]:
    _, fields = footer(data)
    return next(element for element in fields[2].value if 4 in element and element[4].value == name.encode())


def _stored_gzip(path: Path) -> bytes:
    """`path` rewritten with GZIP level 0 pages (deflate's stored blocks: values in plain sight)."""
    write(pq.read_table(path), path, compression_level=0, write_page_checksum=False, use_dictionary=False)
    return path.read_bytes()


def damaged(name: str, good: Path, out: Path) -> Path:
    """The damage `name` (one of DAMAGES) done to a copy of the good object `good`, written at `out`."""
    data = good.read_bytes()
    if name == "v2 page claims -1 values":
        write(pq.read_table(good), out, data_page_version="2.0")
        data = out.read_bytes()
        field = _data_page_values(data, first_page(out, "bytes", 2))
        data = replaced(data, field.start, varint(-1, field.end - field.start))
    elif name == "page claims more values than it holds":
        field = _data_page_values(data, first_page(good, "bytes", 2))
        data = replaced(data, field.start, varint(field.value * 50, field.end - field.start))
    elif name == "page type changed":
        field = page_header(data, first_page(good, "bytes", 2))[0][1]
        data = replaced(data, field.start, varint(1, field.end - field.start))  # DATA_PAGE -> INDEX_PAGE
    elif name == "footer num_rows 0":
        field = footer(data)[1][3]
        data = replaced(data, field.start, varint(0, field.end - field.start))
    elif name == "gzip page altered, CRC mismatch":
        out.write_bytes(data)
        data = _stored_gzip(out)
        offset = first_page(out, "bytes", 2)
        _, body = page_header(data, offset)
        # A stored block's value: the first int64 of the page's values, after a 10-byte gzip header,
        # the block header (5 bytes) and the page's levels (4-byte length + RLE).
        target = body + 10 + 5 + 4 + 2 + 5
        data = replaced(data, target, bytes([data[target] ^ 0x40]))
    elif name == "page checksum mismatch":
        write(pq.read_table(good), out, compression="none")
        data = out.read_bytes()
        offset = first_page(out, "bytes", 2, dictionary=True)
        _, body = page_header(data, offset)
        data = replaced(data, body + 3, bytes([data[body + 3] ^ 0x01]))
    elif name == "repetition_type 3":
        field = _schema_element(data, "bytes")[3]
        data = replaced(data, field.start, varint(3, field.end - field.start))
    elif name == "non-UTF-8 column name":
        field = _schema_element(data, "srcport")[4]
        data = replaced(data, field.end - 3, b"\xff")
    elif name == "16M schema entries":
        start, fields = footer(data)
        schema = fields[2]
        header_byte = data[schema.start]
        count = len(schema.value)
        old = bytes([header_byte]) + (varint(count, 1)[:0] if count < 15 else _plain_varint(count))
        new = bytes([0xF0 | (header_byte & 0x0F)]) + _plain_varint(1 << 24)
        footer_bytes = data[start : len(data) - 8]
        relative = schema.start - start
        data = with_footer(data, footer_bytes[:relative] + new + footer_bytes[relative + len(old) :])
    elif name == "footer length claims 2 GB":
        data = data[:-8] + struct.pack("<I", 0x7FFFFFF0) + b"PAR1"
    elif name == "truncated in the middle":
        data = data[: len(data) // 2]
    elif name == "row group's pages overwritten":
        meta = pq.ParquetFile(good).metadata.row_group(3)
        first = min(meta.column(i).dictionary_page_offset or meta.column(i).data_page_offset
                    for i in range(meta.num_columns))  # fmt: skip
        data = replaced(data, first + 40, bytes(range(256)) * 4)
    else:
        raise ValueError(name)
    out.write_bytes(data)
    return out


def _plain_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


DAMAGES = (
    "v2 page claims -1 values",
    "page claims more values than it holds",
    "page type changed",
    "footer num_rows 0",
    "gzip page altered, CRC mismatch",
    "page checksum mismatch",
    "repetition_type 3",
    "non-UTF-8 column name",
    "16M schema entries",
    "footer length claims 2 GB",
    "truncated in the middle",
    "row group's pages overwritten",
)


def abort_decoder(*args: Any) -> None:
    """A decoder that dies as a library aborting on bad bytes would (read in a decoder process)."""
    os.abort()


def sleeping_decoder(*args: Any) -> None:
    time.sleep(30)


def killed_decoder(*args: Any) -> None:
    """A decoder the kernel kills (as the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)

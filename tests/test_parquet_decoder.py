"""natflow.flowlogs._parquet: footer and column chunks against pyarrow's reading of the same files.

Files are written by pyarrow with many settings (codecs, dictionary/plain/fallback, page versions and
sizes, nulls); each decodable chunk is rebuilt from (values, offsets, indices) and compared with
pyarrow's read of that row group. Hand-made pages (a small Thrift compact writer below) reach the cases
pyarrow does not write; hypothesis mutates valid files to check that bad input only raises ValueError.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import random
import struct
import threading
from collections.abc import Callable
from typing import Any

import isal.isal_zlib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natflow.flowlogs import _parquet

INT32, INT64, BYTE_ARRAY = 1, 2, 6
PLAIN, PLAIN_DICTIONARY, RLE, BIT_PACKED, DELTA_BINARY_PACKED, RLE_DICTIONARY = 0, 2, 3, 4, 5, 8
DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
DECODABLE = {"string", "int"}


class DecompressFailed(Exception):
    """What the tests' decompress callables raise, so that the fuzz tests can tell it from a bug."""


Decompress = Callable[[memoryview, int], Any]


def _guarded(function: Decompress) -> Decompress:
    def decompress(view: memoryview, size: int) -> Any:
        try:
            return function(view, size)
        except Exception as error:
            raise DecompressFailed(str(error)) from error

    return decompress


DECOMPRESS: dict[int, Decompress | None] = {
    0: None,
    1: _guarded(lambda view, size: pa.decompress(bytes(view), size, codec="snappy")),
    2: _guarded(lambda view, size: isal.isal_zlib.decompress(view, wbits=31)),
    6: _guarded(lambda view, size: pa.Codec("zstd").decompress(view, size)),
}


# ------------------------------------------------------------------------------------------------
# Writing pyarrow files and rebuilding their columns

KINDS = {
    "s": "string", "ls": "string", "s_required": "string", "no_nulls": "string", "all_null": "string",
    "unique": "string", "i32": "int", "i32_small": "int", "i64": "int", "i64_required": "int", "i8": "int",
    "b": "other", "d": "other", "u32": "other", "bin": "other", "lst.list.element": "other", "st.a": "other",
    "st.b": "other", "ts": "other",
}  # fmt: skip


def _table(rows: int, seed: int) -> pa.Table:
    rng = random.Random(seed)

    def with_nulls(values: list[Any], rate: float) -> list[Any]:
        out = [None if rng.random() < rate else v for v in values]
        if rows > 2:  # nulls at both ends as well
            out[0] = out[-1] = None
        return out

    words = ["", "ACCEPT", "REJECT", "OK", "NODATA", "é-ü-漢字", "x" * 1000, "-", "10.0.0.1", "eni-0abc"]
    strings = [rng.choice(words) + (str(rng.randrange(50)) if rng.random() < 0.5 else "") for _ in range(rows)]
    extremes = [-(2**63), 2**63 - 1, 0, -1]
    columns: list[tuple[str, pa.DataType, list[Any], bool]] = [
        ("s", pa.string(), with_nulls(strings, 0.1), True),
        ("ls", pa.large_string(), with_nulls(strings, 0.3), True),
        ("s_required", pa.string(), strings, False),
        ("no_nulls", pa.string(), strings, True),
        ("all_null", pa.string(), [None] * rows, True),
        ("unique", pa.string(), [f"value-{i}-{rng.random()}" for i in range(rows)], True),
        ("i32", pa.int32(), with_nulls([rng.randrange(-(2**31), 2**31) for _ in range(rows)], 0.2), True),
        ("i32_small", pa.int32(), with_nulls([rng.randrange(-3, 3) for _ in range(rows)], 0.05), True),
        (
            "i64",
            pa.int64(),
            with_nulls([rng.choice([*extremes, rng.randrange(-(2**63), 2**63)]) for _ in range(rows)], 0.5),
            True,
        ),
        ("i64_required", pa.int64(), [rng.randrange(10**12) for _ in range(rows)], False),
        ("i8", pa.int8(), with_nulls([rng.randrange(-128, 128) for _ in range(rows)], 0.1), True),
        ("b", pa.bool_(), [rng.random() < 0.5 for _ in range(rows)], True),
        ("d", pa.float64(), [rng.random() for _ in range(rows)], True),
        ("u32", pa.uint32(), [rng.randrange(2**32) for _ in range(rows)], True),
        ("bin", pa.binary(), [bytes([rng.randrange(256)]) * rng.randrange(4) for _ in range(rows)], True),
        ("lst", pa.list_(pa.int32()), [[1, 2]] * rows, True),
        ("st", pa.struct([("a", pa.int32()), ("b", pa.string())]), [{"a": 1, "b": "x"}] * rows, True),
        ("ts", pa.timestamp("s"), [10**9] * rows, True),
    ]
    schema = pa.schema([pa.field(name, kind, nullable=nullable) for name, kind, _, nullable in columns])
    return pa.Table.from_arrays([pa.array(values, kind) for _, kind, values, _ in columns], schema=schema)


def _write(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def _rebuild(values: bytearray, offsets: bytearray | None, indices: bytearray, kind: str) -> list[Any]:
    """The column as pyarrow's to_pylist gives it, from decode_chunk's arrays."""
    entry_numbers = memoryview(indices).cast("i").tolist()
    if offsets is None:
        entries: list[Any] = memoryview(values).cast("q").tolist()
    else:
        bounds = memoryview(offsets).cast("q").tolist()
        assert bounds[0] == 0 and all(a <= b for a, b in itertools.pairwise(bounds)) and bounds[-1] == len(values)
        raw = bytes(values)
        entries = [raw[a:b] for a, b in itertools.pairwise(bounds)]
        if kind == "string":
            entries = [e.decode() for e in entries]
    assert all(-1 <= n < len(entries) for n in entry_numbers)
    return [None if n < 0 else entries[n] for n in entry_numbers]


def _check_file(data: bytes) -> int:
    """Decodes every decodable chunk of the file and compares it with pyarrow; returns the chunks checked."""
    parquet = pq.ParquetFile(io.BytesIO(data))
    metadata = parquet.metadata
    num_rows, columns, row_groups = _parquet.read_footer(data)
    assert num_rows == metadata.num_rows
    assert [rows for rows, _ in row_groups] == [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    assert [name for name, *_ in columns] == [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    checked = 0
    for g, (rows, chunks) in enumerate(row_groups):
        table = parquet.read_row_group(g)
        for i, ((name, physical_type, max_level, kind), (codec, start, size, num_values)) in enumerate(
            zip(columns, chunks, strict=True)
        ):
            column_metadata = metadata.row_group(g).column(i)
            assert num_values == column_metadata.num_values
            assert size == column_metadata.total_compressed_size
            assert physical_type == {"INT32": 1, "INT64": 2, "BYTE_ARRAY": 6}.get(
                column_metadata.physical_type, physical_type
            )
            assert max_level == metadata.schema.column(i).max_definition_level or kind == "other"
            assert kind == KINDS[name], name
            if kind not in DECODABLE and name != "bin":
                continue
            values, offsets, indices = _parquet.decode_chunk(
                data, start, size, physical_type, max_level, rows, DECOMPRESS[codec]
            )
            expected = table.column(name).to_pylist()
            assert _rebuild(values, offsets, indices, kind) == expected, (name, g)
            checked += 1
    return checked


WRITE_OPTIONS: list[dict[str, Any]] = [
    {"compression": "none"},
    {"compression": "none", "use_dictionary": False},
    {"compression": "gzip", "data_page_version": "2.0"},
    {"compression": "zstd", "use_dictionary": ["s", "i32"], "data_page_size": 512},
    {"compression": "snappy", "dictionary_pagesize_limit": 64, "data_page_size": 256},  # plain fallback mid-chunk
    {"compression": "none", "dictionary_pagesize_limit": 200, "data_page_size": 100, "data_page_version": "2.0"},
    {"compression": "zstd", "data_page_version": "2.0", "use_dictionary": False, "data_page_size": 300},
    {"compression": "gzip", "row_group_size": 97, "write_batch_size": 10, "data_page_size": 50},
    {"compression": "none", "data_page_version": "2.0", "row_group_size": 500, "data_page_size": 1},
]


@pytest.mark.parametrize("options", WRITE_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_chunks_match_pyarrow(options: dict[str, Any]) -> None:
    assert _check_file(_write(_table(1500, seed=len(str(options))), **options)) > 0


def test_dictionary_fallback_really_happens() -> None:
    data = _write(_table(2000, seed=1), compression="none", dictionary_pagesize_limit=64, data_page_size=256)
    encodings = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).encodings
    assert "PLAIN" in encodings and ("RLE_DICTIONARY" in encodings or "PLAIN_DICTIONARY" in encodings)
    assert _check_file(data) > 0


def test_edge_sizes() -> None:
    for rows in (0, 1, 2, 3, 7, 8, 9, 65):
        _check_file(_write(_table(rows, seed=rows), compression="none"))
        _check_file(_write(_table(rows, seed=rows), compression="zstd", data_page_version="2.0", data_page_size=20))


def test_a_wrong_entry_is_caught() -> None:
    """The comparison can fail: one row pointed at another entry no longer matches pyarrow."""
    data = _write(_table(300, seed=3), compression="none")
    _, columns, row_groups = _parquet.read_footer(data)
    rows, chunks = row_groups[0]
    i = [name for name, *_ in columns].index("no_nulls")
    _, physical_type, max_level, kind = columns[i]
    values, offsets, indices = _parquet.decode_chunk(
        data, chunks[i][1], chunks[i][2], physical_type, max_level, rows, None
    )
    expected = pq.read_table(io.BytesIO(data)).column("no_nulls").to_pylist()
    assert offsets is not None and _rebuild(values, offsets, indices, kind) == expected
    entries = len(offsets) // 8 - 1  # distinct dictionary entries
    assert entries >= 2
    numbers = memoryview(indices).cast("i")
    numbers[5] = (numbers[5] + 1) % entries
    assert _rebuild(values, offsets, indices, kind) != expected


def test_reads_an_mmap_and_two_threads_at_once(tmp_path: Any) -> None:
    import mmap

    paths = []
    for seed in (1, 2):
        path = tmp_path / f"{seed}.parquet"
        path.write_bytes(_write(_table(5000, seed=seed), compression="zstd", data_page_size=4096))
        paths.append(path)
    failures: list[BaseException] = []

    def work(path: Any) -> None:
        try:
            with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                for _ in range(2):
                    _check_file(data)  # type: ignore[arg-type]
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


# ------------------------------------------------------------------------------------------------
# Errors from real files


def _chunk_of(data: bytes, name: str) -> tuple[int, int, int, int, int, int]:
    _, columns, row_groups = _parquet.read_footer(data)
    rows, chunks = row_groups[0]
    i = [n for n, *_ in columns].index(name)
    codec, start, size, _ = chunks[i]
    return codec, start, size, columns[i][1], columns[i][2], rows


@pytest.mark.parametrize(
    ("encoding", "column", "number"),
    [("DELTA_BINARY_PACKED", "i64", 5), ("DELTA_LENGTH_BYTE_ARRAY", "s", 6), ("BYTE_STREAM_SPLIT", "i32", 9)],
)
def test_unsupported_encoding(encoding: str, column: str, number: int) -> None:
    data = _write(_table(100, seed=0), compression="none", use_dictionary=False, column_encoding={column: encoding})
    _, start, size, physical_type, max_level, rows = _chunk_of(data, column)
    with pytest.raises(ValueError, match=f"unsupported encoding {number} "):
        _parquet.decode_chunk(data, start, size, physical_type, max_level, rows, None)


def test_compressed_pages_need_a_decompress_callable() -> None:
    data = _write(_table(500, seed=0), compression="gzip")
    codec, start, size, physical_type, max_level, rows = _chunk_of(data, "s")
    assert codec == 2
    with pytest.raises(ValueError, match="no decompress"):
        _parquet.decode_chunk(data, start, size, physical_type, max_level, rows, None)
    with pytest.raises(ValueError, match="decompressed page has"):
        _parquet.decode_chunk(data, start, size, physical_type, max_level, rows, lambda view, n: bytes(n + 1))

    def refuse(view: memoryview, n: int) -> bytes:
        raise KeyError("the callable's own")

    with pytest.raises(KeyError, match="the callable's own"):
        _parquet.decode_chunk(data, start, size, physical_type, max_level, rows, refuse)
    not_bytes: Any = lambda view, n: 42  # noqa: E731
    with pytest.raises(TypeError):
        _parquet.decode_chunk(data, start, size, physical_type, max_level, rows, not_bytes)


def test_decompress_gets_views_of_the_page() -> None:
    data = _write(_table(500, seed=0), compression="zstd", data_page_version="2.0")
    _codec, start, size, physical_type, max_level, rows = _chunk_of(data, "i32")
    seen: list[tuple[bytes, int]] = []

    def decompress(view: memoryview, n: int) -> Any:
        assert isinstance(view, memoryview) and view.format == "B" and view.ndim == 1
        seen.append((bytes(view), n))
        return pa.Codec("zstd").decompress(view, n)

    _parquet.decode_chunk(data, start, size, physical_type, max_level, rows, decompress)
    assert seen and all(part in data[start : start + size] for part, _ in seen)


@pytest.mark.parametrize("delta", [-1, 1])
def test_row_count_must_match(delta: int) -> None:
    data = _write(_table(100, seed=0), compression="none")
    _, start, size, physical_type, max_level, rows = _chunk_of(data, "s")
    with pytest.raises(ValueError, match="more values than rows" if delta < 0 else "values for"):
        _parquet.decode_chunk(data, start, size, physical_type, max_level, rows + delta, None)


def test_bad_arguments() -> None:
    data = _write(_table(100, seed=0), compression="none")
    _, start, size, physical_type, max_level, rows = _chunk_of(data, "s")
    for arguments in [
        (start, size, 0, max_level, rows),  # BOOLEAN
        (start, size, 5, max_level, rows),  # DOUBLE
        (start, size, physical_type, 2, rows),
        (start, len(data), physical_type, max_level, rows),
        (-1, size, physical_type, max_level, rows),
        (start, size, physical_type, max_level, -1),
    ]:
        with pytest.raises(ValueError):
            _parquet.decode_chunk(data, *arguments, None)


def test_footer_errors() -> None:
    data = _write(_table(50, seed=0), compression="none")
    for bad in [
        b"",
        b"PAR1PAR1",
        data[:-1],
        b"PAR2" + data[4:],
        data[:-4] + b"PARE",
        data[:-8] + struct.pack("<I", len(data)) + b"PAR1",
    ]:
        with pytest.raises(ValueError):
            _parquet.read_footer(bad)


def test_external_column_chunk() -> None:
    data = _write(_table(50, seed=0), compression="none")
    metadata = pq.read_metadata(io.BytesIO(data))
    metadata.set_file_path("elsewhere.parquet")
    sink = io.BytesIO()
    metadata.write_metadata_file(sink)
    with pytest.raises(ValueError, match="external file"):
        _parquet.read_footer(sink.getvalue())


# ------------------------------------------------------------------------------------------------
# Hand-made pages: a Thrift compact protocol writer


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


Field = tuple[int, int, bytes]


def _struct(*fields: Field) -> bytes:
    out, last = bytearray(), 0
    for field_id, kind, payload in fields:
        delta = field_id - last
        out += bytes([delta << 4 | kind]) if 0 < delta <= 15 else bytes([kind]) + _zigzag(field_id)
        out += payload
        last = field_id
    return bytes(out + b"\0")


def _i32(field_id: int, value: int) -> Field:
    return (field_id, 5, _zigzag(value))


def _sub(field_id: int, *fields: Field) -> Field:
    return (field_id, 12, _struct(*fields))


def _bool(field_id: int, value: bool) -> Field:
    return (field_id, 1 if value else 2, b"")


# An unknown field of every kind, nested, for the skipping: list<struct>, map<string, list<bool>>, set, double, binary.
_UNKNOWN = [
    (20, 9, bytes([0x2C]) + _struct(_i32(1, 5), (2, 8, b"\x03abc")) + _struct((3, 7, b"\0" * 8))),
    (
        21,
        11,
        _varint(2)
        + bytes([0x89])
        + b"\x01k"
        + bytes([0x21, 1, 2])
        + b"\x01l"
        + bytes([0xF1])
        + _varint(20)
        + b"\x02" * 20,
    ),
    (22, 10, bytes([0x36]) + _zigzag(7) + _zigzag(-8) + _zigzag(9)),
    (23, 3, b"\x7f"),
    (24, 4, _zigzag(-3)),
    (25, 6, _zigzag(-(2**62))),
]


def _page(page_type: int, body: bytes, header: Field, uncompressed: int | None = None, unknown: bool = True) -> bytes:
    fields = [
        _i32(1, page_type),
        _i32(2, len(body) if uncompressed is None else uncompressed),
        _i32(3, len(body)),
        _i32(4, 12345),
        header,
    ]
    if unknown:
        fields += _UNKNOWN
    return _struct(*sorted(fields)) + body


def _rle(value: int, count: int, bit_width: int) -> bytes:
    return _varint(count << 1) + value.to_bytes((bit_width + 7) // 8, "little")


def _bit_packed(values: list[int], bit_width: int, groups: int | None = None) -> bytes:
    padded = values + [0] * (-len(values) % 8)
    number = sum(v << (i * bit_width) for i, v in enumerate(padded))
    packed = number.to_bytes(len(padded) * bit_width // 8, "little")
    return _varint((len(padded) // 8 if groups is None else groups) << 1 | 1) + packed


def _dictionary_page(entries: list[int], physical_type: int = INT64, encoding: int = PLAIN) -> bytes:
    body = b"".join(struct.pack("<q" if physical_type == INT64 else "<i", e) for e in entries)
    return _page(DICTIONARY_PAGE, body, _sub(7, _i32(1, len(entries)), _i32(2, encoding), _bool(3, False)))


def _data_page(
    rows: int, values: bytes, encoding: int, levels: bytes | None = None, level_encoding: int = RLE
) -> bytes:
    body = (struct.pack("<I", len(levels)) + levels if levels is not None else b"") + values
    return _page(DATA_PAGE, body, _sub(5, _i32(1, rows), _i32(2, encoding), _i32(3, level_encoding), _i32(4, RLE)))


def _data_page_v2(
    rows: int, values: bytes, encoding: int, levels: bytes = b"", repetition: bytes = b"", compressed: bool = True
) -> bytes:
    header = _sub(
        8,
        _i32(1, rows),
        _i32(2, 0),
        _i32(3, rows),
        _i32(4, encoding),
        _i32(5, len(levels)),
        _i32(6, len(repetition)),
        _bool(7, compressed),
    )
    return _page(DATA_PAGE_V2, repetition + levels + values, header)


def _decode(chunk: bytes, rows: int, physical_type: int = INT64, max_level: int = 0) -> list[Any]:
    data = b"junk" + chunk + b"more junk"
    values, offsets, indices = _parquet.decode_chunk(data, 4, len(chunk), physical_type, max_level, rows, None)
    return _rebuild(values, offsets, indices, "string" if physical_type == BYTE_ARRAY else "int")


def test_hand_made_pages_of_every_kind() -> None:
    entries = [10, -20, 30, 2**40]
    plain = struct.pack("<3q", 7, 8, 9)
    levels = _bit_packed([1, 0, 1, 1, 0, 1, 1, 1], 1) + _rle(1, 3, 1) + _rle(0, 2, 1)
    chunk = (
        _dictionary_page(entries, encoding=PLAIN_DICTIONARY)
        + _page(INDEX_PAGE, b"whatever", _sub(6))
        + _data_page(4, bytes([2]) + _bit_packed([3, 2, 1, 0], 2), RLE_DICTIONARY)
        + _data_page(6, bytes([0]) + _rle(0, 6, 0), PLAIN_DICTIONARY)  # bit width 0: all entry 0
        + _data_page_v2(3, plain, PLAIN)
        + _data_page_v2(2, bytes([1]) + _rle(1, 2, 1), RLE_DICTIONARY, compressed=False)
    )
    assert _decode(chunk, 15) == [2**40, 30, -20, 10] + [10] * 6 + [7, 8, 9, -20, -20]
    nullable = (
        _dictionary_page(entries)
        + _data_page(13, bytes([2]) + _rle(3, 9, 2), RLE_DICTIONARY, levels)
        + _data_page_v2(13, struct.pack("<9q", *range(9)), PLAIN, levels)
        + _data_page(13, b"", RLE_DICTIONARY, _rle(0, 13, 1))  # all null: no values at all
    )
    pattern = [1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    numbers = iter(range(9))
    assert (
        _decode(nullable, 39, max_level=1)
        == [2**40 if p else None for p in pattern] + [next(numbers) if p else None for p in pattern] + [None] * 13
    )
    strings = _page(DICTIONARY_PAGE, b"\x02\0\0\0ab\0\0\0\0", _sub(7, _i32(1, 2), _i32(2, PLAIN)))
    strings += _data_page(3, bytes([1]) + _bit_packed([1, 0, 1], 1), RLE_DICTIONARY)
    strings += _data_page_v2(2, b"\x03\0\0\0xyz\x00\0\0\0", PLAIN)
    assert _decode(strings, 5, BYTE_ARRAY) == ["", "ab", "", "xyz", ""]


@pytest.mark.parametrize("bit_width", range(33))
def test_every_bit_width(bit_width: int) -> None:
    """Runs of each width, through the 8-at-a-time unpack and the padded tail, against a plain reading."""
    rng = random.Random(bit_width)
    size = max(1, min(2**bit_width, 5000))
    entries = [rng.randrange(-(2**31), 2**31) for _ in range(size)]
    top = size - 1
    high = [top, rng.randrange(size), top & ~1, 0]  # the widest values the dictionary allows
    wanted = [rng.randrange(size) for _ in range(203)] + high + [rng.randrange(size) for _ in range(11)]
    runs = _bit_packed(wanted[:200], bit_width) + _rle(top, 5, bit_width) + _bit_packed(wanted[200:], bit_width)
    expected = [entries[n] for n in wanted[:200] + [top] * 5 + wanted[200:]]
    chunk = _dictionary_page(entries, INT32) + _data_page(len(expected), bytes([bit_width]) + runs, RLE_DICTIONARY)
    assert _decode(chunk, len(expected), INT32) == expected
    # the last run cut short after its last needed value: still read (only its needed bytes exist)
    run = _bit_packed(wanted[:13], bit_width, groups=1000)  # claims 1000 groups; its header takes 2 bytes
    cut = bytes([bit_width]) + run[: 2 + (13 * bit_width + 7) // 8]
    chunk = _dictionary_page(entries, INT32) + _data_page(13, cut, RLE_DICTIONARY)
    assert _decode(chunk, 13, INT32) == [entries[n] for n in wanted[:13]]


@pytest.mark.parametrize(
    ("chunk", "rows", "max_level", "message"),
    [
        (_data_page(4, bytes([1]) + _rle(0, 4, 1), RLE_DICTIONARY), 4, 0, "without a dictionary page"),
        (
            _dictionary_page([1, 2]) + _data_page(4, bytes([2]) + _rle(2, 4, 2), RLE_DICTIONARY),
            4,
            0,
            "index out of range",
        ),
        (
            _dictionary_page([1, 2])
            + _data_page(8, bytes([2]) + _bit_packed([0, 1, 0, 1, 0, 1, 3, 1], 2), RLE_DICTIONARY),
            8,
            0,
            "index out of range",
        ),
        (_dictionary_page([1]) + _data_page(1, bytes([33]) + _rle(0, 1, 32), RLE_DICTIONARY), 1, 0, "bit width 33"),
        (
            _dictionary_page([1]) + _data_page(1, bytes([1]) + _rle(2, 1, 1), RLE_DICTIONARY),
            1,
            0,
            "wider than its bit width",
        ),
        (_dictionary_page([1]) + _dictionary_page([1]), 0, 0, "dictionary page not first"),
        (_data_page(1, struct.pack("<q", 1), PLAIN) + _dictionary_page([1]), 1, 0, "dictionary page not first"),
        (_dictionary_page([1], encoding=RLE_DICTIONARY), 0, 0, "unsupported dictionary encoding 8"),
        (
            _data_page(2, struct.pack("<q", 5), PLAIN, _bit_packed([1, 0], 1), BIT_PACKED),
            2,
            1,
            "definition level encoding 4",
        ),
        (_data_page(2, struct.pack("<q", 5), PLAIN, _rle(1, 2, 1)), 2, 1, "fewer values than its header"),
        (_data_page(2, struct.pack("<2q", 5, 6), PLAIN, _rle(2, 2, 1)), 2, 1, "wider than its bit width"),
        (_data_page(9, struct.pack("<9q", *range(9)), PLAIN, _rle(1, 8, 1)), 9, 1, "truncated RLE"),
        (_data_page_v2(1, struct.pack("<q", 5), PLAIN, repetition=b"\x02\x00"), 1, 0, "repetition levels"),
        (_data_page_v2(1, struct.pack("<q", 5), DELTA_BINARY_PACKED), 1, 0, "unsupported encoding 5 in column chunk"),
        (_page(7, b"", _sub(5)), 0, 0, "unsupported page type 7"),
        (
            _page(DATA_PAGE, struct.pack("<q", 1), _sub(5, _i32(1, 1), _i32(2, PLAIN)), uncompressed=9),
            1,
            0,
            "no decompress",
        ),
        (_page(DATA_PAGE, b"", _sub(5, _i32(2, PLAIN))), 0, 0, "lacks a required field"),
        (_data_page(3, struct.pack("<3q", 1, 2, 3), PLAIN)[:-1], 3, 0, "page extends past"),
        (_data_page(2, b"\x05\0\0\0abc", PLAIN), 2, BYTE_ARRAY, "past its page"),
    ],
)
def test_hand_made_errors(chunk: bytes, rows: int, max_level: int, message: str) -> None:
    physical_type = INT64
    if max_level == BYTE_ARRAY:
        physical_type, max_level = BYTE_ARRAY, 0
    with pytest.raises(ValueError, match=message):
        _decode(chunk, rows, physical_type, max_level)


def test_hand_made_footer() -> None:
    """Unknown fields of every kind are skipped; kinds follow the annotations; nested names are dotted."""

    def element(name: str, *fields: Field) -> bytes:
        return _struct(*sorted([(4, 8, _varint(len(name)) + name.encode()), *fields]))

    schema = [
        element("root", _i32(5, 6), *_UNKNOWN),
        element("a", _i32(1, INT64), _i32(3, 1), _sub(10, _sub(10, (1, 3, b"\x40"), _bool(2, True)))),
        element("b", _i32(1, INT32), _i32(3, 0), _sub(10, _sub(10, (1, 3, b"\x20"), _bool(2, False)))),
        element("c", _i32(1, INT32), _i32(3, 1), _i32(6, 17)),
        element("g", _i32(3, 1), _i32(5, 1)),
        element("x", _i32(1, BYTE_ARRAY), _i32(3, 1), _sub(10, _sub(1))),
        element("d", _i32(1, BYTE_ARRAY), _i32(3, 2), _i32(6, 0)),
        element("e", _i32(1, BYTE_ARRAY), _i32(3, 0), _sub(10, _sub(4))),
    ]

    def metadata_chunk(start: int) -> bytes:  # INT32, ZSTD, 3 values, 1 byte at start
        return _struct(
            _i32(1, 1), _i32(4, 6), (5, 6, _zigzag(3)), (7, 6, _zigzag(1)), (9, 6, _zigzag(start)), *_UNKNOWN
        )

    chunks = [_struct((2, 6, _zigzag(0)), (3, 12, metadata_chunk(4 + i))) for i in range(6)]
    row_group = _struct((1, 9, bytes([0x6C]) + b"".join(chunks)), (2, 6, _zigzag(0)), (3, 6, _zigzag(3)), *_UNKNOWN)
    footer = _struct(
        _i32(1, 2),
        (2, 9, bytes([0xFC]) + _varint(len(schema)) + b"".join(schema)),
        (3, 6, _zigzag(3)),
        (4, 9, bytes([0x1C]) + row_group),
        *_UNKNOWN,
    )
    data = b"PAR1" + b"\0" * 10 + footer + struct.pack("<I", len(footer)) + b"PAR1"
    assert _parquet.read_footer(data) == (
        3,
        [
            ("a", INT64, 1, "int"),
            ("b", INT32, 0, "other"),
            ("c", INT32, 1, "int"),
            ("g.x", BYTE_ARRAY, 2, "other"),
            ("d", BYTE_ARRAY, 0, "other"),
            ("e", BYTE_ARRAY, 0, "other"),
        ],
        [(3, [(6, 4 + i, 1, 3) for i in range(6)])],
    )


# ------------------------------------------------------------------------------------------------
# Fuzzing: corrupt input raises ValueError (or the callable's own exception), never anything else

_FUZZ_FILES = [
    _write(_table(200, seed=1), compression="none"),
    _write(
        _table(200, seed=2),
        compression="none",
        data_page_version="2.0",
        data_page_size=64,
        dictionary_pagesize_limit=100,
    ),
    _write(_table(200, seed=3), compression="zstd", use_dictionary=False, data_page_size=128),
    _write(_table(100, seed=4), compression="gzip", row_group_size=40),
]
_FOOTER_STARTS = [len(d) - 8 - struct.unpack("<I", d[-8:-4])[0] for d in _FUZZ_FILES]
_PAGE_STARTS = [[c[1] for _, chunks in _parquet.read_footer(d)[2] for c in chunks] for d in _FUZZ_FILES]


def _read_everything(data: bytes, rows_cap: int = 100_000) -> None:
    try:
        _, columns, row_groups = _parquet.read_footer(data)
    except ValueError:
        return
    for rows, chunks in row_groups:
        for (_, physical_type, max_level, _kind), (codec, start, size, _) in zip(columns, chunks, strict=True):
            if physical_type in (INT32, INT64, BYTE_ARRAY) and max_level <= 1:
                with contextlib.suppress(ValueError, DecompressFailed):
                    _parquet.decode_chunk(
                        data, start, size, physical_type, max_level, min(rows, rows_cap), DECOMPRESS.get(codec)
                    )


_mutation = st.tuples(
    st.sampled_from(["flip", "set", "cut", "insert", "delete"]), st.integers(0, 2**31), st.integers(0, 255)
)


def _mutate(data: bytes, mutations: list[tuple[str, int, int]], region: tuple[int, int]) -> bytes:
    out = bytearray(data)
    for kind, position, value in mutations:
        low, high = region
        at = low + position % max(1, min(high, len(out)) - low) if len(out) > low else position % max(1, len(out))
        if kind == "flip" and at < len(out):
            out[at] ^= 1 << (value % 8)
        elif kind == "set" and at < len(out):
            out[at] = value
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([value]) * (1 + value % 3)
        elif kind == "delete":
            del out[at : at + 1 + value % 4]
    return bytes(out)


FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(st.integers(0, len(_FUZZ_FILES) - 1), st.lists(_mutation, min_size=1, max_size=4))
def test_fuzz_footer(which: int, mutations: list[tuple[str, int, int]]) -> None:
    data = _FUZZ_FILES[which]
    _read_everything(_mutate(data, mutations, (_FOOTER_STARTS[which], len(data))))


@FUZZ
@given(st.integers(0, len(_FUZZ_FILES) - 1), st.integers(0, 10**6), st.lists(_mutation, min_size=1, max_size=3))
def test_fuzz_pages(which: int, page: int, mutations: list[tuple[str, int, int]]) -> None:
    data, starts = _FUZZ_FILES[which], _PAGE_STARTS[which]
    start = starts[page % len(starts)]
    _read_everything(
        _mutate(data, [(kind, position % 48, value) for kind, position, value in mutations], (start, start + 48))
    )


@FUZZ
@given(st.integers(0, len(_FUZZ_FILES) - 1), st.lists(_mutation, min_size=1, max_size=6))
def test_fuzz_anywhere(which: int, mutations: list[tuple[str, int, int]]) -> None:
    _read_everything(_mutate(_FUZZ_FILES[which], mutations, (0, 2**40)))


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([INT32, INT64, BYTE_ARRAY]), st.integers(0, 1), st.integers(0, 3000))
def test_fuzz_random_chunks(chunk: bytes, physical_type: int, max_level: int, rows: int) -> None:
    for attempt in (
        chunk,
        _page(
            DATA_PAGE,
            chunk,
            _sub(5, _i32(1, rows), _i32(2, chunk[0] % 10 if chunk else 0), _i32(3, RLE)),
            unknown=False,
        ),
    ):
        with contextlib.suppress(ValueError):
            _parquet.decode_chunk(attempt, 0, len(attempt), physical_type, max_level, rows, None)

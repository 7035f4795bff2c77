"""The Parquet bulk path (`columnar`, read here in this process, as a decoder process runs it) on
what the broader tests in test_vectorised.py do not reach: topologies whose ENI or NAT IP is
written '-' or "None", values a text line never holds (empty, spaces, non-ASCII, negative or
19-digit integers, long strings, every Arrow layout of a column), rows handed to the reference code one at
a time, batches of one file, and what sends a file to the reference reader.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import columnar
from natflow.flowlogs.plausible import MAX_RECORD_BYTES, MAX_RECORD_PACKETS
from natflow.flowlogs.readers import FormatChoices, add_rows, read_parquet
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FileKind, FlowLogFile, describe
from natflow.net import CidrSet

FIRST = 1_795_255_200  # 2026-11-21T10:00:00Z, the time in NAME
NAME = "123456789012_vpcflowlogs_us-east-1_fl-0abc_20261121T1000Z_0001.log.parquet"
INSIDE = CidrSet(["10.0.0.0/16"])
COLUMNS = ("interface_id", "srcaddr", "dstaddr", "pkt_dstaddr", "packets", "bytes", "start", "end", "action")


def parquet_file(directory: Path, rows: list[tuple[Any, ...]], columns: tuple[str, ...] = COLUMNS) -> FlowLogFile:
    """Rows as a Parquet object (numbers as integers, None as null), in row groups of 4."""
    numbers = ("packets", "bytes", "start", "end")
    return write_rows(directory, rows, {name: pa.int64() if name in numbers else pa.string() for name in columns})


def write_rows(directory: Path, rows: list[tuple[Any, ...]], schema: dict[str, pa.DataType]) -> FlowLogFile:
    data = pa.table({name: pa.array([row[i] for row in rows], kind) for i, (name, kind) in enumerate(schema.items())})
    path = directory / NAME
    pq.write_table(data, path, row_group_size=4)
    return describe(str(path), FileKind.PARQUET)


def bulk_read(file: FlowLogFile, topology: NatTopology, window: tuple[int, int] | None = None) -> Reduction:
    """The file through `columnar.read_object`, as a decoder process reads it."""
    reduction, notes = columnar.read_object(file, FormatChoices(), topology, window).into(topology, window)
    assert notes.items == []
    return reduction


def reference_read(file: FlowLogFile, topology: NatTopology, window: tuple[int, int] | None = None) -> Reduction:
    reduction = Reduction(topology, window)
    read_parquet(file, FormatChoices(), reduction, Diagnostics())
    return reduction


def assert_same(bulk: Reduction, expected: Reduction) -> None:
    assert bulk.rows == expected.rows
    assert bulk.stats == expected.stats
    assert (bulk.first_time, bulk.last_time) == (expected.first_time, expected.last_time)
    assert bulk.formats == expected.formats


@pytest.fixture
def reference_calls() -> Iterator[list[int]]:
    """The number of rows of each batch handed to `add_rows`."""
    calls: list[int] = []
    original = add_rows

    def counted(columns: list[list[Any]], *args: Any) -> None:
        calls.append(len(columns[0]))  # rows handed back
        original(columns, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "add_rows", counted)
        yield calls


def client_rows(count: int) -> list[tuple[Any, ...]]:
    """`count` client legs out, on the ENI "eni-0nat1" of NAT IP 10.0.1.10, a minute apart."""
    return [
        ("eni-0nat1", f"10.0.32.{index % 7}", "10.0.1.10", "52.1.2.3", 2, 100 + index, FIRST + 60 * index, None, None)
        for index in range(count)
    ]


def test_dash_and_none_named_enis_and_nat_ips(tmp_path: Path, reference_calls: list[int]) -> None:
    """'-' names a NAT ENI and a NAT IP: null, '-' and "None" are that value, as the reference reads them."""
    topology = NatTopology({"-": "nat-dash", "eni-0nat1": "nat-1"}, {"-": "-", "10.0.1.10": "eni-0nat1"}, INSIDE)
    rows = [
        (None, "10.0.32.5", "-", "52.1.2.3", 1, 10, FIRST, FIRST + 5, "ACCEPT"),  # on ENI '-' to NAT IP '-'
        ("None", "10.0.32.6", None, None, 2, 20, FIRST, FIRST + 5, None),
        ("-", "10.0.32.7", "None", "None", 3, 30, FIRST + 60, None, "ACCEPT"),
        ("eni-0nat1", "None", "10.0.1.10", "52.1.2.3", 4, 40, FIRST, FIRST, "ACCEPT"),  # '-' is a NAT IP here
        ("eni-0nat1", "10.0.32.8", "10.0.1.10", "-", 5, 50, None, FIRST + 9, "REJECT"),
        ("eni-0other", "10.0.32.9", "-", "52.1.2.3", 6, 60, FIRST, FIRST, "ACCEPT"),
    ]
    file = parquet_file(tmp_path, rows)
    expected = reference_read(file, topology)
    assert_same(bulk_read(file, topology), expected)
    # The rows with an address '-' (null, "None") are no IPv4 address to the scanner: the reference's.
    assert reference_calls == [1, 1, 1, 1] and expected.stats.records_counted == 3
    # Without interface-id, the NAT IP written '-' (or null, or "None") names ENI '-'.
    file = parquet_file(tmp_path, [row[1:] for row in rows], COLUMNS[1:])
    expected = reference_read(file, topology)
    assert_same(bulk_read(file, topology), expected)
    assert expected.stats.records_counted == 4


def test_none_is_never_a_nat_eni(tmp_path: Path) -> None:
    """An ENI id "None" in the topology matches nothing: the reference reads the text "None" as '-'."""
    topology = NatTopology({"None": "nat-none"}, {"10.0.1.10": "None"}, INSIDE)
    rows = [(eni, "10.0.32.5", "10.0.1.10", "52.1.2.3", 1, 10, FIRST, FIRST, None) for eni in ("None", None, "-")]
    file = parquet_file(tmp_path, rows)
    expected = reference_read(file, topology)
    assert_same(bulk_read(file, topology), expected)
    assert expected.stats.other_interface_records == 3


def test_only_odd_rows_go_to_the_reference(tmp_path: Path, reference_calls: list[int]) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    rows = client_rows(40)
    rows[13] = (*rows[13][:4], -1, *rows[13][5:])  # negative packets: malformed, in the slice of rows 10-19
    rows[17] = (*rows[17][:5], -5, *rows[17][6:])
    rows[31] = (*rows[31][:5], 10**18, *rows[31][6:])  # 19 digits: more than any interface carries
    file = parquet_file(tmp_path, rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "BATCH_ROWS", 3)
        expected = reference_read(file, topology, (FIRST, FIRST + 3600))
        assert_same(bulk_read(file, topology, (FIRST, FIRST + 3600)), expected)
    assert reference_calls == [1, 1, 1]
    assert expected.stats.malformed_examples == [
        f"{file.path}:14: packets/bytes is not a number",
        f"{file.path}:18: packets/bytes is not a number",
        f"{file.path}:32: packets 2 / bytes 1000000000000000000: more than any interface carries in an aggregation "
        f"interval (at most {MAX_RECORD_PACKETS} packets, {MAX_RECORD_BYTES} bytes)",
    ]
    assert expected.stats.records_counted == 37


def test_sums_past_64_bits_are_python_integers(tmp_path: Path) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    # The most a record may carry: the scanner takes each, not their byte sum past 2**64.
    most_bytes, most_packets, count = MAX_RECORD_BYTES, MAX_RECORD_PACKETS, 18_500
    rows = [("eni-0nat1", "10.0.32.5", "10.0.1.10", "52.1.2.3", most_packets, most_bytes, FIRST, None, None)] * count
    file = parquet_file(tmp_path, rows)
    bulk = bulk_read(file, topology)
    assert_same(bulk, reference_read(file, topology))
    assert count * most_bytes >= 1 << 64
    assert list(bulk.rows.values()) == [[count * most_bytes, count * most_packets, FIRST, FIRST, count]]


ODD_VALUES = ("", " ", "a b", "é", "None", " None", "None ", "-", "\t5", "５", "10.0.32.5 ", "eni-0nat1 ", "0", "eni é")
ODD_ROW = ("eni-0nat1", "10.0.32.5", "10.0.1.10", "52.1.2.3", "2", "100", str(FIRST), str(FIRST + 5), "ACCEPT")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.lists(st.tuples(st.integers(0, len(COLUMNS) - 1), st.sampled_from(ODD_VALUES)), max_size=3),
                min_size=1, max_size=12))  # fmt: skip
def test_values_no_text_line_holds_read_as_the_reference_reads_them(changes: list[list[tuple[int, str]]]) -> None:
    """Every column as strings, with values that are no plain token in some rows (and a NAT ENI id
    that is none either)."""
    topology = NatTopology(
        {"eni-0nat1": "nat-1", "-": "nat-dash", "eni é": "nat-2"}, {"10.0.1.10": "eni-0nat1"}, INSIDE
    )
    rows = []
    for row_changes in changes:
        row = list(ODD_ROW)
        for column, value in row_changes:
            row[column] = value
        rows.append(tuple(row))
    with tempfile.TemporaryDirectory() as directory:
        file = write_rows(Path(directory), rows, dict.fromkeys(COLUMNS, pa.string()))
        for window in (None, (FIRST, FIRST + 60)):
            assert_same(bulk_read(file, topology, window), reference_read(file, topology, window))


def test_long_values(tmp_path: Path, reference_calls: list[int]) -> None:
    """Values longer than a string view holds inline (12 bytes)."""
    topology = NatTopology({"eni-0natgateway00000000001": "nat-1"}, {"10.0.1.10": "eni-0natgateway00000000001"}, INSIDE)
    columns = (*COLUMNS, "pkt_dst_aws_service")
    rows = [
        ("eni-0natgateway00000000001", f"10.0.{100 + index}.{100 + index}", "10.0.1.10",
         f"203.0.113.{100 + index}", 2, 100 + index, FIRST, None, "ACCEPT", "AMAZON_APPFLOW" * (1 + index % 3))
        for index in range(30)
    ]  # fmt: skip
    file = parquet_file(tmp_path, rows, columns)
    bulk = bulk_read(file, topology)
    assert_same(bulk, reference_read(file, topology))
    assert reference_calls == [] and bulk.stats.records_counted == 30


def test_slices_of_one_file_merge_into_one_row_per_key(tmp_path: Path) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    rows = [(*row[:6], FIRST + index % 3, *row[7:]) for index, row in enumerate(client_rows(50))]  # few keys
    file = parquet_file(tmp_path, rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "BATCH_ROWS", 3)
        assert_same(bulk_read(file, topology), reference_read(file, topology))


TOPOLOGY = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)


def written(directory: Path, rows: int = 60, kinds: dict[str, pa.DataType] | None = None, **options: Any) -> FlowLogFile:
    """`client_rows` with other-interface and NODATA rows, written by pyarrow with `options`."""
    data = [list(row) for row in client_rows(rows)]
    for index in range(0, rows, 7):
        data[index][0] = "eni-0other"
    columns: dict[str, list[Any]] = {name: [row[i] for row in data] for i, name in enumerate(COLUMNS)}
    columns["log_status"] = ["NODATA" if index % 11 == 5 else "OK" for index in range(rows)]
    numbers = ("packets", "bytes", "start", "end")
    kinds = {name: pa.int64() if name in numbers else pa.string() for name in columns} | (kinds or {})
    path = directory / NAME
    pq.write_table(pa.table({name: pa.array(values, kinds[name]) for name, values in columns.items()}), path,
                   row_group_size=16, **options)  # fmt: skip
    return describe(str(path), FileKind.PARQUET)


@pytest.fixture
def fast_only() -> Iterator[None]:
    """The file must take the fast way: the reference reader is not called."""

    def not_expected(*args: Any) -> None:
        raise AssertionError("the file went to the reference reader")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "read_reference", not_expected)
        yield


@pytest.mark.parametrize("compression", ["NONE", "GZIP", "ZSTD", "SNAPPY", "BROTLI", "LZ4"])
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_every_codec_and_page_version(tmp_path: Path, fast_only: None, compression: str, version: str) -> None:
    file = written(tmp_path, compression=compression, data_page_version=version)
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))


@pytest.mark.parametrize(
    "options",
    [
        {"use_dictionary": False},  # plain strings: compared and decoded row by row
        {"column_encoding": {"bytes": "DELTA_BINARY_PACKED"}, "use_dictionary": ["interface_id"]},
        {"column_encoding": {"srcaddr": "DELTA_LENGTH_BYTE_ARRAY"}, "use_dictionary": ["interface_id"]},
        {"dictionary_pagesize_limit": 64, "data_page_size": 128},  # plain pages after the dictionary
        {"version": "1.0"},  # PLAIN_DICTIONARY, as older writers do
    ],
    ids=["plain", "delta-integers", "delta-lengths", "dictionary-fallback", "format-1.0"],
)
def test_encodings(tmp_path: Path, fast_only: None, options: dict[str, Any]) -> None:
    file = written(tmp_path, rows=400, **options)
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))


def test_narrow_integers_and_large_strings(tmp_path: Path, fast_only: None) -> None:
    file = written(tmp_path, kinds={"packets": pa.int32(), "bytes": pa.uint32(), "srcaddr": pa.large_string()})
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))


@pytest.mark.parametrize("kinds", [{"bytes": pa.float64()}, {"bytes": pa.uint64()}, {"srcaddr": pa.binary()},
                                   {"action": pa.int64()}], ids=["double", "uint64", "binary", "integer-text"])  # fmt: skip
def test_columns_of_other_types_go_to_the_reference(tmp_path: Path, kinds: dict[str, pa.DataType]) -> None:
    rows = 20
    file = written(tmp_path, rows=rows, kinds=kinds)
    if "action" in kinds:  # an integer where text belongs
        table = pq.read_table(file.path)
        table = table.set_column(table.schema.get_field_index("action"), "action", pa.array(range(rows), pa.int64()))
        pq.write_table(table, file.path, row_group_size=16)
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))


def scanned(arrays: dict[str, pa.Array], topology: NatTopology = TOPOLOGY) -> Reduction:
    """Arrow arrays (one per used field) through `columnar._column` and `scan_columns`, as a batch."""
    from natflow.flowlogs.fields import LogFormat
    from natflow.flowlogs.readers import Layout
    from natflow.flowlogs.textscan import ScannedText, scanner_for

    scanner = scanner_for(Layout(LogFormat(tuple(arrays), "test")), topology, None, None)
    kinds = [columnar._INT64 if name in ("packets", "bytes", "start", "end") else columnar._TEXT for name in arrays]
    columns = tuple(columnar._column(kind, array) for kind, array in zip(kinds, arrays.values(), strict=True))
    assert scanner.scan_columns(columns, len(next(iter(arrays.values())))) == []
    part = Reduction(topology, None)
    ScannedText(scanner).finish(part)
    return part


def dictionary(numbers: list[int], entries: list[Any], valid: list[bool] | None = None) -> pa.DictionaryArray:
    """A dictionary column as a damaged page may give it: entry numbers are not checked."""
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    indices = pa.Array.from_buffers(pa.int32(), len(numbers), [bitmap, pa.py_buffer(np.array(numbers, np.int32))])
    return pa.DictionaryArray.from_arrays(indices, pa.array(entries), safe=False)


def test_a_dictionary_entry_number_out_of_range_is_refused_not_read() -> None:
    """A dictionary entry number outside the dictionary (a damaged page) is refused where its row is
    read; a null row's number is never read, nor are the values of a row on another interface."""
    enis = dictionary([0, 0], ["eni-0nat1"])
    sources = dictionary([0, 0], ["10.0.2.5"])
    nat_ip = dictionary([0, 0], ["10.0.1.10"])

    def arrays(numbers: list[int], valid: list[bool] | None = None, on: pa.Array = enis) -> dict[str, pa.Array]:
        return {"interface-id": on, "srcaddr": sources, "dstaddr": nat_ip,
                "bytes": dictionary(numbers, [100, 200], valid), "start": pa.array([FIRST, FIRST])}  # fmt: skip

    assert scanned(arrays([0, 1])).stats.records_counted == 2
    for numbers in ([0, 2], [-1, 0]):
        with pytest.raises(ValueError, match="outside"):
            scanned(arrays(numbers))
    assert scanned(arrays([0, 1 << 30], [True, False])).stats.records_counted == 2  # row 1's bytes are null
    other = dictionary([0, 1], ["eni-0nat1", "eni-0other"])
    assert scanned(arrays([0, 1 << 30], on=other)).stats.other_interface_records == 1  # row 1's bytes never read


@pytest.mark.parametrize("layout", ["string", "large_string", "string_view", "sliced", "sliced-dictionary"])
def test_every_arrow_layout_of_a_column_reads_alike(layout: str) -> None:
    """Text columns as plain strings, large strings, string views (long values in data buffers)
    and dictionaries, sliced or not, and integers of other widths, all give the same reduction."""
    rows = client_rows(40)
    for index in range(0, 40, 3):
        rows[index] = ("eni-0other", *rows[index][1:])
    names = ("interface-id", "srcaddr", "dstaddr", "pkt-dstaddr", "packets", "bytes", "start")
    text = {name: pa.array([row[i] for row in rows]) for i, name in enumerate(names) if name not in ("packets", "bytes", "start")}
    numbers = {name: pa.array([row[i] for row in rows], pa.int64()) for i, name in enumerate(names) if name in ("packets", "bytes", "start")}
    expected = scanned({**text, **numbers})
    assert expected.stats.records_counted == 26 and expected.stats.other_interface_records == 14
    if layout in ("string", "large_string", "string_view"):
        kind = {"string": pa.string(), "large_string": pa.large_string(), "string_view": pa.string_view()}[layout]
        changed = {name: array.cast(kind) for name, array in text.items()}
        wide = {name: array.cast(pa.int32()) for name, array in numbers.items()}
        assert_same(scanned({**changed, **wide}), expected)
        return
    padded = {name: pa.concat_arrays([array.slice(0, 5), array]) for name, array in {**text, **numbers}.items()}
    if layout == "sliced-dictionary":  # the dictionary sliced too
        padded = {name: array.dictionary_encode() if name in text else array for name, array in padded.items()}
        padded = {name: pa.DictionaryArray.from_arrays(array.indices, pa.concat_arrays([pa.array(["x"] * 3), array.dictionary]).slice(3))
                  if name in text else array for name, array in padded.items()}  # fmt: skip
    assert_same(scanned({name: array.slice(5) for name, array in padded.items()}), expected)


def test_a_dictionary_with_null_entries_goes_to_the_reference() -> None:
    """Parquet's dictionaries hold no nulls; an Arrow one that does is not read by the scanner."""
    from natflow.flowlogs.readers import NeedsReference

    with pytest.raises(NeedsReference):
        columnar._column(columnar._INT64, dictionary([0, 1], [100, None]))
    assert columnar._column(columnar._INT64, dictionary([0, 1], [100, 200]))[-1] == 2


def test_column_claims_past_any_buffer_are_refused() -> None:
    """Entry counts and offsets whose byte sizes would overflow are refused before any buffer is read."""
    from natflow.flowlogs.fields import LogFormat
    from natflow.flowlogs.readers import Layout
    from natflow.flowlogs.textscan import scanner_for

    scanner = scanner_for(Layout(LogFormat(("interface-id",), "test")), TOPOLOGY, None, None)
    for offset, entries in ((0, 1 << 62), (1 << 62, 1), (-1, 1), (0, -1)):
        with pytest.raises(ValueError, match="out of range"):
            scanner.scan_columns(((columnar._TEXT32, offset, None, b"", (b"",), None, entries),), 1)
    with pytest.raises(ValueError, match="fewer values"):  # 4 offsets bytes cannot hold an entry's two
        scanner.scan_columns(((columnar._TEXT32, 0, None, b"\0" * 4, (b"",), None, 1),), 1)

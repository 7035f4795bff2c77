"""The Parquet bulk path (`columnar`) on what the broader tests in test_vectorised.py do not reach:
topologies whose ENI or NAT IP is written '-' or "None", values a text line never holds (empty,
spaces, non-ASCII, negative or 19-digit integers, long strings in Arrow's view buffers), rows
handed to the reference code one at a time, slices of one file; each through both ways in (the
decoder's tables and polars' Arrow columns), and what sends a file from one to the other.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
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
    schema = {name: pl.Int64 if name in ("packets", "bytes", "start", "end") else pl.String for name in columns}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    path = directory / NAME
    frame.write_parquet(path, row_group_size=4)
    return describe(str(path), FileKind.PARQUET)


def bulk_read(file: FlowLogFile, topology: NatTopology, window: tuple[int, int] | None = None) -> Reduction:
    """The file through `columnar.read_parquet`, as vectorised.py folds it into a Reduction."""
    reduction = Reduction(topology, window)
    columnar.read_parquet(file, FormatChoices(), reduction, Diagnostics()).finish(reduction)
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


@pytest.fixture(autouse=True, params=["decoded", "arrow"])
def way_in(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test reads through the decoder's tables, which must take the file, and through polars."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "arrow":
            patch.setattr(columnar, "_read_decoded", not_decodable)
        else:
            patch.setattr(columnar, "_read_arrow", not_expected)
        yield request.param


def not_decodable(*args: Any) -> None:
    raise columnar._NotDecodable


def not_expected(*args: Any) -> None:
    raise AssertionError("the decoder did not take the file")


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
        patch.setattr(columnar, "PARQUET_SLICE_ROWS", 10)
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
        frame = pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.String), orient="row")
        path = Path(directory) / NAME
        frame.write_parquet(path, row_group_size=4)
        file = describe(str(path), FileKind.PARQUET)
        for window in (None, (FIRST, FIRST + 60)):
            assert_same(bulk_read(file, topology, window), reference_read(file, topology, window))


def test_long_values_in_view_buffers(tmp_path: Path, reference_calls: list[int]) -> None:
    """Values longer than 12 bytes live in Arrow's data buffers, not in the views."""
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
        patch.setattr(columnar, "PARQUET_SLICE_ROWS", 6)
        assert_same(bulk_read(file, topology), reference_read(file, topology))

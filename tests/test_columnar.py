"""The Parquet bulk path (`columnar`) on what the broader tests in test_vectorised.py do not reach:
topologies whose ENI or NAT IP is written '-' or "None", slices refused and handed to the reference
code a batch at a time, the reduced rows' conversion into a Reduction (shared texts, merged keys).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import columnar
from natflow.flowlogs.readers import FormatChoices, NeedsReference, add_rows, read_parquet
from natflow.flowlogs.reduce import IN, OUT, NatTopology, Reduction
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
    reducer = columnar.read_parquet(file, FormatChoices(), reduction, Diagnostics())
    reducer.finish(reduction)
    columnar.add_rows_frame(reduction, reducer.grouped())
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
        calls.append(len(columns[0]))
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
    assert reference_calls == [] and expected.stats.records_counted == 3
    # Without interface-id, the NAT IP written '-' (or null, or "None") names ENI '-'.
    file = parquet_file(tmp_path, [row[1:] for row in rows], COLUMNS[1:])
    expected = reference_read(file, topology)
    assert_same(bulk_read(file, topology), expected)
    assert reference_calls == [] and expected.stats.records_counted == 4


def test_none_is_never_a_nat_eni(tmp_path: Path) -> None:
    """An ENI id "None" in the topology matches nothing: the reference reads the text "None" as '-'."""
    topology = NatTopology({"None": "nat-none"}, {"10.0.1.10": "None"}, INSIDE)
    rows = [(eni, "10.0.32.5", "10.0.1.10", "52.1.2.3", 1, 10, FIRST, FIRST, None) for eni in ("None", None, "-")]
    file = parquet_file(tmp_path, rows)
    expected = reference_read(file, topology)
    assert_same(bulk_read(file, topology), expected)
    assert expected.stats.other_interface_records == 3


def test_refused_slice_goes_to_the_reference_a_batch_at_a_time(tmp_path: Path, reference_calls: list[int]) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    rows = client_rows(40)
    rows[13] = (*rows[13][:4], -1, *rows[13][5:])  # negative packets: malformed in the slice of rows 10-19
    rows[17] = (*rows[17][:5], -5, *rows[17][6:])
    file = parquet_file(tmp_path, rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "PARQUET_SLICE_ROWS", 10)
        patch.setattr(columnar, "_REFERENCE_BATCH_ROWS", 4)
        expected = reference_read(file, topology, (FIRST, FIRST + 3600))
        assert_same(bulk_read(file, topology, (FIRST, FIRST + 3600)), expected)
    assert reference_calls == [4, 4, 2]
    assert expected.stats.malformed_examples == [
        f"{file.path}:14: packets/bytes is not a number",
        f"{file.path}:18: packets/bytes is not a number",
    ]


def test_slices_of_one_file_merge_into_one_row_per_key(tmp_path: Path) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    rows = [(*row[:6], FIRST + index % 3, *row[7:]) for index, row in enumerate(client_rows(50))]  # few keys
    file = parquet_file(tmp_path, rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "PARQUET_SLICE_ROWS", 6)
        patch.setattr(columnar, "COMPACT_ROWS", 4)
        assert_same(bulk_read(file, topology), reference_read(file, topology))


@given(st.lists(st.text(max_size=6), max_size=30))
def test_shared_texts_are_the_column_values(texts: list[str]) -> None:
    shared = columnar._shared(pl.Series(texts, dtype=pl.String))
    assert shared == texts
    by_text = {text: text for text in shared}
    assert all(text is by_text[text] for text in shared)  # one object per distinct text


def reduced_rows(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """A frame of reduced rows, as FrameReducer.grouped() gives them."""
    schema = ["eni", "address", "direction", "minute", "peer", "service", "bytes", "packets", "first", "last"]
    return pl.DataFrame(rows, schema=[*schema, "records"], orient="row")


@pytest.mark.parametrize("gc_enabled", [True, False])
def test_rows_frames_merge_as_reductions_do(gc_enabled: bool) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    first = [("eni-0nat1", "10.0.32.5", OUT, 100, "52.1.2.3", "", 10, 1, 6000, 6005, 1)]
    second = [
        ("eni-0nat1", "10.0.32.5", OUT, 100, "52.1.2.3", "", 5, 2, 5990, 6001, 2),  # the same key
        ("eni-0nat1", "10.0.32.5", IN, 100, "", "S3", 7, 3, 6010, 6020, 1),
    ]
    merged = Reduction(topology)
    for rows in (first, second):
        part = Reduction(topology)
        part.rows = {row[:6]: list(row[6:]) for row in rows}
        merged.merge(part)
    reduction = Reduction(topology)
    was = gc.isenabled()
    try:
        (gc.enable if gc_enabled else gc.disable)()
        for rows in (first, second):
            columnar.add_rows_frame(reduction, reduced_rows(rows))
        assert gc.isenabled() is gc_enabled  # left as it was found
    finally:
        (gc.enable if was else gc.disable)()
    assert (
        reduction.rows
        == merged.rows
        == {
            ("eni-0nat1", "10.0.32.5", OUT, 100, "52.1.2.3", ""): [15, 3, 5990, 6005, 3],
            ("eni-0nat1", "10.0.32.5", IN, 100, "", "S3"): [7, 3, 6010, 6020, 1],
        }
    )


def test_address_memo_learns_from_many_threads_at_once() -> None:
    """Files are read by threads that share the memo: what each learns stays learnt."""
    memo = columnar.AddressMemo(CidrSet(["10.0.0.0/8"]))
    batches = [pl.Series([f"10.{thread}.{i // 250}.{i % 250}" for i in range(4000)]) for thread in range(6)]

    def learn(batch: pl.Series) -> bool:
        _, inside = memo.learn(batch)
        return bool(batch.is_in(inside).all())

    with ThreadPoolExecutor(len(batches)) as pool:
        assert all(pool.map(learn, batches))
    assert memo.inside_addresses.len() == 6 * 4000


def object_at(
    directory: Path, index: int, rows: list[tuple[Any, ...]], columns: tuple[str, ...] = COLUMNS
) -> FlowLogFile:
    """Object `index` of the same five minutes (the same key time), in row groups of 4."""
    schema = {name: pl.Int64 if name in ("packets", "bytes", "start", "end") else pl.String for name in columns}
    path = directory / NAME.replace("_0001.", f"_{index:04x}.")
    pl.DataFrame(rows, schema=schema, orient="row").write_parquet(path, row_group_size=4)
    return describe(str(path), FileKind.PARQUET)


def test_objects_read_together_as_one_after_another(tmp_path: Path, reference_calls: list[int]) -> None:
    """Small objects scanned as one, slices across their boundaries, a malformed record in the third:
    what reading each in turn gives, line numbers of each object included."""
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    sizes = (3, 9, 7, 0, 12)
    files = []
    for index, size in enumerate(sizes):
        rows = client_rows(size)
        if index == 2:
            rows[5] = (*rows[5][:4], -1, *rows[5][5:])
        files.append(object_at(tmp_path, index, rows))
    expected = Reduction(topology)
    for file in files:
        read_parquet(file, FormatChoices(), expected, Diagnostics())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "PARQUET_SLICE_ROWS", 8)
        patch.setattr(columnar, "_REFERENCE_BATCH_ROWS", 3)
        bulk = Reduction(topology)
        reducer = columnar.read_parquet_objects(files, FormatChoices(), bulk, Diagnostics())
    reducer.finish(bulk)
    columnar.add_rows_frame(bulk, reducer.grouped())
    assert_same(bulk, expected)
    assert expected.stats.malformed_examples == [f"{files[2].path}:6: packets/bytes is not a number"]
    # Rows 16-23 hold the malformed one: the last 3 of object 2, the first 5 of object 4 (3 is empty).
    assert reference_calls == [3, 3, 2]


def test_objects_that_differ_are_read_one_at_a_time(tmp_path: Path) -> None:
    topology = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)
    same = object_at(tmp_path, 0, client_rows(3))
    fewer_columns = object_at(tmp_path, 1, [row[:-1] for row in client_rows(3)], COLUMNS[:-1])
    other_time = describe(str(Path(same.path).rename(tmp_path / NAME.replace("T1000Z", "T1005Z"))), FileKind.PARQUET)
    for files in (
        [object_at(tmp_path, 0, client_rows(3)), fewer_columns],
        [object_at(tmp_path, 0, client_rows(3)), other_time],
    ):
        with pytest.raises(NeedsReference):
            columnar.read_parquet_objects(files, FormatChoices(), Reduction(topology), Diagnostics())

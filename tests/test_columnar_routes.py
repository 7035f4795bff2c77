"""Which way a Parquet object goes into `columnar` (the decoder's tables, polars' Arrow columns or
the reference reader) and that each gives the reference's answer; `TextScanner.scan_tables`' checks
of what it is handed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from natflow.flowlogs import columnar
from natflow.flowlogs.fields import LogFormat
from natflow.flowlogs.readers import Layout
from natflow.flowlogs.reduce import NatTopology
from natflow.flowlogs.sources import FileKind, FlowLogFile, describe
from natflow.flowlogs.textscan import scanner_for
from tests.test_columnar import COLUMNS, INSIDE, NAME, assert_same, bulk_read, client_rows, reference_read

TOPOLOGY = NatTopology({"eni-0nat1": "nat-1"}, {"10.0.1.10": "eni-0nat1"}, INSIDE)


@pytest.fixture
def ways() -> Iterator[list[str]]:
    """The ways in each read took: "decoded", "arrow"."""
    taken: list[str] = []
    decoded, arrow = columnar._read_decoded, columnar._read_arrow

    def read_decoded(*args: Any) -> Any:
        result = decoded(*args)
        taken.append("decoded")
        return result

    def read_arrow(*args: Any) -> Any:
        taken.append("arrow")
        return arrow(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "_read_decoded", read_decoded)
        patch.setattr(columnar, "_read_arrow", read_arrow)
        yield taken


def typed(columns: dict[str, Any]) -> pa.Table:
    """Integers for the number fields, strings for the others (a column of nulls too)."""
    numbers = ("packets", "bytes", "start", "end")
    return pa.table({name: pa.array(values, pa.int64() if name in numbers else pa.string())
                     for name, values in columns.items()})  # fmt: skip


def written(directory: Path, rows: int = 60, **options: Any) -> FlowLogFile:
    """`client_rows` (with a few other-interface and NODATA rows) written by pyarrow with `options`."""
    data = [list(row) for row in client_rows(rows)]
    for index in range(0, rows, 7):
        data[index][0] = "eni-0other"
    columns = {name: [row[i] for row in data] for i, name in enumerate(COLUMNS)}
    columns["log_status"] = ["NODATA" if index % 11 == 5 else "OK" for index in range(rows)]
    path = directory / NAME
    pq.write_table(typed(columns), path, row_group_size=16, **options)
    return describe(str(path), FileKind.PARQUET)


@pytest.mark.parametrize("compression", ["NONE", "GZIP", "ZSTD", "SNAPPY", "BROTLI", "LZ4"])
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_the_decoder_reads_every_codec_and_page_version(
    tmp_path: Path, ways: list[str], compression: str, version: str
) -> None:
    file = written(tmp_path, compression=compression, data_page_version=version)
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))
    assert ways == ["decoded"]


def test_format_version_1_writes_plain_dictionary_pages(tmp_path: Path, ways: list[str]) -> None:
    file = written(tmp_path, version="1.0", compression="GZIP")  # PLAIN_DICTIONARY, as older writers do
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))
    assert ways == ["decoded"]


def test_plain_pages_after_the_dictionary_are_entries_too(tmp_path: Path, ways: list[str]) -> None:
    file = written(tmp_path, rows=400, dictionary_pagesize_limit=64, data_page_size=128)
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))
    assert ways == ["decoded"]


@pytest.mark.parametrize(
    "options",
    [
        {"column_encoding": {"bytes": "DELTA_BINARY_PACKED"}, "use_dictionary": ["interface_id"]},
        {"column_encoding": {"srcaddr": "DELTA_LENGTH_BYTE_ARRAY"}, "use_dictionary": ["interface_id"]},
    ],
    ids=["delta-integers", "delta-lengths"],
)
def test_encodings_the_decoder_lacks_go_the_arrow_way(tmp_path: Path, ways: list[str], options: dict[str, Any]) -> None:
    file = written(tmp_path, **options)
    assert_same(bulk_read(file, TOPOLOGY), reference_read(file, TOPOLOGY))
    assert ways == ["arrow"]


def test_large_row_groups_pages_and_other_codecs_go_the_arrow_way(tmp_path: Path, ways: list[str]) -> None:
    file = written(tmp_path, compression="ZSTD")
    expected = reference_read(file, TOPOLOGY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "DECODED_MAX_ROWS", 15)  # the row groups hold 16
        assert_same(bulk_read(file, TOPOLOGY), expected)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "_PYARROW_CODECS", {})
        assert_same(bulk_read(file, TOPOLOGY), expected)
    for compression in ("ZSTD", "GZIP"):  # pages said to be larger than a writer makes them
        file = written(tmp_path, compression=compression)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(columnar, "PAGE_MAX_BYTES", 40)
            assert_same(bulk_read(file, TOPOLOGY), expected)
    assert ways == ["arrow"] * 4


def test_a_damaged_gzip_page_goes_the_arrow_way_to_the_reference(tmp_path: Path, ways: list[str]) -> None:
    file = written(tmp_path, compression="GZIP")
    data = bytearray(Path(file.path).read_bytes())
    middle = len(data) // 3
    data[middle : middle + 8] = bytes(8)  # inside a page's deflate stream (the footer is at the end)
    Path(file.path).write_bytes(bytes(data))
    with pytest.raises(columnar.NeedsReference):  # polars finds the damage too: the reference reader warns
        bulk_read(file, TOPOLOGY)
    assert ways == ["arrow"]


def test_columns_of_other_types_go_to_the_reference(tmp_path: Path, ways: list[str]) -> None:
    data = [list(row) for row in client_rows(10)]
    columns: dict[str, Any] = {name: [row[i] for row in data] for i, name in enumerate(COLUMNS)}
    table = typed(columns)
    doubles = pa.array([float(value) for value in columns["bytes"]])  # str() of a double is the reference's
    path = tmp_path / NAME
    pq.write_table(table.set_column(table.schema.get_field_index("bytes"), "bytes", doubles), path)
    file = describe(str(path), FileKind.PARQUET)
    with pytest.raises(columnar.NeedsReference):
        bulk_read(file, TOPOLOGY)
    assert ways == ["arrow"]  # the decoder left it to the Arrow way, which leaves it to the reference


def test_a_file_without_its_footer_goes_the_arrow_way_to_the_reference(tmp_path: Path, ways: list[str]) -> None:
    file = written(tmp_path)
    Path(file.path).write_bytes(Path(file.path).read_bytes()[:-20])
    with pytest.raises(columnar.NeedsReference):
        bulk_read(file, TOPOLOGY)
    assert ways == ["arrow"]


def text_table(values: list[bytes], indices: list[int]) -> tuple[int, bytes, bytes, bytes]:
    offsets = [0]
    for value in values:
        offsets.append(offsets[-1] + len(value))
    return (
        0,
        b"".join(values),
        pa.array(offsets, pa.int64()).buffers()[1].to_pybytes(),
        pa.array(indices, pa.int32()).buffers()[1].to_pybytes(),
    )


def test_scan_tables_checks_entries_offsets_and_kinds() -> None:
    layout = Layout(LogFormat(("interface-id", "srcaddr"), "test"))
    scanner = scanner_for(layout, TOPOLOGY, None, None)
    selected = (b"eni-0nat1",)
    good = text_table([b"eni-0nat1"], [0, 0])
    addresses = text_table([b"10.0.32.5"], [0, -1])
    assert scanner.scan_tables((good, addresses), 2, selected) == [0, 1]  # no time: the reference's to judge
    with pytest.raises(ValueError, match="out of range"):
        scanner.scan_tables((good, text_table([b"10.0.32.5"], [0, 1])), 2, selected)  # entry 1 of 1
    with pytest.raises(ValueError, match="out of range"):
        scanner.scan_tables((text_table([b"eni-0nat1"], [0, -2]), addresses), 2, selected)
    kind, values, _, indices = addresses
    past_end = pa.array([0, 99], pa.int64()).buffers()[1].to_pybytes()
    with pytest.raises(ValueError, match="out of range"):
        scanner.scan_tables((good, (kind, values, past_end, indices)), 2, selected)
    with pytest.raises(ValueError, match="fewer rows"):
        scanner.scan_tables((good, addresses), 3, selected)
    with pytest.raises(ValueError, match="text columns"):
        scanner.scan_tables(((1, b"\0" * 8, None, indices), addresses), 2, selected)
    with pytest.raises(ValueError, match="without offsets"):
        scanner.scan_tables((good, (kind, values, None, indices)), 2, selected)

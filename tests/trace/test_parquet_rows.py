"""`trace/parquet.py`, what a decoder sends back of a Parquet object: the rows naming the subject as
rows, the rows collected for later as text lines (nulls as '-'), and the collected rows no line can
hold (an empty value, a value with whitespace) as rows, numbered as in the object."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from natflow.flowlogs.sources import FileKind, describe
from natflow.trace.parquet import read_object

NAME = "123456789012_vpcflowlogs_us-east-1_fl-0abc_20261121T1000Z_odd.log.parquet"
START, END = 1_795_255_200, 1_795_255_260


def test_collected_rows_come_back_as_lines_and_odd_ones_as_rows(tmp_path: Path) -> None:
    rows = {
        "interface_id": ["eni-nat", "eni-nat", "eni-nat", "eni-pod"],
        "srcaddr": ["52.1.1.1", "52.1.1.2", "3.3.3.3", "10.0.1.5"],
        "dstaddr": ["10.0.0.9", "10.0.0.9", "10.0.0.9", "52.1.1.1"],
        "bytes": [100, None, 300, 400],
        "start": [START] * 4,
        "end": [END] * 4,
        "action": ["ACCEPT", "AC CEPT", "", "ACCEPT"],
    }
    path = tmp_path / NAME
    pq.write_table(pa.table(rows), path, row_group_size=2)
    found = read_object(describe(str(path), FileKind.PARQUET), ({"10.0.1.5"}, ("srcaddr", "dstaddr")),
                        ({"10.0.0.9"}, ("srcaddr", "dstaddr")))  # fmt: skip
    assert found.names == ("interface-id", "srcaddr", "dstaddr", "bytes", "start", "end", "action")
    assert found.records_read == 4 and found.warnings == []
    assert found.kept == [(4, ("eni-pod", "10.0.1.5", "52.1.1.1", "400", str(START), str(END), "ACCEPT"))]
    assert b"".join(found.collected_lines) == f"eni-nat 52.1.1.1 10.0.0.9 100 {START} {END} ACCEPT\n".encode()
    assert found.collected == [
        (2, ("eni-nat", "52.1.1.2", "10.0.0.9", None, str(START), str(END), "AC CEPT")),
        (3, ("eni-nat", "3.3.3.3", "10.0.0.9", "300", str(START), str(END), "")),
    ]

"""`reduce.columns_of`: the reduced rows as the attribution reads them, against the same columns
made in plain Python."""

from __future__ import annotations

from array import array
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natflow.flowlogs.reduce import RowKey, RowValue, columns_of

texts = st.sampled_from(["", "-", "52.1.2.3", "203.0.113.9", "AMAZON", "S3", "é"])
keys = st.tuples(
    st.sampled_from(["eni-0nat1", "eni-0nat2", "eni-0nat3"]),
    st.sampled_from(["10.0.32.5", "10.0.32.6", "2600:1f18::5"]),
    st.integers(0, 1),
    st.integers(0, 1 << 40),
    texts,
    texts,
)
values = st.lists(st.integers(0, 1 << 70), min_size=2, max_size=2).flatmap(
    lambda sums: st.tuples(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(-(1 << 63), (1 << 63) - 1)).map(
        lambda times: [sums[0], sums[1], times[0], times[1], 1]
    )
)


def codes(values: list[str]) -> tuple[list[str], list[int]]:
    distinct = list(dict.fromkeys(values))
    return distinct, [distinct.index(value) for value in values]


def int64s(column: bytearray) -> list[int]:
    return array("q", bytes(column)).tolist()


@given(st.dictionaries(keys, values, max_size=40))
def test_columns_are_the_rows_in_their_order(rows: dict[RowKey, RowValue]) -> None:
    columns = columns_of(rows)
    enis, eni_codes = codes([key[0] for key in rows])
    destinations, destination_codes = codes([key[5] or key[4] for key in rows])
    assert (columns.enis, int64s(columns.eni_codes)) == (enis, eni_codes)
    assert (columns.destinations, int64s(columns.destination_codes)) == (destinations, destination_codes)
    assert columns.addresses == [key[1] for key in rows]
    assert int64s(columns.directions) == [key[2] for key in rows]
    assert columns.peers == [key[4] for key in rows]
    assert columns.bytes == [value[0] for value in rows.values()]  # past 64 bits: Python ints
    assert columns.packets == [value[1] for value in rows.values()]
    assert int64s(columns.firsts) == [value[2] for value in rows.values()]
    assert int64s(columns.lasts) == [value[3] for value in rows.values()]


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ({("eni", "10.0.0.1", 0, 0, "", ""): [1, 1, 0, 0]}, TypeError),  # four values
        ({("eni", "10.0.0.1", 0, 0, ""): [1, 1, 0, 0, 1]}, TypeError),  # five key fields
        ({("eni", "10.0.0.1", "out", 0, "", ""): [1, 1, 0, 0, 1]}, TypeError),
        ({("eni", "10.0.0.1", 0, 0, "", ""): [1, 1, 1 << 63, 0, 1]}, OverflowError),
    ],
)
def test_rows_of_another_shape_are_refused(rows: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        columns_of(rows)

"""`readers.line_spans`, the one splitter of decompressed pieces into whole lines (the reference
reader's, natflow attribute's and natflow trace's text readers): every line once, in order; a line
too long to keep passed by as None; no buffer larger than a piece and one line."""

from __future__ import annotations

import io
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natflow.flowlogs import readers

BOUND = 16


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(st.integers(0, 3 * BOUND), max_size=12),
    last_newline=st.booleans(),
    cuts=st.lists(st.integers(0, 1000), max_size=12),
)
def test_each_line_once_and_long_ones_passed_by(lines: list[int], last_newline: bool, cuts: list[int]) -> None:
    written = [(b"%d " % number * BOUND)[:length] for number, length in enumerate(lines)]
    text = b"\n".join(written) + (b"\n" if last_newline and written else b"")
    bounds = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readers, "MAX_LINE_BYTES", BOUND)
        spans = list(readers.line_spans(pieces[0] if pieces else b"", iter(pieces[1:])))
    read: list[bytes | None] = []
    largest_piece = max(map(len, pieces), default=0)
    for span in spans:
        if span is None:
            read.append(None)
            continue
        data, start, end = span
        assert start < end and data[end - 1 : end] == b"\n"
        assert len(data) <= largest_piece + BOUND + 1  # a piece, or one line of at most BOUND joined
        read.extend(data[start : end - 1].split(b"\n"))
    expected = text.split(b"\n")
    if not expected[-1]:  # the text ends with its last newline (or is empty)
        expected.pop()
    assert len(read) == len(expected)
    for got, line in zip(read, expected, strict=True):
        assert got == line or (got is None and len(line) > BOUND)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.integers(0, 3 * BOUND), max_size=40), last_newline=st.booleans())
def test_the_reference_readers_lines_are_the_spans_lines(lines: list[int], last_newline: bool) -> None:
    """`raw_lines` (the reference reader's) reads a stream a block at a time through the same splitter:
    each line once, without its newline, and exactly the lines longer than the bound as None."""
    written = [(b"%d " % number * BOUND)[:length] for number, length in enumerate(lines)]
    text = b"\n".join(written) + (b"\n" if last_newline and written else b"")
    expected = text.split(b"\n")
    if not expected[-1]:
        expected.pop()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readers, "MAX_LINE_BYTES", BOUND)
        patch.setattr(readers, "_BLOCK_BYTES", 7)  # lines across blocks, long ones across several
        got = list(readers.raw_lines(io.BytesIO(text)))
    assert got == [line if len(line) <= BOUND else None for line in expected]

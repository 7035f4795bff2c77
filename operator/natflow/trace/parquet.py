"""natflow trace's reading of one Parquet object, in a decoder process (`flowlogs/decoders.py`), so
that pyarrow parsing damaged or hostile bytes can lose that object and never the trace.

The object is read with `natflow attribute`'s checks (`columnar.ParquetObject`: the footer's size,
thrift limits, page checksums, row counts against what the pages give; a damaged row group is lost
and said, the others are read). Of each batch, only the rows whose address columns hold one of the
addresses looked for are kept (`pyarrow.compute.is_in`), as text, and sent back (`records.ParquetRows`);
the rows collected for later (a gateway's internet legs: many) as text lines, as the text path collects them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.columnar import Damaged, ParquetObject, warn_damaged
from natflow.flowlogs.sources import FlowLogFile
from natflow.trace.records import TRACE_FIELDS, ParquetRows, Row

# What a trace looks for in some fields: (addresses, field names).
Looked = tuple[Collection[str], Sequence[str]]


def read_object(file: FlowLogFile, subject: Looked, collect: Looked | None) -> ParquetRows:
    """The object's rows whose `subject` fields hold one of its addresses (kept) and, of the others,
    those whose `collect` fields hold one of its (collected)."""
    notes = Diagnostics()
    try:
        parquet = ParquetObject(file)
    except Damaged as damage:
        warn_damaged(file, notes, str(damage), None)
        return ParquetRows(warnings=notes.items)
    names = tuple(name for name in TRACE_FIELDS if name in parquet.columns)
    rows = ParquetRows(names)

    def read(first: int, batch: pa.RecordBatch) -> None:
        mask = _mask(batch, names, subject)
        if mask is not None:
            rows.kept.extend(_rows(batch, first, pc.indices_nonzero(mask)))
        if collect is not None:
            others = _mask(batch, names, collect)
            if others is not None:
                if mask is not None:
                    others = pc.and_(others, pc.invert(mask))
                lines, odd = _as_lines(batch.filter(others))
                rows.collected_lines.append(lines)
                rows.collected.extend(_rows(batch, first, pc.indices_nonzero(others).take(odd)))
        rows.records_read += batch.num_rows

    found = parquet.read_batches(parquet.open(), [parquet.columns[name] for name in names], read)
    if found is not None:
        warn_damaged(file, notes, *found)
    rows.warnings = notes.items
    return rows


def _mask(batch: pa.RecordBatch, names: Sequence[str], looked: Looked) -> pa.Array | None:
    """Rows whose fields `looked[1]` (those the object has) hold one of the addresses `looked[0]`;
    None: the object has none of the fields."""
    addresses, fields = looked
    value_set = pa.array(sorted(addresses), pa.string())
    mask = None
    for name in fields:
        if name not in names:
            continue
        column = batch.column(names.index(name))
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        hit = pc.fill_null(pc.is_in(column, value_set=value_set), False)
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


def _rows(batch: pa.RecordBatch, first: int, positions: pa.Array) -> list[Row]:
    """The rows at `positions` of a batch whose first row is the object's row `first` (from 0)."""
    if not len(positions):
        return []
    columns = batch.take(positions).to_pydict()
    values = [[None if value is None else str(value) for value in column] for column in columns.values()]
    offsets = positions.to_pylist()
    return [(first + offset + 1, tuple(column[index] for column in values)) for index, offset in enumerate(offsets)]


def _as_lines(batch: pa.RecordBatch) -> tuple[bytes, pa.Array]:
    """The rows as text lines, their values separated by spaces and nulls written '-' (what the
    text path collects, made in C++: a busy gateway's internet legs are many), and the positions of
    the rows no line can hold (an empty value, or one with whitespace), which go as rows instead."""
    if not batch.num_rows:
        return b"", pa.array([], pa.int64())
    texts = [pc.fill_null(column.cast(pa.string()), "-") for column in batch.columns]
    odd = None
    for text in texts:
        bad = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.match_substring_regex(text, r"\s"))
        odd = bad if odd is None else pc.or_(odd, bad)
    assert odd is not None  # a batch of the trace fields has columns
    lines = pc.binary_join_element_wise(*texts, " ").filter(pc.invert(odd))
    ended = pc.binary_join_element_wise(lines, pa.array([""] * len(lines), pa.string()), "\n")
    _, offsets, data = ended.buffers()
    if data is None:
        return b"", pc.indices_nonzero(odd)
    bounds = memoryview(offsets).cast("i")
    return memoryview(data)[bounds[ended.offset] : bounds[ended.offset + len(ended)]].tobytes(), pc.indices_nonzero(odd)

"""A bounded mutation fuzzer over Parquet objects through the default reader (decoder processes,
pyarrow, the compiled scanner, the reference fallback): seeded byte flips, truncations, splices
and overwrites of good objects, each read as `natflow attribute` reads a file. Whatever the bytes:
no exception escapes, the object's records read and bytes counted never exceed what was written,
and whenever records or bytes are missing a warning names the object."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import vectorised
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.reduce import BYTES, NatTopology, Reduction
from natflow.flowlogs.sources import FileKind, describe
from natflow.net import CidrSet
from tests.parquet_damage import ROWS, footer, table, write

NAME = "123456789012_vpcflowlogs_us-east-1_fl-0abc_20261121T1000Z_{}.log.parquet"
TOPOLOGY = NatTopology({"eni-nat1": "nat-1"}, {"10.0.0.221": "eni-nat1"}, CidrSet(["10.0.0.0/16"]))
WRITTEN_BYTES = sum(1000 + index for index in range(ROWS))
CASES = 400  # about 15 s on the development machine
TIME_BUDGET = 30.0


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: flips in the footer, flips anywhere, a truncation, a span copied over another, zeros."""
    out = bytearray(data)
    footer_start, _ = footer(data)
    kind = rng.randrange(5)
    if kind == 0:
        for _ in range(rng.randint(1, 3)):
            out[rng.randrange(footer_start, len(out) - 8)] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == 2:
        del out[rng.randrange(len(out)) :]
    elif kind == 3:
        length = rng.randint(1, 64)
        source, target = rng.randrange(len(out) - length), rng.randrange(len(out) - length)
        out[target : target + length] = data[source : source + length]
    else:
        start = rng.randrange(len(out))
        out[start : start + rng.randint(1, 32)] = bytes(rng.randint(1, 32))
    return bytes(out)


@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_mutated_parquet_never_escapes_nor_inflates(tmp_path: Path, page_version: str) -> None:
    good = write(table("eni-nat1", "10.0.0.221", "10.0.1"), tmp_path / "good.parquet", data_page_version=page_version)
    data = good.read_bytes()
    rng = random.Random(f"natflow-parquet-{page_version}")
    path = tmp_path / NAME.format("mutant")
    file = describe(str(path), FileKind.PARQUET)
    path.write_bytes(data)
    reduction = Reduction(TOPOLOGY, None)
    vectorised.read_file_vectorised(file, FormatChoices(), reduction, Diagnostics())
    assert reduction.stats.records_counted == ROWS  # the good object, whole
    damaged = ran = 0
    started = time.monotonic()
    for case in range(CASES // 2):
        if time.monotonic() - started > TIME_BUDGET / 2:
            break  # a loaded machine runs fewer cases, each as strict
        ran += 1
        path.write_bytes(mutate(data, rng))
        reduction, diagnostics = Reduction(TOPOLOGY, None), Diagnostics()
        vectorised.read_file_vectorised(file, FormatChoices(), reduction, diagnostics)
        counted = sum(row[BYTES] for row in reduction.rows.values())
        named = any(str(path) in item.message for item in diagnostics.items)
        assert reduction.stats.records_read <= ROWS, case
        assert counted <= WRITTEN_BYTES, case
        if reduction.stats.records_read < ROWS or counted < WRITTEN_BYTES:
            assert named, (case, [item.message for item in diagnostics.items])
            damaged += 1
    assert ran >= 20 and damaged > ran // 10  # the mutations reach what is read

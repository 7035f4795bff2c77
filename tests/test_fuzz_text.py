"""A mutation fuzzer over gzip (and plain) text flow-log objects, through the whole default reader.

Each case damages a good object one way or several (bits flipped in the compressed bytes, cut short,
bytes inserted, members appended; or, in the text before gzip, huge numbers, NULs, CRs, lines joined,
runs without a newline) and reads it with the default (vectorised) reader and the reference reader:
neither may raise, both must give the same reduction and warnings, and no reduced row may hold more
than its records can carry. Cases are seeded: a failure names the seed and the case, and
``NATFLOW_FUZZ_SEED=<seed> NATFLOW_FUZZ_CASES=<case + 1>`` replays it. The run is bounded by
``NATFLOW_FUZZ_SECONDS`` (default 20).
"""

from __future__ import annotations

import gzip
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from natflow.flowlogs.fields import MAX_LINE_BYTES
from natflow.flowlogs.plausible import MAX_RECORD_BYTES
from natflow.flowlogs.sources import FileKind, describe
from tests.test_vectorised import NAME, RECOMMENDED, WINDOW, assert_same, clean_lines, header, small_chunks

SEED = int(os.environ.get("NATFLOW_FUZZ_SEED", "20261121"))
SECONDS = float(os.environ.get("NATFLOW_FUZZ_SECONDS", "20"))
CASES = int(os.environ.get("NATFLOW_FUZZ_CASES", "1000000"))

Mutation = Callable[[random.Random, bytes], bytes]


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if damaged:
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def _cut(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]


def _append(rng: random.Random, data: bytes) -> bytes:
    tail = rng.choice([b"\x1f\x8b" + rng.randbytes(20), bytes(rng.randint(1, 32)), gzip.compress(rng.randbytes(50))])
    return data + tail


COMPRESSED: list[Mutation] = [_flip_bits, _cut, _insert, _append]

ODD_TOKENS = [
    str(2**64), "1" + "0" * 400, "9" * 5000, str(10**17), str(MAX_RECORD_BYTES + 1), "-", "", "\x00", "\r", "\r\n",
    "é", "\t", "2147483648", "99999999999", "100000000000", "0" * 30, "NODATA", "REJECT",
]  # fmt: skip


def _odd_field(rng: random.Random, text: bytes) -> bytes:
    lines = text.split(b"\n")
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(lines))
        fields = lines[at].split(b" ")
        fields[rng.randrange(len(fields))] = rng.choice(ODD_TOKENS).encode()
        lines[at] = b" ".join(fields)
    return b"\n".join(lines)


def _join_lines(rng: random.Random, text: bytes) -> bytes:
    at = text.find(b"\n", rng.randrange(len(text) + 1))
    return text if at < 0 else text[:at] + rng.choice([b"", b" ", b"\r"]) + text[at + 1 :]


def _long_run(rng: random.Random, text: bytes) -> bytes:
    at = rng.randrange(len(text) + 1)
    length = rng.choice([MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1, 3 * MAX_LINE_BYTES])
    return text[:at] + rng.choice([b"7", b" ", b"\x00", b"ab "]) * length + text[at:]


def _repeat_line(rng: random.Random, text: bytes) -> bytes:
    lines = text.split(b"\n")
    at = rng.randrange(len(lines))
    return b"\n".join(lines[:at] + [lines[at]] * rng.randint(2, 300) + lines[at:])


TEXTUAL: list[Mutation] = [_odd_field, _join_lines, _long_run, _repeat_line, _insert]


def mutated_object(rng: random.Random) -> tuple[bytes, bool]:
    """A damaged object and whether it is gzip."""
    lines = clean_lines(rng.randint(1, 120), RECOMMENDED, seed=rng.randrange(1000))
    text = ("\n".join([header(RECOMMENDED), *lines]) + "\n").encode()
    for _ in range(rng.randint(0, 3)):
        text = rng.choice(TEXTUAL)(rng, text)
    if rng.random() < 0.2:
        return text, False
    packed = gzip.compress(text, compresslevel=rng.choice([1, 6, 9]), mtime=0)
    if rng.random() < 0.7:
        packed = rng.choice(COMPRESSED)(rng, packed)
    return packed, True


def test_mutated_text_objects_read_as_the_reference_reads_them() -> None:
    deadline = time.monotonic() + SECONDS
    case = 0
    with tempfile.TemporaryDirectory() as directory:
        while case < CASES and time.monotonic() < deadline:
            rng = random.Random(f"{SEED}-{case}")
            content, gzipped = mutated_object(rng)
            path = Path(directory) / f"{NAME}.log{'.gz' if gzipped else ''}"
            path.write_bytes(content)
            file = describe(str(path), FileKind.TEXT)
            try:
                with small_chunks(text_bytes=rng.choice([256, 4096, 1 << 20])):
                    expected = assert_same([file], window=WINDOW if rng.random() < 0.3 else None)
                for row in expected.rows.values():
                    assert row[0] <= row[4] * MAX_RECORD_BYTES
            except BaseException as error:
                raise AssertionError(f"NATFLOW_FUZZ_SEED={SEED} case {case}: {error!r}") from error
            path.unlink()
            case += 1
    assert case >= min(CASES, 20), f"only {case} cases in {SECONDS} s"

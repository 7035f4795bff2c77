"""A line longer than any record in a text object: `natflow trace` passes it by without keeping it
(memory stays that of a small object), counts it as one malformed record, and still finds the
records on both sides of it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from natflow.cli import main
from tests.trace.world import Connection, add_connection, build_world, write_flow_logs

LONG_LINE_BYTES = 50 << 20

# A child process, so that its peak resident memory is the trace's alone.
TRACE_CHILD = """
import contextlib, io, resource, sys
from natflow.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_memory(args: list[str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", TRACE_CHILD, *args],
        capture_output=True, text=True, check=True, timeout=300, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    return int(done.stdout)


def with_long_line(path: Path, members: int) -> int:
    """The object again, with a 50 MB line (no newline in it) between its first records and the rest
    (in a gzip member of their own when `members` is 2); the long line's number."""
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    middle = len(lines) // 2
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        if members == 2:
            out.write(gzip.compress(b"".join(lines[:middle])))
        else:
            out.write(packer.compress(b"".join(lines[:middle])))
        chunk = b"7" * (1 << 20)
        for _ in range(LONG_LINE_BYTES // len(chunk)):
            out.write(packer.compress(chunk))
        out.write(packer.compress(b"\n" + b"".join(lines[middle:])))
        out.write(packer.flush())
    return middle + 1


@pytest.mark.parametrize("members", [1, 2])  # 2: the gzip module's way (`_read_text_plain`)
def test_a_50_mb_line_is_one_malformed_record_and_memory_stays_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], members: int
) -> None:
    world, maker = build_world(tmp_path)
    for minute in range(4):
        add_connection(world, maker, Connection(minute + 5, client_port=40_001 + minute, nat_port=20_001 + minute))
    path = write_flow_logs(world, maker.records)
    args = [*world.args, "--pod", world.pod.key]
    assert main(args) == 0
    expected = json.loads(capsys.readouterr().out)
    base = peak_memory(args)

    number = with_long_line(path, members)
    assert main(args) == 0, capsys.readouterr().err
    document = json.loads(capsys.readouterr().out)
    assert document["conversations"] == expected["conversations"]  # the records on both sides of the line
    assert len(document["conversations"][0]["legs"]) == len(world.records)
    assert document["stats"]["malformedRecords"] == expected["stats"]["malformedRecords"] + 1
    assert document["stats"]["recordsRead"] == expected["stats"]["recordsRead"] + 1
    malformed = [w["message"] for w in document["warnings"] if "could not be read" in w["message"]]
    assert malformed and f"{path}:{number}" in malformed[0]
    assert "longer than any record" in malformed[0]

    peak = peak_memory(args)
    assert peak - base < 32 << 20, f"{(peak - base) >> 20} MB more than without the long line"

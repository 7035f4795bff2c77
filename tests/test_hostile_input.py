"""Damaged and hostile S3 text objects (issue 11): implausible numbers, lines longer than any record,
objects that are not what their name says, the same file given twice, files that are no regular
files. Each is read beside a good object: the run goes on, the good totals stay, the bad one is named,
and the compiled scanner decides every record as the reference reader does.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natflow.aws.flowsource import local_name, read_s3_objects, window_objects
from natflow.aws.inventory import FlowLog
from natflow.cli import main
from natflow.diagnostics import Diagnostics
from natflow.flowlogs import readers, textscan
from natflow.flowlogs.fields import MAX_LINE_BYTES
from natflow.flowlogs.plausible import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_RECORD_BYTES,
    MAX_RECORD_PACKETS,
    OBJECT_TIME_SLACK,
    time_bounds,
)
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.reduce import Reduction
from natflow.flowlogs.sources import FileKind, describe, discover
from natflow.paths import not_regular, os_reason
from natflow.timeutil import flow_seconds
from tests.test_vectorised import (
    FIRST,
    NAME,
    RECOMMENDED,
    TOPOLOGY,
    WINDOW,
    assert_same,
    clean_lines,
    counting_reference_calls,
    header,
    record_line,
    small_chunks,
    write_text,
)

KEY_FIRST, KEY_LAST = FIRST, FIRST + 299  # the time NAME says


# -- numbers no network produces -----------------------------------------------------------------------


def test_the_bounds_follow_from_their_reasons() -> None:
    fastest, interval = 3_200e9 / 8, 600 + 60  # bytes a second; the longest interval and its capture lag
    assert 3 * fastest * interval < MAX_RECORD_BYTES < 2**63
    assert MAX_RECORD_PACKETS * 20 == MAX_RECORD_BYTES
    assert time_bounds(None) == (EARLIEST_TIME, LATEST_TIME)
    assert time_bounds((KEY_FIRST, KEY_LAST)) == (KEY_FIRST - OBJECT_TIME_SLACK, KEY_LAST + OBJECT_TIME_SLACK)
    assert time_bounds((0, 0)) == (EARLIEST_TIME, EARLIEST_TIME)  # a key from 1970: no record fits
    assert flow_seconds(2**31 + 100) == 2**31 + 100  # 2038: seconds, not milliseconds
    assert flow_seconds(FIRST * 1000 + 999) == FIRST


IMPLAUSIBLE = {
    "bytes 2^64": {"bytes": str(2**64)},
    "bytes one past the bound": {"bytes": str(MAX_RECORD_BYTES + 1)},
    "packets one past the bound": {"packets": str(MAX_RECORD_PACKETS + 1)},
    "bytes 10^400": {"bytes": "1" + "0" * 400},
    "bytes of 5000 digits": {"bytes": "9" * 5000},
    "start 10^17": {"start": str(10**17)},
    "end of 5000 digits": {"end": "7" * 5000},
    "start a day and a second before the key": {"start": str(KEY_FIRST - OBJECT_TIME_SLACK - 1)},
    "end a day and a second after the key": {"end": str(KEY_LAST + OBJECT_TIME_SLACK + 1)},
    "start after 2038, years after the key": {"start": str(2**31 + 100)},
    "start in 1970": {"start": "7"},
}
PLAUSIBLE = {
    "bytes at the bound": {"bytes": str(MAX_RECORD_BYTES), "packets": str(MAX_RECORD_PACKETS)},
    "zeros before a small number": {"bytes": "0" * 5000 + "1500"},
    "start a day before the key": {"start": str(KEY_FIRST - OBJECT_TIME_SLACK)},
    "end a day after the key": {"end": str(KEY_LAST + OBJECT_TIME_SLACK)},
    "milliseconds": {"start": str(FIRST * 1000 + 60_000), "end": str(FIRST * 1000 + 70_999)},
}


@pytest.mark.parametrize("case", sorted(IMPLAUSIBLE))
def test_implausible_numbers_are_malformed_records(tmp_path: Path, case: str) -> None:
    lines = [record_line(), record_line(**IMPLAUSIBLE[case]), record_line()]
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    expected = assert_same([file])
    assert expected.stats.malformed_records == 1 and expected.stats.records_counted == 2
    assert expected.stats.malformed_examples[0].startswith(f"{file.path}:3: ")
    assert len(expected.stats.malformed_examples[0]) - len(file.path) < 250  # 5,000 digits are not repeated
    assert sum(row[0] for row in expected.rows.values()) == 3000


@pytest.mark.parametrize("case", sorted(PLAUSIBLE))
def test_plausible_numbers_at_the_bounds_are_counted(tmp_path: Path, case: str) -> None:
    lines = [record_line(**PLAUSIBLE[case]) for _ in range(3)]
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    with counting_reference_calls() as calls:
        expected = assert_same([file])
    assert expected.stats.malformed_records == 0 and expected.stats.records_counted == 3
    if "zeros" not in case:  # more digits than the scanner reads: the reference adds it
        assert calls == []


def test_without_a_key_time_the_absolute_range_holds(tmp_path: Path) -> None:
    """A start after 2038 is seconds; before 2015 or after 2100 no record was written."""
    after_2038 = 2**31 + 3600
    lines = [
        record_line(start=str(after_2038), end=str(after_2038 + 10)),
        record_line(start=str(EARLIEST_TIME - 1)),
        record_line(end=str(LATEST_TIME + 1)),
    ]
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=False, name="no-time-in-this-name")
    assert file.key_time is None
    expected = assert_same([file])
    assert expected.stats.malformed_records == 2
    assert [(row[2], row[3]) for row in expected.rows.values()] == [(after_2038, after_2038 + 10)]


NUMBER_TEXTS = st.one_of(
    st.integers(0, 2**70).map(str),
    st.sampled_from(
        [str(v + d) for v in (MAX_RECORD_BYTES, MAX_RECORD_PACKETS, 10**18, 2**63, 2**64) for d in (-1, 0, 1)]
        + ["-", "0" * 30 + "5", "9" * 19, "9" * 21]
    ),
)
TIME_TEXTS = st.one_of(
    st.integers(KEY_FIRST - 2 * OBJECT_TIME_SLACK, KEY_LAST + 2 * OBJECT_TIME_SLACK).map(str),
    st.integers(0, 10**20).map(str),
    st.sampled_from(
        [str(t + d) for t in (KEY_FIRST - OBJECT_TIME_SLACK, KEY_LAST + OBJECT_TIME_SLACK) for d in (-1, 0, 1)]
        + [str(t * 1000 + d) for t in (KEY_FIRST - OBJECT_TIME_SLACK, KEY_LAST + OBJECT_TIME_SLACK) for d in (-1, 0)]
        + ["99999999999", "100000000000", str(2**31), "-"]
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {"packets": NUMBER_TEXTS, "bytes": NUMBER_TEXTS, "start": TIME_TEXTS, "end": TIME_TEXTS},
            optional={"action": st.sampled_from(["REJECT", "ACCEPT"]), "log-status": st.sampled_from(["NODATA"])},
        ),
        min_size=1,
        max_size=20,
    ),
    keyed=st.booleans(),
    windowed=st.booleans(),
)
def test_the_scanner_applies_the_bounds_as_the_reference_does(
    records: list[dict[str, str]], keyed: bool, windowed: bool
) -> None:
    lines = [header(RECOMMENDED), *(record_line(**fields) for fields in records)]
    with tempfile.TemporaryDirectory() as directory:
        file = write_text(Path(directory), lines, gzipped=True, name=NAME if keyed else "unkeyed")
        assert_same([file], window=WINDOW if windowed else None)


# -- lines longer than any record ------------------------------------------------------------------------


def long_line_file(directory: Path, long_line: bytes, at: int, gzipped: bool = True) -> Any:
    lines = [line.encode() for line in clean_lines(300, RECOMMENDED, ipv4_only=True)]
    body = b"\n".join([header(RECOMMENDED).encode(), *lines[:at], long_line, *lines[at:]]) + b"\n"
    path = directory / f"{NAME}.log{'.gz' if gzipped else ''}"
    path.write_bytes(gzip.compress(body, 1) if gzipped else body)
    return describe(str(path), FileKind.TEXT), len(lines)


LONG_LINES = {
    "a record's text, repeated": (record_line() + " ").encode() * (MAX_LINE_BYTES // 100),
    "one field": b"x" * (MAX_LINE_BYTES + 1),
    "spaces only": b" " * (MAX_LINE_BYTES + 1),
    "carriage returns": b"\r".join([record_line().encode()] * (MAX_LINE_BYTES // 100)),
    "a valid record padded": record_line(**{"pkt-dstaddr": "p" * 60_000, "pkt-dst-aws-service": "S" * 60_000}).encode(),
}


@pytest.mark.parametrize("label", sorted(LONG_LINES))
@pytest.mark.parametrize("piece", [700, 1 << 20])  # lines across many pieces, and inside one
def test_a_line_longer_than_any_record_is_one_malformed_record(tmp_path: Path, label: str, piece: int) -> None:
    long_line = LONG_LINES[label]
    assert len(long_line) > MAX_LINE_BYTES
    file, records = long_line_file(tmp_path, long_line, at=150)
    with small_chunks(text_bytes=piece):
        expected = assert_same([file])
    assert expected.stats.records_read == records + 1 and expected.stats.malformed_records == 1
    assert expected.stats.malformed_examples == [
        f"{file.path}:152: a line longer than any record ({MAX_LINE_BYTES} bytes); skipped"
    ]


@pytest.mark.parametrize("where", ["first", "last, without newline"])
def test_a_long_first_or_last_line(tmp_path: Path, where: str) -> None:
    long_line = b"9" * (MAX_LINE_BYTES * 2)
    lines = [line.encode() for line in clean_lines(100, RECOMMENDED, ipv4_only=True)]
    body = b"\n".join([long_line, *lines]) if where == "first" else b"\n".join([header(RECOMMENDED).encode(), *lines])
    if where != "first":
        body += b"\n" + long_line
    path = tmp_path / f"{NAME}.log.gz"
    path.write_bytes(gzip.compress(body, 1))
    with small_chunks(text_bytes=5000):
        expected = assert_same([describe(str(path), FileKind.TEXT)])
    assert expected.stats.malformed_examples[0].endswith(f"({MAX_LINE_BYTES} bytes); skipped")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(0, 130), min_size=1, max_size=40),
    fill=st.sampled_from([b"a", b" ", b"\r", b"1 ", b"\x00"]),
    piece=st.sampled_from([64, 97, 400]),
)
def test_any_mix_of_line_lengths_reads_as_the_reference(lengths: list[int], fill: bytes, piece: int) -> None:
    """With a small bound (64 bytes), lines of every length around it, across pieces of any size."""
    record = b"10.0.32.5 10.0.1.10 " * 8  # client legs (no interface-id: the NAT IP says the ENI), cut anywhere
    lines = [record[:n] if n % 3 else fill * n for n in lengths]
    with (
        tempfile.TemporaryDirectory() as directory,
        small_chunks(text_bytes=piece),
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(readers, "MAX_LINE_BYTES", 64)
        patch.setattr(textscan, "MAX_LINE_BYTES", 64)
        path = Path(directory) / f"{NAME}.log"
        path.write_bytes(b"srcaddr dstaddr\n" + b"\n".join(lines))
        assert_same([describe(str(path), FileKind.TEXT)])


MEMORY_CHILD = """
import resource, sys
from natflow.diagnostics import Diagnostics
from natflow.flowlogs import vectorised
from natflow.flowlogs.readers import READERS, FormatChoices
from natflow.flowlogs.reduce import Reduction
from natflow.flowlogs.sources import FileKind, describe
from tests.test_vectorised import TOPOLOGY
read = vectorised.read_file_vectorised if sys.argv[2] == "vectorised" else READERS[FileKind.TEXT]
reduction = Reduction(TOPOLOGY)
read(describe(sys.argv[1], FileKind.TEXT), FormatChoices(), reduction, Diagnostics())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, reduction.stats.malformed_records)
"""


def peak_memory(path: Path, reader: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path), reader],
        capture_output=True, text=True, check=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    peak, malformed = done.stdout.split()
    return int(peak), int(malformed)


@pytest.mark.parametrize("reader", ["vectorised", "reference"])
def test_50_mb_without_a_newline_keeps_memory_bounded(tmp_path: Path, reader: str) -> None:
    """A gzip of 50 MB of zeros (no newline) is one malformed line; memory stays that of a small file."""
    zeros = tmp_path / f"{NAME}.log.gz"
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with zeros.open("wb") as out:
        chunk = bytes(1 << 20)
        for _ in range(50):
            out.write(packer.compress(chunk))
        out.write(packer.flush())
    small = tmp_path / "small" / f"{NAME}.log.gz"
    small.parent.mkdir()
    small.write_bytes(gzip.compress(b"\x00" * 1000))
    base, _ = peak_memory(small, reader)
    peak, malformed = peak_memory(zeros, reader)
    assert malformed == 1
    assert peak - base < 48 << 20, f"{(peak - base) >> 20} MB more than for a small file"


# -- objects that are not what their name says ---------------------------------------------------------------


def test_not_gzip_and_binary_objects_are_named_and_not_read(tmp_path: Path) -> None:
    text = (header(RECOMMENDED) + "\n" + record_line() + "\n").encode()
    objects = {
        f"{NAME}-plain.log.gz": (text, "not gzip (named .gz, it starts with b've')"),
        f"{NAME}-empty.log.gz": (b"", "not gzip (named .gz, it is empty)"),
        f"{NAME}-parquet.log": (b"PAR1" + bytes(20), "Parquet data, not a text flow log"),
        f"{NAME}-zstd.log.gz": (b"\x28\xb5\x2f\xfd" + bytes(20), "zstd data, not a text flow log"),
    }
    for name, (content, problem) in objects.items():
        path = tmp_path / name
        path.write_bytes(content)
        expected = assert_same([describe(str(path), FileKind.TEXT)])
        assert expected.warnings == [
            {"reason": "DamagedFlowLog", "message": f"{path}: {problem}; not read", "file": str(path)}
        ]
        assert expected.stats.records_read == 0


def test_a_gzip_named_log_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / f"{NAME}.log"
    path.write_bytes(gzip.compress((header(RECOMMENDED) + "\n" + record_line() + "\n").encode()))
    expected = assert_same([describe(str(path), FileKind.TEXT)])
    assert expected.stats.records_counted == 1 and expected.warnings == []


# -- each file once; only regular files ------------------------------------------------------------------------


def test_a_file_met_twice_is_read_once(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "inner"
    folder.mkdir(parents=True)
    first = folder / f"{NAME}.log"
    first.write_text(record_line() + "\n")
    (tmp_path / "link.log").symlink_to(first)
    os.link(first, tmp_path / "hard.log")
    diagnostics = Diagnostics()
    given = [str(first), str(first), str(tmp_path / "logs"), str(folder), str(tmp_path / "link.log"), str(tmp_path)]
    found, passed_over = discover(given, diagnostics)
    assert [f.path for f in found] == [str(first)]
    assert len(passed_over) == 7  # and one warning for each path met again (the same path is said once)
    assert sorted(Path(d.message.split(":")[0]).name for d in diagnostics.items) == [
        NAME + ".log",
        "hard.log",
        "link.log",
    ]
    assert {d.reason for d in diagnostics.items} == {"DuplicateFlowLog"}
    assert all(d.message.endswith(f"the same file as {first}; read once") for d in diagnostics.items)


def test_what_is_no_regular_file_is_skipped_and_said_what_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / f"{NAME}.log").write_text(record_line() + "\n")
    os.mkfifo(folder / "a-fifo.log")
    (folder / "loop.log").symlink_to(folder / "loop.log")
    (folder / "broken.log").symlink_to(folder / "nowhere.log")
    diagnostics = Diagnostics()
    found, _ = discover([str(folder)], diagnostics)
    assert [Path(f.path).name for f in found] == [f"{NAME}.log"]
    assert sorted(d.message for d in diagnostics.items) == [
        f"{folder / 'a-fifo.log'}: a FIFO, not a regular file; skipped",
        f"{folder / 'broken.log'}: a broken symbolic link; skipped",
        f"{folder / 'loop.log'}: a loop of symbolic links; skipped",
    ]
    assert not_regular(str(folder)) == "a directory"
    assert not_regular("/dev/null") == "a device, not a regular file"
    with pytest.raises(FileNotFoundError, match="a FIFO, not a regular file"):
        discover([str(folder / "a-fifo.log")], Diagnostics())


def test_os_errors_are_said_as_what_they_are() -> None:
    assert os_reason(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    assert os_reason(OSError(errno.ELOOP, "Too many levels of symbolic links")) == "a loop of symbolic links"
    assert os_reason(OSError(errno.EIO, "Input/output error")) == "input/output error"


@pytest.mark.parametrize(
    ("error", "said"),
    [(errno.EACCES, "permission denied"), (errno.ELOOP, "a loop of symbolic links"), (errno.EIO, "input/output error")],
)
def test_an_object_that_cannot_be_opened_is_said_so(tmp_path: Path, error: int, said: str) -> None:
    """Not "truncated or corrupt": what the system said (tests run as root, who opens any file)."""
    path = tmp_path / f"{NAME}.log.gz"
    path.write_bytes(gzip.compress(record_line().encode()))

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        raise OSError(error, os.strerror(error), name)

    with pytest.MonkeyPatch.context() as patch:
        for module in (readers, textscan):
            patch.setattr(module, "open", refuse, raising=False)  # the module's open, before the builtin
        expected = assert_same([describe(str(path), FileKind.TEXT)])
    assert expected.warnings == [
        {"reason": "UnreadableFlowLog", "message": f"{path}: cannot be read: {said}", "file": str(path)}
    ]


# -- through the command line: a corpus of damaged objects, each beside a good one --------------------------------

NAT = {
    "NatGateways": [
        {
            "NatGatewayId": "nat-1",
            "VpcId": "vpc-1",
            "NatGatewayAddresses": [{"NetworkInterfaceId": "eni-0nat1", "PrivateIp": "10.0.1.10"}],
        }
    ]
}
VPC = {"Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}]}
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "u-1",
        "resourceVersion": "5",
        "creationTimestamp": "2026-11-20T00:00:00Z",
    },
    "spec": {"nodeName": "node-1"},
    "status": {
        "phase": "Running",
        "podIP": "10.0.32.5",
        "podIPs": [{"ip": "10.0.32.5"}],
        "startTime": "2026-11-20T00:00:00Z",
    },
}


def good_body() -> bytes:
    lines = [header(RECOMMENDED), *(record_line(bytes=str(1000 + i)) for i in range(200))]
    return ("\n".join(lines) + "\n").encode()


GOOD_BYTES = sum(1000 + i for i in range(200))


def corpus() -> dict[str, tuple[bytes, str]]:
    """Damaged objects: name suffix -> (content, what a warning or malformed example says)."""
    body = good_body()
    packed = gzip.compress(body, mtime=0)
    lines = body.split(b"\n")
    return {
        "truncated.log.gz": (packed[: len(packed) // 2], "DamagedFlowLog"),
        "bad-crc.log.gz": (packed[:-8] + bytes(8), "DamagedFlowLog"),
        "garbage-member.log.gz": (packed + b"\x1f\x8b" + bytes(30), "DamagedFlowLog"),
        "not-gzip.log.gz": (body, "not gzip"),
        "nul-bytes.log.gz": (gzip.compress(body.replace(b" 3 1", b" 3\x00 1", 5)), "MalformedRecords"),
        "huge-line.log.gz": (gzip.compress(lines[0] + b"\n" + b"7" * (3 << 20) + b"\n"), "line longer"),
        "implausible.log.gz": (
            gzip.compress(
                b"\n".join(
                    [lines[0]]
                    + [
                        record_line(**fields).encode()
                        for fields in (
                            {"bytes": str(2**64)},
                            {"bytes": "1" + "0" * 400},
                            {"packets": "9" * 5000},
                            {"start": str(10**17)},
                            {"start": str(2**31 + 1)},
                        )
                    ]
                )
            ),
            "MalformedRecords",
        ),
        "cr-line-ends.log": (body.replace(b"\n", b"\r\n"), ""),
        "binary.log": (b"PK\x03\x04" + bytes(100), "zip data"),
    }


@pytest.fixture
def cli_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "aws").mkdir()
    (tmp_path / "aws" / "nat.json").write_text(json.dumps(NAT))
    (tmp_path / "aws" / "vpc.json").write_text(json.dumps(VPC))
    (tmp_path / "cluster.json").write_text(json.dumps({"kind": "List", "items": [POD]}))
    good = tmp_path / "logs" / "good" / f"{NAME}.log.gz"
    good.parent.mkdir(parents=True)
    good.write_bytes(gzip.compress(good_body(), mtime=0))
    return {"cluster": tmp_path / "cluster.json", "aws": tmp_path / "aws", "good": good}


def attribute(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], *flow_logs: Path, reader: str) -> Any:
    argv = ["attribute", "--cluster", str(inputs["cluster"]), "--aws", str(inputs["aws"]), "-o", "json"]
    code = main([*argv, "--reader", reader, "--flow-logs", *(str(p) for p in flow_logs)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    return json.loads(captured.out)


@pytest.mark.parametrize("reader", ["vectorised", "reference"])
def test_each_damaged_object_beside_a_good_one(
    cli_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], reader: str
) -> None:
    alone = attribute(cli_inputs, capsys, cli_inputs["good"], reader=reader)
    assert alone["natGateways"][0]["bytesOut"] == GOOD_BYTES
    for suffix, (content, said) in corpus().items():
        bad = cli_inputs["good"].parent.parent / "bad" / f"{NAME}-{suffix}"
        bad.parent.mkdir(exist_ok=True)
        bad.write_bytes(content)
        document = attribute(cli_inputs, capsys, cli_inputs["good"], bad, reader=reader)
        gateway = document["natGateways"][0]
        if suffix.startswith("cr-line-ends"):  # CR LF is a line end: the same records once more
            assert gateway["bytesOut"] == 2 * GOOD_BYTES, suffix
            continue
        if suffix.startswith(("truncated", "bad-crc", "garbage")):  # records before the damage are kept
            assert GOOD_BYTES <= gateway["bytesOut"] <= 2 * GOOD_BYTES, suffix
        else:
            assert gateway["bytesOut"] <= 2 * GOOD_BYTES, suffix
        if suffix.startswith(("not-gzip", "huge", "implausible", "binary")):
            assert gateway["bytesOut"] == GOOD_BYTES, suffix
        malformed = {"huge-line.log.gz": 1, "implausible.log.gz": 5, "nul-bytes.log.gz": 5}
        if suffix in malformed:
            assert document["stats"]["malformedRecords"] == malformed[suffix], suffix
        messages = [json.dumps(w) for w in document["warnings"]]
        assert any(bad.name in m and said in m for m in messages), (suffix, messages)
        assert document["stats"]["filesRead"] == 2
        bad.unlink()


def test_the_same_object_twice_counts_once(cli_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good = cli_inputs["good"]
    document = attribute(cli_inputs, capsys, good, good, good.parent, good.parent.parent, reader="vectorised")
    assert document["natGateways"][0]["bytesOut"] == GOOD_BYTES
    assert document["stats"]["filesRead"] == 1 and document["stats"]["filesSkipped"] == 3
    assert [w["reason"] for w in document["warnings"]].count("DuplicateFlowLog") == 1  # one path, said once


def test_a_fifo_in_a_folder_does_not_block(cli_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(cli_inputs["good"].parent / "waiting.log.gz")
    os.mkfifo(cli_inputs["aws"] / "waiting.json")
    cluster = cli_inputs["cluster"].parent / "cluster"
    cluster.mkdir()
    cli_inputs["cluster"] = cli_inputs["cluster"].rename(cluster / "cluster.json").parent
    os.mkfifo(cluster / "waiting-pods.json")
    document = attribute(cli_inputs, capsys, cli_inputs["good"].parent, reader="vectorised")
    assert document["natGateways"][0]["bytesOut"] == GOOD_BYTES
    skipped = {w["reason"]: w["message"] for w in document["warnings"] if "a FIFO, not a regular file" in w["message"]}
    assert {reason: Path(m.split(":")[0]).name for reason, m in skipped.items()} == {
        "AwsFileUnreadable": "waiting.json",
        "FileSkipped": "waiting.log.gz",
        "ClusterFileUnreadable": "waiting-pods.json",
    }


# -- the operator's S3 window ---------------------------------------------------------------------------------


class ListedTwice:
    """An S3 client whose listing yields every key twice (a repeated page); objects are bytes."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_paginator(self, name: str) -> ListedTwice:
        return self

    def paginate(self, Bucket: str, Prefix: str) -> Any:
        page = [{"Key": key, "Size": len(body)} for key, body in self.objects.items() if key.startswith(Prefix)]
        yield {"Contents": page}
        yield {"Contents": page}

    def download_fileobj(self, bucket: str, key: str, handle: Any) -> None:
        handle.write(self.objects[key])


def test_the_s3_window_reads_each_object_once_under_its_own_name() -> None:
    prefix = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/21/"
    good_key = f"{prefix}{NAME}.log.gz"
    plain_key = f"{prefix}{NAME.replace('_0001', '_0002')}.log.gz"
    s3 = ListedTwice({good_key: gzip.compress(good_body()), plain_key: good_body()})
    flow_log = FlowLog(FlowLogId="fl-0abc", LogDestinationType="s3", LogDestination="arn:aws:s3:::bucket")
    objects = window_objects(s3, flow_log, "123456789012", "us-east-1", (FIRST, FIRST + 3600))
    assert [o.key for o in objects] == [good_key, plain_key]
    reduction, diagnostics = Reduction(TOPOLOGY), Diagnostics()
    read_s3_objects(s3, flow_log, objects, FormatChoices(), reduction, diagnostics)
    assert sum(row[0] for row in reduction.rows.values()) == GOOD_BYTES
    (warning,) = diagnostics.items
    assert (
        warning.reason == "DamagedFlowLog" and f"{NAME.replace('_0001', '_0002')}.log.gz: not gzip" in warning.message
    )


def test_local_names_of_hostile_keys() -> None:
    assert local_name("a/b/../..") == "object"
    assert local_name("a/.hidden.log.gz") == "hidden.log.gz"
    assert local_name("a/x\x00y.log") == "x_y.log"
    long = local_name("k/" + "é" * 600 + ".log.gz")
    assert long.endswith(".log.gz") and len(long.encode()) <= 255

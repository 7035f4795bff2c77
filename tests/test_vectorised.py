"""The vectorised reader must give exactly what the reference readers give: rows, every counter,
formats, first/last time and warnings, on generated S3 text (gzip and plain) and Parquet objects.

Text chunks are made tiny here so that one file mixes chunks reduced in bulk with chunks handed to
the reference code (Parquet batches: tests/test_columnar.py); the tests also prove that clean input
does take the bulk path. Parquet objects are read in decoder processes, as `natflow attribute` reads them.
"""

from __future__ import annotations

import gzip
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import columnar, textscan, vectorised
from natflow.flowlogs.fields import (
    DEFAULT_FORMAT,
    FIELD_VERSIONS,
    RECOMMENDED_FORMAT,
    LogFormat,
    column_name,
    parse_log_format,
)
from natflow.flowlogs.plausible import LATEST_TIME, MAX_RECORD_BYTES, MAX_RECORD_PACKETS
from natflow.flowlogs.readers import READERS, FormatChoices
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FileKind, FlowLogFile, describe
from natflow.net import CidrSet

NAT_ENIS = {"eni-0nat1": "nat-1", "eni-0nat2": "nat-2"}
NAT_IPS = {"10.0.1.10": "eni-0nat1", "10.0.1.11": "eni-0nat1", "10.0.2.10": "eni-0nat2"}
REGIONAL = frozenset({"nat-0regional1", "nat-0regional2"})
TOPOLOGY = NatTopology(NAT_ENIS, NAT_IPS, CidrSet(["10.0.0.0/16", "2600:1f18::/56"]), REGIONAL)
PODS = ("10.0.32.5", "10.0.32.6", "10.0.33.7", "2600:1f18:0:0::5", "2600:1f18::5")
PEERS = ("52.1.2.3", "52.1.2.4", "3.3.3.3", "2a00:1450:0::1", "198.51.100.7")
FIRST = 1_795_255_200  # 2026-11-21T10:00:00Z, the time in NAME
NAME = "123456789012_vpcflowlogs_us-east-1_fl-0abc_20261121T1000Z_0001"
WINDOW = (FIRST + 60, FIRST + 240)

RECOMMENDED = parse_log_format(RECOMMENDED_FORMAT, "test").fields
DEFAULT = parse_log_format(DEFAULT_FORMAT, "test").fields
NO_ENI = tuple(f for f in RECOMMENDED if f != "interface-id")
NO_TIMES = tuple(f for f in RECOMMENDED if f not in ("start", "end"))
FORMATS = {"recommended": RECOMMENDED, "default": DEFAULT, "no-eni": NO_ENI, "no-times": NO_TIMES}


# -- comparing the two paths -------------------------------------------------------------------------


@dataclass
class Outcome:
    rows: dict[Any, Any]
    stats: Any
    first_time: int | None
    last_time: int | None
    formats: dict[Any, Any]
    warnings: list[dict[str, Any]]


def outcome(
    read: Callable[[FlowLogFile, FormatChoices, Reduction, Diagnostics], None],
    files: list[FlowLogFile],
    choices: FormatChoices,
    window: tuple[int, int] | None,
    topology: NatTopology = TOPOLOGY,
) -> Outcome:
    reduction = Reduction(topology, window)
    diagnostics = Diagnostics()
    for file in files:
        read(file, choices, reduction, diagnostics)
    return as_outcome(reduction, diagnostics)


def as_outcome(reduction: Reduction, diagnostics: Diagnostics) -> Outcome:
    return Outcome(
        reduction.rows,
        reduction.stats,
        reduction.first_time,
        reduction.last_time,
        reduction.formats,
        [d.as_dict() for d in diagnostics.items],
    )


def reference(file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics) -> None:
    READERS[file.kind](file, choices, reduction, diagnostics)


def in_process(file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics) -> None:
    """A Parquet object through `columnar` in this process (where the tests' patches apply)."""
    part, notes = columnar.read_object(file, choices, reduction.topology, reduction.window).into(
        reduction.topology, reduction.window
    )
    reduction.merge(part)
    diagnostics.extend(notes)


def assert_same(
    files: list[FlowLogFile],
    choices: FormatChoices | None = None,
    window: tuple[int, int] | None = None,
    topology: NatTopology = TOPOLOGY,
    read: Callable[[FlowLogFile, FormatChoices, Reduction, Diagnostics], None] = vectorised.read_file_vectorised,
) -> Outcome:
    choices = choices or FormatChoices()
    expected = outcome(reference, files, choices, window, topology)
    assert outcome(read, files, choices, window, topology) == expected
    return expected


@contextmanager
def small_chunks(text_bytes: int = 400, parquet_rows: int = 5) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(textscan, "TEXT_CHUNK_BYTES", text_bytes)
        patch.setattr(textscan, "COMPRESSED_BLOCK_BYTES", 64)
        patch.setattr(columnar, "BATCH_ROWS", parquet_rows)  # for columnar read in this process
        yield


@contextmanager
def counting_reference_calls() -> Iterator[list[str]]:
    """Counts the pieces, lines and slices the fast readers hand to the reference code."""
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for module, name in ((textscan, "add_lines"), (textscan, "add_parts"), (columnar, "add_rows")):
            original = getattr(module, name)

            def counted(*args: Any, _original: Any = original, _name: str = name) -> None:
                calls.append(_name)
                _original(*args)

            patch.setattr(module, name, counted)
        yield calls


# -- records ---------------------------------------------------------------------------------------

NUMBER_JUNK = ("12a", "+5", "-3", "-0", "1.5", "99999999999999999999999", "007", "0x10")
KINDS = ["client-out"] * 4 + ["client-in"] * 3 + [
    "internet-out", "internet-in", "other", "other", "nodata", "skipdata", "unclassified", "nat-to-nat",
    "regional-out", "regional-out", "regional-in", "regional-in", "regional-internet", "regional-unfit",
]  # fmt: skip
# A regional gateway's public IP, and what its records may carry in interface-id and resource-id.
REGIONAL_PUBLIC_IP = "3.216.41.7"
REGIONAL_INTERFACES = ("-", "-", "eni-0node1", "eni-0nat1")
OTHER_RESOURCES = ("-", "-", "nat-1", "eni-0nat1", "nat-0unknown")


class Picker(Protocol):
    """Where a record's choices come from: hypothesis (`draw`) or a seeded random.Random."""

    def choice(self, options: Sequence[str]) -> str: ...

    def integer(self, low: int, high: int) -> int: ...


class Drawn:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def choice(self, options: Sequence[str]) -> str:
        return self.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))


class Seeded:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def choice(self, options: Sequence[str]) -> str:
        return self.random.choice(options)

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)


def make_record(pick: Picker) -> dict[str, str]:
    """One record as field -> text, of a kind chosen to cover every branch of the reduction."""
    kind = pick.choice(KINDS)
    nat_ip = pick.choice(sorted(NAT_IPS))
    pod, peer = pick.choice(PODS), pick.choice(PEERS)
    src, dst, pkt_src, pkt_dst = {
        "client-out": (pod, nat_ip, pod, peer),
        "client-in": (nat_ip, pod, peer, pod),
        "internet-out": (nat_ip, peer, nat_ip, peer),
        "internet-in": (peer, nat_ip, peer, nat_ip),
        "nat-to-nat": (nat_ip, "10.0.2.10", nat_ip, "10.0.2.10"),
        "regional-in": (peer, pod, peer, pod),
        "regional-internet": (REGIONAL_PUBLIC_IP, peer, REGIONAL_PUBLIC_IP, peer),
        "regional-unfit": (pod, pick.choice(PODS), pod, "-"),
    }.get(kind, (pod, peer, pod, peer))
    regional = kind.startswith("regional")
    start = pick.integer(FIRST - 30, FIRST + 330)
    end = start + pick.integer(-5, 60)

    def time_text(seconds: int) -> str:
        if pick.integer(0, 40) == 0:
            return pick.choice(NUMBER_JUNK)
        return pick.choice([str(seconds), str(seconds * 1000 + 7), "-"] + [str(seconds)] * 4)

    def number(high: int) -> str:
        return pick.choice((*NUMBER_JUNK, "-")) if pick.integer(0, 30) == 0 else str(pick.integer(0, high))

    on_nat = kind not in ("other", "unclassified") or pick.integer(0, 1) == 1
    if regional:
        interface = pick.choice(REGIONAL_INTERFACES)
    else:
        interface = pick.choice(sorted(NAT_ENIS)) if on_nat else pick.choice(["eni-0node1", "-"])
    fields = {
        "version": "5",
        "account-id": "123456789012",
        "interface-id": interface,
        "srcaddr": src,
        "dstaddr": dst,
        "srcport": str(pick.integer(0, 65535)),
        "dstport": "443",
        "protocol": "6",
        "packets": number(500),
        "bytes": number(10**9),
        "start": time_text(start),
        "end": time_text(end),
        "action": pick.choice(["ACCEPT"] * 5 + ["REJECT", "-"]),
        "log-status": "OK",
        "vpc-id": "vpc-1",
        "pkt-srcaddr": pick.choice([pkt_src, pkt_src, "-", peer]),
        "pkt-dstaddr": pick.choice([pkt_dst, pkt_dst, "-", pod]),
        "pkt-src-aws-service": pick.choice(["-", "-", "AMAZON", "S3"]),
        "pkt-dst-aws-service": pick.choice(["-", "-", "AMAZON", "S3"]),
        "flow-direction": pick.choice(["ingress", "egress", "-"]),
        "az-id": pick.choice(["use1-az1", "-"]),
        "resource-id": pick.choice(sorted(REGIONAL)) if regional else pick.choice(OTHER_RESOURCES),
    }
    if kind in ("nodata", "skipdata"):  # as AWS writes them: ENI, times and status only
        kept = ("version", "account-id", "interface-id", "resource-id", "start", "end")
        fields = {name: value if name in kept else "-" for name, value in fields.items()}
        fields |= {"start": time_text(start), "end": str(end), "log-status": kind.upper()}
    return fields


@st.composite
def record(draw: st.DrawFn) -> dict[str, str]:
    return make_record(Drawn(draw))


def clean_lines(count: int, fields: tuple[str, ...], seed: int = 7, ipv4_only: bool = False) -> list[str]:
    """Seeded valid records (no malformed numbers), as lines of `fields`; IPv6 lines go to the
    reference code (`ipv4_only` leaves them out)."""
    pick = Seeded(seed)
    records = (make_record(pick) for _ in range(count))
    lines = [" ".join(r[name] for name in fields) for r in records if is_clean(r)]
    return [line for line in lines if ":" not in line] if ipv4_only else lines


def is_clean(fields: dict[str, str]) -> bool:
    """Plain numbers, and times within the plausible bounds ("007" is 1970: the reference's to refuse)."""
    numbers = (fields[name] for name in ("packets", "bytes", "start", "end"))
    times = (fields[name] for name in ("start", "end"))
    return all(text == "-" or (text.isdigit() and len(text) < 15) for text in numbers) and all(
        not text.startswith("0") for text in times
    )


JUNK_ALPHABET = st.sampled_from(list("abc019 -.:\t\r\x0b\x1cé\u00a0\u2028"))


@st.composite
def text_line(draw: st.DrawFn, fields: tuple[str, ...]) -> str:
    """A record line, mostly clean; sometimes with runs of spaces, a field too many or too few, or junk."""
    choice = draw(st.integers(0, 99))
    if choice < 3:
        return draw(st.text(JUNK_ALPHABET, max_size=40))
    if choice < 5:
        return draw(st.sampled_from(["", "   ", " \t "]))
    drawn = draw(record())
    parts = [drawn[name] for name in fields]
    if choice < 8:
        del parts[draw(st.integers(0, len(parts) - 1))]
    elif choice < 10:
        parts.insert(draw(st.integers(0, len(parts))), "extra")
    if choice >= 10 and draw(st.integers(0, 9)) == 0:  # runs of spaces between, before or after fields
        separators = [draw(st.sampled_from([" ", " ", "  "])) for _ in parts]
        return draw(st.sampled_from(["", " "])) + "".join(p + s for p, s in zip(parts, separators, strict=True))
    return " ".join(parts)


def write_text(directory: Path, lines: list[str], gzipped: bool, name: str = NAME) -> FlowLogFile:
    path = directory / (name + (".log.gz" if gzipped else ".log"))
    body = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(body, mtime=0) if gzipped else body)
    return describe(str(path), FileKind.TEXT)


def header(fields: tuple[str, ...]) -> str:
    return " ".join(fields)


# -- S3 text ---------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    format_name=st.sampled_from(sorted(FORMATS)),
    with_header=st.booleans(),
    gzipped=st.booleans(),
    windowed=st.booleans(),
)
def test_text_matches_reference(
    data: st.DataObject, format_name: str, with_header: bool, gzipped: bool, windowed: bool
) -> None:
    fields = FORMATS[format_name]
    lines = data.draw(st.lists(text_line(fields), max_size=60))
    # Without a header the format comes from describe-flow-logs (one S3 format) or the AWS default.
    choices = FormatChoices() if with_header or fields == DEFAULT else FormatChoices(s3=[LogFormat(fields, "test")])
    with tempfile.TemporaryDirectory() as directory, small_chunks():
        file = write_text(Path(directory), ([header(fields)] if with_header else []) + lines, gzipped)
        assert_same([file], choices, WINDOW if windowed else None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), windowed=st.booleans())
def test_any_bytes_read_as_the_reference_reads_them(data: st.DataObject, windowed: bool) -> None:
    """Records cut and spliced with arbitrary bytes: the scanner never decides a line otherwise."""
    lines = [line.encode() for line in clean_lines(30, RECOMMENDED, seed=data.draw(st.integers(0, 9)))]
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(lines) - 1))
        cut = data.draw(st.integers(0, len(lines[at])))
        lines[at] = lines[at][:cut] + data.draw(st.binary(max_size=12)) + lines[at][cut:]
    body = b"\n".join([header(RECOMMENDED).encode(), *lines])
    with tempfile.TemporaryDirectory() as directory, small_chunks(text_bytes=data.draw(st.sampled_from([64, 700]))):
        path = Path(directory) / f"{NAME}.log"
        path.write_bytes(body)
        assert_same([describe(str(path), FileKind.TEXT)], window=WINDOW if windowed else None)


def test_clean_text_takes_the_bulk_path(tmp_path: Path) -> None:
    lines = clean_lines(900, RECOMMENDED, ipv4_only=True)
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    with small_chunks(), counting_reference_calls() as calls:
        expected = assert_same([file])
    assert calls == [] and expected.stats.records_counted > 50 and expected.stats.internet_leg_records > 10


def test_only_a_bad_line_goes_to_the_reference(tmp_path: Path) -> None:
    lines = clean_lines(900, RECOMMENDED, ipv4_only=True)
    lines[200] = lines[200].replace(" ", "\t", 1)  # str.split() reads it all the same, and so does the scanner
    lines[300] += " extra"
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    with small_chunks(text_bytes=2000), counting_reference_calls() as calls:
        expected = assert_same([file])
    assert calls == ["add_parts"]
    assert expected.stats.malformed_records == 1
    width = len(RECOMMENDED)
    assert expected.stats.malformed_examples[0].endswith(
        f"{NAME}.log.gz:302: {width + 1} fields, the format has {width}"
    )


def test_header_and_override(tmp_path: Path) -> None:
    lines = clean_lines(50, DEFAULT)
    file = write_text(tmp_path, [header(DEFAULT), *lines], gzipped=False)
    override = FormatChoices(override=LogFormat(DEFAULT, "--log-format"))
    assert_same([file], override)
    different = FormatChoices(override=LogFormat(RECOMMENDED, "--log-format"))
    expected = assert_same([file], different)
    assert [w["reason"] for w in expected.warnings] == ["LogFormatOverridesHeader"]
    assert expected.stats.malformed_records == len(lines)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"version  interface-id\n",
        b"version srcaddr srcaddr\n5 1 2\n",  # a header naming a field twice: UnreadableFlowLog
        b"version interface-id\r5 eni-0nat1\r\n",
        b"\xef\xbb\xbfversion account-id\n",
        b"5 123 eni-0nat1 10.0.32.5 10.0.1.10 1 443 6 1 100 1795255260 1795255270 ACCEPT OK",
        b"version account-id\n5 123\n5 456\n",  # no field that attribution reads: frames with no columns
    ],
)
def test_odd_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / f"{NAME}.log"
    path.write_bytes(content)
    assert_same([describe(str(path), FileKind.TEXT)])


# -- the line scanner: which lines it reads itself -------------------------------------------------------

# Each changes one line so that it may split differently, or not at all; with what the reference code
# is then handed: nothing (the scanner splits it as str.split() does), the line, or its piece (a CR).
ODD_LINES: dict[str, tuple[Callable[[str], str], list[str]]] = {
    "tab": (lambda line: line.replace(" ", "\t", 1), []),
    "carriage return": (lambda line: line + "\r", ["add_lines"]),
    "carriage return inside": (lambda line: line.replace(" ", "\r", 1), ["add_lines"]),
    "vertical tab": (lambda line: line.replace(" ", "\x0b", 1), []),
    "file separator": (lambda line: line.replace(" ", "\x1c", 1), []),
    "no-break space": (lambda line: line.replace(" ", "\u00a0", 1), ["add_parts"]),
    "line separator": (lambda line: line.replace(" ", "\u2028", 1), ["add_parts"]),
    "next line": (lambda line: line.replace(" ", "\u0085", 1), ["add_parts"]),
    "nul byte": (lambda line: line[:1] + "\x00" + line[1:], ["add_parts"]),
    "del byte": (lambda line: line[:1] + "\x7f" + line[1:], ["add_parts"]),
    "non-ascii letter": (lambda line: line[:1] + "é" + line[1:], ["add_parts"]),
    "two spaces": (lambda line: line.replace(" ", "  ", 1), []),
    "leading space": (lambda line: " " + line, []),
    "trailing space": (lambda line: line + " ", []),
    "a field too few": (lambda line: line.rsplit(" ", 1)[0], ["add_parts"]),
    "a field too many": (lambda line: line + " extra", ["add_parts"]),
    # As many separators as a good line, one field fewer: an empty field.
    "two spaces, a field too few": (lambda line: line.rsplit(" ", 1)[0].replace(" ", "  ", 1), ["add_parts"]),
    "leading space, a field too few": (lambda line: " " + line.rsplit(" ", 1)[0], ["add_parts"]),
    "trailing space, a field too few": (lambda line: line.rsplit(" ", 1)[0] + " ", ["add_parts"]),
    "blank line after": (lambda line: line + "\n", []),
    "spaces line after": (lambda line: line + "\n   ", []),
    "only a nul byte after": (lambda line: line + "\n\x00", ["add_parts"]),
}


@pytest.mark.parametrize("oddity", sorted(ODD_LINES))
def test_an_odd_line_reads_as_the_reference_reads_it(tmp_path: Path, oddity: str) -> None:
    change, handed = ODD_LINES[oddity]
    lines = clean_lines(300, RECOMMENDED, ipv4_only=True)
    lines[150] = change(lines[150])
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    with small_chunks(text_bytes=2000), counting_reference_calls() as calls:
        assert_same([file], window=WINDOW)
    assert calls == handed


def record_line(**fields: str) -> str:
    """A client-out record of the recommended format on eni-0nat1, with `fields` replaced."""
    values = {
        **dict.fromkeys(RECOMMENDED, "-"),
        "version": "5",
        "account-id": "123456789012",
        "interface-id": "eni-0nat1",
        "srcaddr": "10.0.32.5",
        "dstaddr": "10.0.1.10",
        "srcport": "40000",
        "dstport": "443",
        "protocol": "6",
        "packets": "3",
        "bytes": "1500",
        "start": str(FIRST + 60),
        "end": str(FIRST + 70),
        "action": "ACCEPT",
        "log-status": "OK",
        "pkt-srcaddr": "10.0.32.5",
        "pkt-dstaddr": "52.1.2.3",
        **fields,
    }
    return " ".join(values[name] for name in RECOMMENDED)


def test_numbers_times_and_statuses_take_the_bulk_path(tmp_path: Path) -> None:
    """'-' numbers and times, millisecond times, leading zeros, NODATA/SKIPDATA (inside and outside the
    window, on any ENI) are all read in bulk, exactly."""
    lines = [
        record_line(packets="-", bytes="-"),
        record_line(start="-"),
        record_line(end="-"),
        record_line(start="-", end="-"),  # the object key's time
        record_line(start=str((FIRST + 90) * 1000 + 999), end=str((FIRST + 95) * 1000)),
        record_line(packets="0007", bytes="000"),
        record_line(**{"interface-id": "eni-0node1", "log-status": "NODATA", "start": str(FIRST + 100)}),
        record_line(**{"interface-id": "eni-0node1", "log-status": "SKIPDATA", "start": str(FIRST + 400)}),
        record_line(**{"log-status": "NODATA", "start": "-", "packets": "-", "bytes": "-"}),
        record_line(**{"log-status": "SKIPDATA", "start": str((FIRST + 10) * 1000)}),
        record_line(**{"log-status": "NODATAX"}),  # no status of note: an ordinary record
        record_line(**{"interface-id": "eni-0node1", "pkt-dst-aws-service": "NODATA"}),
        record_line(action="REJECT"),
        record_line(**{"srcaddr": "10.0.1.10", "dstaddr": "52.1.2.3"}),  # an internet leg
    ] * 20
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    for window in (None, WINDOW):
        with small_chunks(text_bytes=1000), counting_reference_calls() as calls:
            expected = assert_same([file], window=window)
        assert calls == []
        stats = expected.stats
        assert stats.no_data_records + stats.skip_data_records + stats.outside_window_records >= 60
        assert stats.rejected_records == 20 and stats.internet_leg_records == 20


def test_numbers_and_addresses_at_the_edges(tmp_path: Path) -> None:
    """Sums past 64 bits, numbers longer than the scanner reads, addresses Python's ipaddress refuses
    or writes otherwise, and NAT IPs whose ENI is unknown: the reference's answer, every time."""
    # The most a record may carry: 18,447 of them overflow a 64-bit sum, which the reference then takes.
    big, many, most_packets = str(MAX_RECORD_BYTES), 18_500, str(MAX_RECORD_PACKETS)
    lines = [record_line(bytes=big, packets=most_packets) for _ in range(many)]
    lines += [record_line(action="REJECT", bytes=big) for _ in range(many)]
    lines += [record_line(srcaddr="10.0.1.10", dstaddr="52.1.2.3", bytes=big) for _ in range(many)]  # internet legs
    lines += [record_line(bytes="1" + "0" * 20), record_line(start="1" * 19), record_line(packets="0" * 25)]
    odd_addresses = ["10.0.32.05", "10.0.32.256", "10.0.32", "10.0.32.5.1", "010.0.32.5", "10.0.32.5x", "1e.0.0.1"]
    lines += [record_line(srcaddr=address) for address in odd_addresses]
    lines += [
        record_line(srcaddr="0.0.0.0"),
        record_line(srcaddr="10.0.255.255"),
        record_line(srcaddr="255.255.255.255"),
    ]
    lines += [record_line(dstaddr="10.0.1.12"), record_line(dstaddr="10.0.1.10", **{"pkt-dstaddr": "10.0.1.10"})]
    lines += [
        record_line(start=str(WINDOW[0] - 1)),
        record_line(start=str(WINDOW[0])),
        record_line(start=str(WINDOW[1])),
    ]
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    # 10.0.1.12 is a NAT IP whose ENI is unknown; one NAT ENI id is no token at all.
    topology = NatTopology(
        {**NAT_ENIS, "eni 0odd": "nat-3"}, {**NAT_IPS, "10.0.1.12": ""}, CidrSet(["10.0.0.0/16", "0.0.0.0/32"])
    )
    for window in (None, WINDOW):
        expected = assert_same([file], window=window, topology=topology)
        assert expected.stats.records_counted > 30
    no_eni = tuple(f for f in RECOMMENDED if f != "interface-id")
    records = [dict(zip(RECOMMENDED, line.split(), strict=True)) for line in lines]
    file = write_text(tmp_path, [header(no_eni), *(" ".join(r[f] for f in no_eni) for r in records)], gzipped=False)
    assert_same([file], topology=topology)


def test_fields_of_every_length_read_the_same(tmp_path: Path) -> None:
    """Short, long and longer than a decompressed piece: peers and services are row keys."""
    lines = [
        record_line(**{"pkt-dstaddr": "p" * length, "pkt-dst-aws-service": "S" * (length % 40 + 1)})
        for length in [*range(1, 70), 500, 3000]
    ]
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    with small_chunks(text_bytes=700), counting_reference_calls() as calls:
        expected = assert_same([file])
    assert calls == [] and len(expected.rows) == len(lines)


def test_interface_ids_like_a_nat_eni_are_decided_exactly(tmp_path: Path) -> None:
    """Interface ids that share a NAT ENI's length, first or last bytes are other interfaces."""
    eni = "eni-0123456789abcdef0"
    topology = NatTopology({eni: "nat-1"}, {"10.0.1.10": eni}, CidrSet(["10.0.0.0/16"]))
    alike = [eni[:8] + "ZZZZZ" + eni[-8:], eni[:-1] + "1", "x" + eni[1:], eni[:20], eni + "0"]
    lines = [record_line(**{"interface-id": interface}) for interface in [eni, *alike] * 10]
    file = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=False)
    with small_chunks(), counting_reference_calls() as calls:
        expected = assert_same([file], topology=topology)
    assert calls == [] and expected.stats.records_counted == 10 and expected.stats.other_interface_records == 50


def test_a_last_line_without_newline(tmp_path: Path) -> None:
    body = "\n".join([header(RECOMMENDED), *clean_lines(200, RECOMMENDED, ipv4_only=True)])
    for label, content in {"plain": body.encode(), "gzip": gzip.compress(body.encode(), mtime=0)}.items():
        path = tmp_path / f"{NAME}-{label}.log"
        path.write_bytes(content)
        with small_chunks(text_bytes=500), counting_reference_calls() as calls:
            assert_same([describe(str(path), FileKind.TEXT)])
        assert calls == []


# -- damaged gzip --------------------------------------------------------------------------------------


def test_truncated_and_corrupt_gzip(tmp_path: Path) -> None:
    body = ("\n".join([header(RECOMMENDED), *clean_lines(3000, RECOMMENDED)]) + "\n").encode()
    packed = gzip.compress(body, mtime=0)
    damaged = {
        "truncated-early": packed[: len(packed) // 3],
        "truncated-late": packed[: len(packed) - 20],
        "no-trailer": packed[:-8],
        "bad-crc": packed[:-8] + bytes(8),
        "corrupt": packed[:5000] + bytes(200) + packed[5200:],
        "two-members": packed + gzip.compress(b"5 1 eni-0nat1\n", mtime=0),
        "padded": packed + bytes(16),
    }
    for label, content in damaged.items():
        path = tmp_path / f"{NAME}-{label}.log.gz"
        path.write_bytes(content)
        with small_chunks(text_bytes=20_000):
            expected = assert_same([describe(str(path), FileKind.TEXT)])
        if label.startswith(("truncated", "no-trailer", "bad-crc", "corrupt")):
            assert [w["reason"] for w in expected.warnings] == ["DamagedFlowLog"], label
        if label == "truncated-late":
            assert expected.stats.records_read > 2000


# -- Parquet -------------------------------------------------------------------------------------------


def write_parquet(
    directory: Path, records: list[dict[str, str]], fields: tuple[str, ...], style: dict[str, Any]
) -> FlowLogFile:
    """Records as a Parquet object: numbers as integers where they are all digits, '-' as null or text."""
    columns: dict[str, pa.Array] = {}
    for name in fields:
        texts = [r[name] for r in records]
        if (
            name in ("packets", "bytes", "start", "end")
            and style["integers"]
            and all(t == "-" or (t.lstrip("-").isdigit() and len(t) < 18) for t in texts)
        ):
            columns[column_name(name)] = pa.array([None if t == "-" else int(t) for t in texts], pa.int64())
        else:
            columns[column_name(name)] = pa.array([style["missing"] if t == "-" else t for t in texts], pa.string())
    path = directory / f"{NAME}.log.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=style["row_group"])
    return describe(str(path), FileKind.PARQUET)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(record(), max_size=50),
    format_name=st.sampled_from(sorted(FORMATS)),
    integers=st.booleans(),
    missing=st.sampled_from([None, "-", "None"]),
    windowed=st.booleans(),
)
def test_parquet_matches_reference(
    records: list[dict[str, str]], format_name: str, integers: bool, missing: str | None, windowed: bool
) -> None:
    style = {"integers": integers, "missing": missing, "row_group": 7}
    with tempfile.TemporaryDirectory() as directory, small_chunks():
        file = write_parquet(Path(directory), records, FORMATS[format_name], style)
        assert_same([file], window=WINDOW if windowed else None)  # in a decoder process, one batch a row group
        assert_same([file], window=WINDOW if windowed else None, read=in_process)  # batches of 5 rows


def test_clean_parquet_takes_the_bulk_path(tmp_path: Path) -> None:
    lines = clean_lines(300, RECOMMENDED, ipv4_only=True)
    records = [dict(zip(RECOMMENDED, line.split(), strict=True)) for line in lines]
    file = write_parquet(tmp_path, records, RECOMMENDED, {"integers": True, "missing": None, "row_group": 64})
    with small_chunks(parquet_rows=50), counting_reference_calls() as calls:
        expected = assert_same([file], read=in_process)
    assert calls == [] and expected.stats.records_counted > 50


def test_unusual_parquet_types_take_the_reference_path(tmp_path: Path) -> None:
    records = [dict(zip(DEFAULT, line.split(), strict=True)) for line in clean_lines(30, DEFAULT)]
    file = write_parquet(tmp_path, records, DEFAULT, {"integers": True, "missing": None, "row_group": 64})
    table = pq.read_table(file.path)
    for name, kind in (("bytes", pa.float64()), ("action", pa.dictionary(pa.int32(), pa.string()))):
        table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(kind))
    pq.write_table(table, file.path)
    assert_same([file])
    Path(file.path).write_bytes(Path(file.path).read_bytes()[:-100])  # footer gone: DamagedFlowLog
    damaged = outcome(vectorised.read_file_vectorised, [file], FormatChoices(), None)
    assert [w["reason"] for w in damaged.warnings] == ["DamagedFlowLog"] and damaged.stats.damaged_files == 1


# -- many files, in threads ------------------------------------------------------------------------


def parallel_files(tmp_path: Path) -> list[FlowLogFile]:
    """Text in two formats with malformed lines, a damaged gzip, Parquet and CloudWatch."""
    files = []
    for index in range(6):
        fields = DEFAULT if index % 3 == 2 else RECOMMENDED
        lines = clean_lines(200, fields, seed=index)
        lines[index * 10] = "junk line"
        lines[index * 10 + 5] = "more junk"
        implausible = lines[index * 10 + 7].split(" ")
        implausible[fields.index("start")] = "007"  # 1970: no time of the objects'
        lines[index * 10 + 7] = " ".join(implausible)
        name = NAME.replace("T1000Z", f"T10{index}5Z")
        files.append(write_text(tmp_path, [header(fields), *lines], gzipped=bool(index % 2), name=name))
    truncated = Path(files[3].path)
    truncated.write_bytes(truncated.read_bytes()[:-30])  # DamagedFlowLog, in the middle
    records = [dict(zip(RECOMMENDED, line.split(), strict=True)) for line in clean_lines(100, RECOMMENDED)]
    files.append(write_parquet(tmp_path, records, RECOMMENDED, {"integers": True, "missing": None, "row_group": 64}))
    cloudwatch = tmp_path / "events.json"
    event = {"timestamp": 1795255260000, "message": "junk"}
    cloudwatch.write_text(json.dumps({"events": [event]}))
    files.append(describe(str(cloudwatch), FileKind.CLOUDWATCH))
    return files


PARALLEL_CHOICES = FormatChoices(cloudwatch=[LogFormat(RECOMMENDED, "test")])


@pytest.mark.parametrize("workers", [2, 3])
def test_read_all_parallel_matches_reference(tmp_path: Path, workers: int) -> None:
    files = parallel_files(tmp_path)
    expected = outcome(reference, files, PARALLEL_CHOICES, WINDOW)
    diagnostics = Diagnostics()
    reduction = vectorised.read_all_parallel(files, PARALLEL_CHOICES, TOPOLOGY, WINDOW, diagnostics, workers=workers)
    assert as_outcome(reduction, diagnostics) == expected
    # 12 junk lines, a CloudWatch event, 6 records whose start "007" is no time of the objects'
    assert expected.stats.malformed_records == 19 and expected.stats.records_counted > 100
    assert len(expected.formats) == 2 and [w["reason"] for w in expected.warnings] == ["DamagedFlowLog"]


def test_files_done_out_of_order_merge_in_file_order(tmp_path: Path) -> None:
    """Threads finish files as they can: formats, examples and warnings are still merged in file order."""
    files = parallel_files(tmp_path)
    expected = outcome(reference, files, PARALLEL_CHOICES, WINDOW)
    read_text = textscan.read_text

    def first_file_last(file: FlowLogFile, *args: Any) -> Any:
        if file is files[0]:
            time.sleep(0.5)  # every other file is done before this one
        return read_text(file, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(vectorised._FAST, FileKind.TEXT, first_file_last)
        diagnostics = Diagnostics()
        reduction = vectorised.read_all_parallel(files, PARALLEL_CHOICES, TOPOLOGY, WINDOW, diagnostics, workers=2)
    assert as_outcome(reduction, diagnostics) == expected


# -- regional NAT gateways and the fields of versions 9 to 11 ----------------------------------------


def regional_lines(count: int, fields: tuple[str, ...], seed: int = 11) -> list[str]:
    """Clean IPv4 records, at least half of them of the regional gateways (every role there)."""
    pick = Seeded(seed)
    lines = []
    while len(lines) < count:
        record = make_record(pick)
        if not is_clean(record) or (not record["resource-id"].startswith("nat-0regional") and pick.integer(0, 1)):
            continue
        line = " ".join(record[name] for name in fields)
        if ":" not in line:
            lines.append(line)
    return lines


def test_regional_gateway_records_take_the_bulk_path(tmp_path: Path) -> None:
    """Records of regional gateways (by resource-id, whatever interface-id) are reduced by the scanner,
    from text and from Parquet (both ways in), exactly as the reference reduces them."""
    lines = regional_lines(900, RECOMMENDED)
    text = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    with small_chunks(), counting_reference_calls() as calls:
        expected = assert_same([text], window=WINDOW)
    assert calls == []
    with no_whole_file_fallback():
        outcome(vectorised.read_file_vectorised, [text], FormatChoices(), WINDOW)
    records = [dict(zip(RECOMMENDED, line.split(), strict=True)) for line in lines]
    parquet = write_parquet(tmp_path, records, RECOMMENDED, {"integers": True, "missing": None, "row_group": 64})
    with small_chunks(parquet_rows=50), counting_reference_calls() as calls:  # in this process: patches apply
        assert assert_same([parquet], window=WINDOW, read=in_process).stats == expected.stats
        with no_whole_file_fallback():
            outcome(in_process, [parquet], FormatChoices(), WINDOW)
    assert calls == []
    assert assert_same([parquet], window=WINDOW).stats == expected.stats  # and in the decoder processes
    regional_rows = [key for key in expected.rows if key[0] in REGIONAL]
    assert regional_rows and {key[0] for key in expected.rows} - REGIONAL  # zonal rows too
    assert set(expected.stats.unclassified_by_key) & REGIONAL
    assert expected.stats.internet_leg_records > 10


def test_regional_records_with_implausible_numbers_are_malformed(tmp_path: Path) -> None:
    """The plausible bounds hold for a regional gateway's records too, whatever their role would be:
    malformed in the reference and in the fast readers (text, Parquet both ways in); at the bounds, counted."""
    roles = {  # srcaddr, dstaddr
        "out": ("10.0.32.5", "52.1.2.3"),
        "in": ("52.1.2.3", "10.0.32.5"),
        "internet": (REGIONAL_PUBLIC_IP, "52.1.2.3"),
        "unclassified": ("10.0.32.5", "10.0.32.6"),
    }
    implausible = [
        {"bytes": str(MAX_RECORD_BYTES + 1)},
        {"packets": str(MAX_RECORD_PACKETS + 1)},
        {"start": "007"},
        {"end": str(LATEST_TIME + 1)},
    ]
    at_the_bounds = {"bytes": str(MAX_RECORD_BYTES), "packets": str(MAX_RECORD_PACKETS)}
    lines = [
        record_line(**{"interface-id": eni, "resource-id": "nat-0regional1", "srcaddr": src, "dstaddr": dst, **change})
        for src, dst in roles.values()
        for change in [*implausible, at_the_bounds]
        for eni in ("-", "eni-0nat1")
    ]
    text = write_text(tmp_path, [header(RECOMMENDED), *lines], gzipped=True)
    expected = assert_same([text])
    stats = expected.stats
    assert stats.malformed_records == len(roles) * len(implausible) * 2
    assert (stats.records_counted, stats.internet_leg_records) == (4, 2)
    assert stats.unclassified_by_key["nat-0regional1"] == [2, 2 * MAX_RECORD_BYTES]
    assert {key[0] for key in expected.rows} == {"nat-0regional1"}
    records = [dict(zip(RECOMMENDED, line.split(), strict=True)) for line in lines]
    parquet = write_parquet(tmp_path, records, RECOMMENDED, {"integers": True, "missing": None, "row_group": 8})
    for read in (in_process, vectorised.read_file_vectorised):
        assert assert_same([parquet], read=read).stats.malformed_records == stats.malformed_records, read


@contextmanager
def no_whole_file_fallback() -> Iterator[None]:
    """Fails the test if a fast reader hands a whole file to the reference reader."""

    def refused(file: FlowLogFile, *args: Any) -> None:
        raise AssertionError(f"{file.path} fell back to the reference reader")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vectorised, "READERS", dict.fromkeys(FileKind, refused))
        yield


ALL_FIELDS = tuple(FIELD_VERSIONS)  # every catalogued field, up to version 11
V11_VALUES = {
    "version": "11",
    "encryption-status": "1",
    "interface-type": "regional_nat_gateway",
    "next-hop-interface-id": "eni-0next",
    "next-hop-subnet-id": "subnet-0next",
    "next-hop-az-id": "use1-az2",
    "next-hop-vpc-id": "vpc-1",
    "next-hop-interface-type": "nat_gateway",
    "instance-tag": "team%3Dpayments",
    "instance-tag-2": "-",
    "interface-tag": "my%2Dapp",
    "interface-tag-2": "owner%3Dplatform%20team",
    "asg-tag": "-",
    "asg-tag-2": "eks%3Anodegroup%2Dname%3Dgeneral",
    "ecs-cluster-arn": "-",
    "reject-reason": "-",
    "traffic-path": "8",
    "tcp-flags": "3",
}


def test_a_version_11_format_takes_the_bulk_path(tmp_path: Path) -> None:
    """All 55 catalogued fields (v2 to v11: resource-id, encryption-status, the next-hop and the
    percent-encoded tag fields) in text and Parquet: no line or row falls back to the reference."""
    assert {"resource-id", "encryption-status", "next-hop-az-id", "asg-tag-2"} <= set(ALL_FIELDS)
    pick = Seeded(5)
    records = []
    while len(records) < 400:
        record = make_record(pick)
        if is_clean(record) and ":" not in record["srcaddr"] + record["dstaddr"]:
            records.append({name: V11_VALUES.get(name, record.get(name, "-")) for name in ALL_FIELDS})
    text = write_text(tmp_path, [header(ALL_FIELDS), *(" ".join(r.values()) for r in records)], gzipped=True)
    with counting_reference_calls() as calls:
        expected = assert_same([text])
    with no_whole_file_fallback():
        outcome(vectorised.read_file_vectorised, [text], FormatChoices(), None)
    assert calls == [] and expected.stats.records_counted > 100
    assert list(expected.formats) == [ALL_FIELDS]
    parquet = write_parquet(tmp_path, records, ALL_FIELDS, {"integers": True, "missing": None, "row_group": 100})
    with counting_reference_calls() as calls:  # in this process: patches apply
        assert assert_same([parquet], read=in_process).stats == expected.stats
        with no_whole_file_fallback():
            outcome(in_process, [parquet], FormatChoices(), None)
    assert calls == []
    assert assert_same([parquet]).stats == expected.stats  # and in the decoder processes


def test_the_topology_sent_to_the_decoders_keeps_every_field() -> None:
    """Parquet objects are reduced in decoder processes with a copy of the topology: a field left out
    (regional gateways were, once) silently loses those gateways' bytes."""
    from dataclasses import fields

    topology = NatTopology({"eni-1": "nat-1"}, {"10.0.0.5": "eni-1"}, CidrSet(["10.0.0.0/16"]),
                           frozenset({"nat-2"}), {"10.0.9.9": "nat-2"})  # fmt: skip
    portable = vectorised._portable(topology)
    for name in (f.name for f in fields(NatTopology)):
        if name == "inside":
            assert portable.inside.cidrs == topology.inside.cidrs
        else:
            assert getattr(portable, name) == getattr(topology, name), name

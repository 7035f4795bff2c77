"""The compiled filter (`_textscan.filter_lines`) against the rule in Python: a line is kept when an
address field holds an address looked for, or when the C code cannot split it with certainty; of the
others, those whose collect fields hold a collected address come back whole."""

from __future__ import annotations

import ipaddress
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natflow.flowlogs._textscan import filter_lines
from natflow.flowlogs.fields import MAX_LINE_BYTES

WIDTH = 6  # interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr bytes
FIELDS, COLLECT = (1, 2, 3, 4), (1, 2)
WANTED = ["10.0.17.42", "10.0.33.51", "2600:1f18::42"]
COLLECTED = ["10.0.0.77"]
INSIDE_CIDR = ipaddress.IPv4Network("10.0.0.0/16")
INSIDE = array("I", [int(INSIDE_CIDR.network_address), int(INSIDE_CIDR.broadcast_address)])

addresses = st.sampled_from(
    [
        "10.0.17.42",
        "10.0.17.4",
        "10.0.17.420",
        "010.0.17.42",
        "10.0.0.77",
        "140.82.112.4",
        "-",
        "2600:1f18::42",
        "2600:1f18::43",
        "10.0.33.51",
        "x",
    ]
)
tokens = st.one_of(addresses, st.sampled_from(["eni-0a", "1234", "ACCEPT"]))
separators = st.sampled_from([" ", " ", "  ", "\t", " \x0b"])


@st.composite
def lines(draw: st.DrawFn) -> str:
    count = draw(st.sampled_from([WIDTH, WIDTH, WIDTH, WIDTH - 1, WIDTH + 1, 0]))
    parts = [draw(tokens) if i else "eni-0a" for i in range(count)]
    if count and draw(st.booleans()):
        parts[draw(st.integers(0, count - 1))] = draw(addresses)
    text = ""
    for part in parts:
        text += part + draw(separators)
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(["é", "\x00", "\x7f"]))
    return text.rstrip(" ") if draw(st.booleans()) else text


def python_rule(line: str, fields: tuple[int, ...], wanted: list[str]) -> bool:
    parts = line.split()
    return len(parts) == WIDTH and any(parts[i] in wanted for i in fields)


def collected_rule(line: str) -> bool:
    """One collect field holds a collected address, another an IPv4 address outside the VPC."""
    parts = line.split()
    if len(parts) != WIDTH:
        return False
    values = [parts[i] for i in COLLECT]
    outside = False
    for value in values:
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            continue
        outside |= value not in COLLECTED and str(address) == value and address not in INSIDE_CIDR
    return any(value in COLLECTED for value in values) and outside


def certain(line: str) -> bool:
    """What the C code splits itself: printable ASCII tokens and ASCII whitespace, the layout's width."""
    return all(32 <= ord(c) < 127 or c in "\t\x0b\x0c\x1c\x1d\x1e\x1f" for c in line) and len(line.split()) in (
        0,
        WIDTH,
    )


# More than a few addresses are read as numbers, a few compared as text: both ways are tried.
FILLER = [f"192.0.2.{host}" for host in range(1, 21)]


def call(text: bytes, many: bool) -> tuple[int, int, list[tuple[int, int, int]], bytes]:
    ipv4 = array(
        "I", sorted(int(ipaddress.IPv4Address(a)) for a in [*WANTED, *(FILLER if many else [])] if ":" not in a)
    )
    texts = tuple(a.encode() for a in WANTED if ":" in a)
    collect = array("I", [int(ipaddress.IPv4Address(a)) for a in COLLECTED])
    return filter_lines(text, 0, len(text), WIDTH, FIELDS, ipv4, texts, COLLECT, collect, INSIDE, MAX_LINE_BYTES)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines(), max_size=40), st.booleans())
def test_the_filter_keeps_what_the_rule_keeps(generated: list[str], many: bool) -> None:
    text = "".join(line + "\n" for line in generated).encode()
    count, rejected, spans, collected = call(text, many)
    assert count == len(generated)
    kept = [(index, text[start:end].decode("utf-8")) for index, start, end in spans]
    expected = [
        (index, line + "\n")
        for index, line in enumerate(generated)
        if python_rule(line, FIELDS, WANTED) or (not certain(line) and line.split())
    ]
    assert kept == expected
    expected_kept = [line for _, line in expected]
    expected_collected = [
        line + "\n" for line in generated if line + "\n" not in expected_kept and line.split() and collected_rule(line)
    ]
    assert collected.decode("utf-8") == "".join(expected_collected)
    assert rejected == sum(1 for line in generated if line.split()) - len(kept)


def test_a_range_that_does_not_end_a_line_is_refused() -> None:
    with pytest.raises(ValueError, match="whole lines"):
        filter_lines(b"a b\nc", 0, 5, 2, (0,), array("I"), (), (), b"", b"", MAX_LINE_BYTES)


def test_unsorted_addresses_and_fields_outside_the_layout_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        filter_lines(b"a b\n", 0, 4, 2, (0,), array("I", [5, 1]), (), (), b"", b"", MAX_LINE_BYTES)
    with pytest.raises(ValueError, match="outside the layout"):
        filter_lines(b"a b\n", 0, 4, 2, (2,), array("I"), (), (), b"", b"", MAX_LINE_BYTES)


def test_a_line_longer_than_max_line_is_kept_for_python_to_judge() -> None:
    """Even a line of the right width and no address looked for: the reader counts it malformed."""
    short = b"eni-1 192.0.2.1 192.0.2.2 - - 10\n"
    long = b"eni-1 192.0.2.1 192.0.2.2 - - " + b"9" * 40 + b"\n"
    blank = b" " * 50 + b"\n"
    text = short + long + blank + short
    count, rejected, spans, _ = filter_lines(text, 0, len(text), WIDTH, FIELDS, array("I"), (), (), b"", b"", 48)
    assert count == 4
    assert rejected == 2
    assert [text[start:end] for _, start, end in spans] == [long, blank]
    assert [index for index, _, _ in spans] == [1, 2]
    with pytest.raises(ValueError, match="max_line"):
        filter_lines(text, 0, len(text), WIDTH, FIELDS, array("I"), (), (), b"", b"", -1)

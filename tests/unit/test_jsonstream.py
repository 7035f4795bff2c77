"""natflow.jsonstream: Lists item by item, watch streams, and every bound on damaged or hostile input."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from natflow import jsonstream
from natflow.jsonstream import MAX_DEPTH, Element, JsonStreamError, Value, iter_member_elements, iter_stream


def read(data: bytes, streamed: tuple[str, ...] = ("items",)) -> tuple[list[Element | Value], JsonStreamError | None]:
    found: list[Element | Value] = []
    try:
        for item in iter_stream(io.BytesIO(data), streamed):
            found.append(item)
    except JsonStreamError as error:
        return found, error
    return found, None


def values(found: list[Element | Value]) -> list[Any]:
    return [item.value for item in found]


def test_a_list_comes_item_by_item_with_its_own_members() -> None:
    listing = {"apiVersion": "v1", "items": [{"kind": "Pod", "n": i} for i in range(3)], "kind": "List"}
    found, error = read(json.dumps(listing, indent=4).encode())
    assert error is None
    elements = [item for item in found if isinstance(item, Element)]
    assert [(e.value_index, e.member, e.position, e.value["n"]) for e in elements] == [
        (1, "items", 0, 0),
        (1, "items", 1, 1),
        (1, "items", 2, 2),
    ]
    assert elements[0].members["apiVersion"] == "v1"  # members before the array are there already
    assert found[-1] == Value(1, {"apiVersion": "v1", "kind": "List"}, ("items",))


def test_a_watch_stream_is_one_value_after_another() -> None:
    events = [{"type": "ADDED", "object": {"kind": "Pod", "n": i}} for i in range(4)]
    data = "\n".join(json.dumps(event, indent=2) for event in events).encode()
    found, error = read(data)
    assert error is None
    assert values(found) == events
    assert [item.value_index for item in found] == [1, 2, 3, 4]
    assert values(read(b'{"a": 1}{"b": 2} 3 "x" [4, 5]', ())[0]) == [{"a": 1}, {"b": 2}, 3, "x", 4, 5]


def test_values_that_span_many_chunks_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonstream, "_CHUNK", 7)
    items = [{"name": f"pod-{i}", "labels": {"é": "ü" * i}, "n": 12345678 + i} for i in range(50)]
    data = json.dumps({"kind": "List", "items": items}, ensure_ascii=False).encode()
    found, error = read(data)
    assert error is None and [item.value for item in found if isinstance(item, Element)] == items
    whole = json.dumps({"big": "x" * 1000, "n": 1234567}).encode() * 3
    assert values(read(whole, ())[0]) == [{"big": "x" * 1000, "n": 1234567}] * 3


def test_a_truncated_stream_keeps_every_value_before_the_damage() -> None:
    items = [{"kind": "Pod", "n": i} for i in range(5)]
    data = json.dumps({"kind": "List", "items": items}).encode()
    cut = data.index(b'"n": 3') + 3
    found, error = read(data[:cut])
    assert values(found) == items[:3]
    assert error is not None and error.truncated and error.offset == cut
    assert f"truncated at byte {cut}" in str(error)
    stream = b'{"type": "ADDED", "object": {}}\n{"type": "MOD'
    found, error = read(stream)
    assert values(found) == [{"type": "ADDED", "object": {}}]
    assert error is not None and error.truncated


def test_invalid_json_names_the_byte_and_keeps_what_came_before() -> None:
    found, error = read(b'{"items": [{"a": 1}, {"b": nope}, {"c": 3}]}')
    assert values(found) == [{"a": 1}]
    assert error is not None and not error.truncated
    assert str(error) == "invalid JSON (Expecting value) at byte 27"
    _, error = read(b'{"items": [1 2]}')
    assert str(error) == "invalid JSON (expected ',' or ']') at byte 13"
    _, error = read(b"{broken")
    assert str(error) == "invalid JSON (expected a member name) at byte 1"


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    for data in (b"[" * 100_000 + b"]" * 100_000, b'{"items": [' + b"[" * 100_000):
        found, error = read(data)
        assert found == [] and error is not None
        assert f"JSON nested deeper than {MAX_DEPTH} levels at byte" in str(error)
    # Deep enough for the bound but not for Python's own recursion limit: the bound still holds.
    deep = b'{"items": [{"ok": 1}, ' + b"[" * 600 + b"]" * 600 + b"]}"
    found, error = read(deep)
    assert values(found) == [{"ok": 1}] and error is not None and "nested deeper" in str(error)
    # Brackets inside strings are not nesting.
    shallow = json.dumps({"items": [{"s": "[" * 5000, "d": [[[1]]]}]}).encode()
    assert read(shallow)[1] is None


def test_a_value_past_the_size_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonstream, "MAX_VALUE_CHARS", 1000)
    monkeypatch.setattr(jsonstream, "_CHUNK", 64)
    huge = json.dumps({"items": [{"a": 1}, {"s": "x" * 5000}, {"b": 2}]}).encode()
    found, error = read(huge)
    assert values(found) == [{"a": 1}]
    assert error is not None and "a single JSON value larger than" in str(error) and error.offset == 21
    at_the_end = json.dumps({"items": [{"a": 1}, "x" * 1200]}).encode()  # read whole before it is measured
    assert "larger than" in str(read(at_the_end)[1])


def test_a_huge_string_under_the_bound_is_read_in_linear_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[int] = []
    real = json.JSONDecoder.raw_decode

    def counted(self: json.JSONDecoder, text: str, start: int = 0) -> tuple[Any, int]:
        scans.append(len(text) - start)
        return real(self, text, start)

    monkeypatch.setattr(json.JSONDecoder, "raw_decode", counted)
    value = "v" * (6 << 20)
    found, error = read(json.dumps({"items": [value, 1]}).encode())
    assert error is None and values(found)[:2] == [value, 1]
    # The buffer doubles while the string is incomplete: the scans add up to a few times its size.
    assert sum(scans) < 4 * len(value)


def test_a_list_is_decoded_once_per_item_and_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear time, counted rather than timed: each item is decoded once, plus once more for
    each chunk boundary it straddles (the old reader decoded the whole List again per chunk)."""
    chunk = 4096
    monkeypatch.setattr(jsonstream, "_CHUNK", chunk)
    scans = 0
    real = json.JSONDecoder.raw_decode

    def counted(self: json.JSONDecoder, text: str, start: int = 0) -> tuple[Any, int]:
        nonlocal scans
        scans += 1
        return real(self, text, start)

    monkeypatch.setattr(json.JSONDecoder, "raw_decode", counted)
    items = [{"metadata": {"name": f"pod-{i}", "labels": {"app": "web"}}, "n": i} for i in range(5000)]
    data = json.dumps({"apiVersion": "v1", "items": items, "kind": "List"}, indent=4).encode()
    found, error = read(data)
    assert error is None and len(found) == len(items) + 1
    members = 3 + 2  # the names apiVersion, items and kind; the values of apiVersion and kind
    assert scans <= len(items) + members + len(data) // chunk + 1


def test_bytes_that_are_not_utf8_end_the_stream_where_they_are() -> None:
    data = b'{"items": [{"a": "\xc3\xa9"}, {"b": "\xff"}, {"c": 3}]}'
    found, error = read(data)
    assert values(found) == [{"a": "é"}]
    assert error is not None and str(error) == "not UTF-8 at byte 31" and error.offset == data.index(b"\xff")
    assert values(read(b'\xef\xbb\xbf{"a": 1}', ())[0]) == [{"a": 1}]
    assert "UTF-16" in str(read('{"a": 1}'.encode("utf-16"))[1])


def test_offsets_count_bytes_after_multibyte_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonstream, "_CHUNK", 5)
    data = '{"items": ["ééééé", "ü", x]}'.encode()
    _, error = read(data)
    assert error is not None and error.offset == data.index(b"x")


def test_member_elements_of_text_handles() -> None:
    export = '{"events": [{"message": "a"}, {"message": "b"}], "searchedLogStreams": []} [{"message": "c"}]'
    found = list(iter_member_elements(io.StringIO(export), "events"))
    assert found == [
        ("element", {"message": "a"}),
        ("element", {"message": "b"}),
        ("object", {"searchedLogStreams": []}),
        ("element", {"message": "c"}),
    ]
    with pytest.raises(JsonStreamError, match="top-level value 1 is a int"):
        list(iter_member_elements(io.StringIO("7"), "events"))
    with pytest.raises(JsonStreamError, match="at character 12"):
        list(iter_member_elements(io.StringIO('{"events": [}'), "events"))
    with pytest.raises(JsonStreamError, match="at character 17"):
        list(iter_member_elements(io.StringIO('{"events": ["é", x]}'), "events"))

"""Streaming JSON: concatenated top-level values (watch streams, paginated CLI output) and the
elements of one large array member (``events`` of a CloudWatch Logs export) without loading it whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

_CHUNK = 1 << 20
_WHITESPACE = " \t\n\r"


class JsonStreamError(ValueError):
    """Not JSON where JSON was expected; the message says where."""


class _Buffer:
    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.text = ""
        self.pos = 0
        self.consumed = 0  # characters dropped from the front, for error offsets
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.handle.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        if self.pos > _CHUNK:
            self.consumed += self.pos
            self.text = self.text[self.pos :]
            self.pos = 0
        self.text += chunk
        return True

    def skip_space(self) -> str:
        """The next non-space character (not consumed), or '' at the end."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in _WHITESPACE:
                pos += 1
            self.pos = pos
            if pos < len(text):
                return text[pos]
            if not self.fill():
                return ""

    def expect(self, char: str) -> None:
        if self.skip_space() != char:
            raise JsonStreamError(f"expected {char!r} at character {self.consumed + self.pos}")
        self.pos += 1

    def value(self, decoder: json.JSONDecoder) -> Any:
        self.skip_space()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                # An incomplete value near the buffer's end needs more text; anything else is bad JSON.
                if self.fill():
                    continue
                raise JsonStreamError(f"invalid JSON at character {self.consumed + error.pos}: {error.msg}") from None
            # A number at the very end of the buffer may continue in the next chunk.
            if end == len(self.text) and not self.eof and self.fill():
                continue
            self.pos = end
            return value


def iter_values(handle: IO[str]) -> Iterator[Any]:
    """Each top-level JSON value in a stream of values written one after another."""
    decoder = json.JSONDecoder()
    buffer = _Buffer(handle)
    while buffer.skip_space():
        yield buffer.value(decoder)


def iter_member_elements(handle: IO[str], member: str) -> Iterator[tuple[str, Any]]:
    """For each top-level object, stream the elements of array `member` one at a time.

    Yields ("element", item) for each element of `member` and ("object", {other members}) once
    per top-level object. A top-level array yields its elements as elements directly.
    """
    decoder = json.JSONDecoder()
    buffer = _Buffer(handle)
    while True:
        first = buffer.skip_space()
        if not first:
            return
        if first == "[":
            buffer.pos += 1
            yield from (("element", item) for item in _array_items(buffer, decoder))
            continue
        buffer.expect("{")
        others: dict[str, Any] = {}
        if buffer.skip_space() == "}":
            buffer.pos += 1
            yield "object", others
            continue
        while True:
            key = buffer.value(decoder)
            if not isinstance(key, str):
                raise JsonStreamError(f"expected a member name at character {buffer.consumed + buffer.pos}")
            buffer.expect(":")
            if key == member and buffer.skip_space() == "[":
                buffer.pos += 1
                for item in _array_items(buffer, decoder):
                    yield "element", item
            else:
                others[key] = buffer.value(decoder)
            separator = buffer.skip_space()
            buffer.pos += 1
            if separator == "}":
                break
            if separator != ",":
                raise JsonStreamError(f"expected ',' or '}}' at character {buffer.consumed + buffer.pos - 1}")
        yield "object", others


def _array_items(buffer: _Buffer, decoder: json.JSONDecoder) -> Iterator[Any]:
    if buffer.skip_space() == "]":
        buffer.pos += 1
        return
    while True:
        yield buffer.value(decoder)
        separator = buffer.skip_space()
        buffer.pos += 1
        if separator == "]":
            return
        if separator != ",":
            raise JsonStreamError(f"expected ',' or ']' at character {buffer.consumed + buffer.pos - 1}")

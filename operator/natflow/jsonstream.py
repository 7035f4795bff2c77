"""Streaming JSON for inputs of any size, in linear time and bounded memory.

A file holds top-level values written one after another (watch streams, paginated CLI output).
The elements of a top-level array, and of the top-level array members named by the caller (the
``items`` of a ``kubectl get -o json`` List, the ``events`` of a CloudWatch Logs export, the
``NatGateways`` of an AWS CLI output), are read one at a time; every other value is read whole,
up to `MAX_VALUE_CHARS`.

Each value is decoded by the standard library's compiled JSON scanner from a buffer that is
refilled a chunk at a time; only the outer structure (top-level values, members, array elements)
is walked here. ijson's C backend is not used: it keeps the path of every open level, so a
deeply nested value costs memory quadratic in its depth (a 20,000-deep array takes 1 GB).

Bounds, each a `JsonStreamError` naming the byte offset, after which nothing more is read from
the file (values before it have been yielded):
- nesting deeper than `MAX_DEPTH`;
- a value read whole that is larger than `MAX_VALUE_CHARS` (no Kubernetes object or AWS record
  comes near it: etcd refuses objects over 1.5 MiB);
- bytes that are not UTF-8, invalid JSON, and a stream cut off inside a value (``truncated``).
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

MAX_DEPTH = 512
MAX_VALUE_CHARS = 16 << 20
_CHUNK = 1 << 20
# A decode error this close to the end of the buffer may only mean the value goes on in the next chunk.
_TAIL = 16

_SPACE = re.compile(r"[ \t\n\r]*")
# What may be left where the input ends inside a value: part of one string, literal or number.
_UNFINISHED = re.compile(
    r'(?:"[^"\\]*(?:\\.[^"\\]*)*\\?|t(?:ru?)?|f(?:a(?:ls?)?)?|n(?:ul?)?|-?[0-9]*\.?[0-9]*(?:[eE][-+]?[0-9]*)?)'
    r"[ \t\n\r]*\Z"
)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}
_NO_MEMBERS: Mapping[str, Any] = {}


class JsonStreamError(ValueError):
    """Not JSON where JSON was expected, or past a bound; the message says where.

    `offset` is the byte (or, for a text handle, character) offset of the problem; `truncated`
    says the input ended inside a value.
    """

    def __init__(self, message: str, offset: int, truncated: bool = False) -> None:
        super().__init__(message)
        self.offset = offset
        self.truncated = truncated


@dataclass(frozen=True, slots=True)
class Element:
    """One element of a streamed array."""

    value_index: int  # which top-level value (1-based)
    member: str | None  # the top-level member holding the array; None for a top-level array
    position: int  # index in the array (0-based)
    value: Any
    members: Mapping[str, Any]  # the enclosing object's members read so far (before the array)


@dataclass(frozen=True, slots=True)
class Value:
    """A top-level value other than an array; an object comes without its streamed members."""

    value_index: int
    value: Any
    streamed: tuple[str, ...]  # the members whose elements came before as `Element`s


class _Reader:
    """A text buffer over the handle, refilled a chunk at a time, with byte offsets for messages."""

    def __init__(self, handle: IO[bytes] | IO[str]) -> None:
        self.handle = handle
        self.decoder: codecs.IncrementalDecoder | None = None
        self.unit = "character"
        self.text = ""
        self.pos = 0
        self.dropped = 0  # bytes (characters, for a text handle) before text[0]
        self.read_bytes = 0
        self.eof = False
        self.damage: JsonStreamError | None = None  # undecodable bytes, raised where the text before them ends
        self.scan = json.JSONDecoder().raw_decode

    # -- the buffer ------------------------------------------------------------------------------
    def fill(self, wanted: int = _CHUNK) -> bool:
        """Append at least one more chunk; False at the end of the input."""
        if self.eof:
            return False
        if self.pos > _CHUNK:
            self.dropped += self.size(self.text[: self.pos])
            self.text = self.text[self.pos :]
            self.pos = 0
        raw = self.handle.read(wanted)
        text = raw if isinstance(raw, str) else self._decode(raw)
        if not raw:
            self.eof = True
            return False
        self.text += text
        return True

    def _decode(self, raw: bytes) -> str:
        if self.decoder is None:
            self.unit = "byte"
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise JsonStreamError("UTF-16 text at byte 0 (save the file as UTF-8)", 0)
            self.decoder = codecs.getincrementaldecoder("utf-8")()
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
                self.read_bytes += len(codecs.BOM_UTF8)
                self.dropped += len(codecs.BOM_UTF8)
        pending = self.decoder.getstate()[0]
        before = self.read_bytes - len(pending)
        self.read_bytes += len(raw)
        try:
            return self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as error:
            # Keep the text before the bad bytes; the error comes where that text ends.
            at = before + error.start
            self.damage = JsonStreamError(f"not UTF-8 at byte {at}", at)
            self.eof = True
            return (pending + raw)[: error.start].decode("utf-8")

    def size(self, text: str) -> int:
        """How long `text` was in the input, in `unit`s."""
        return len(text) if self.decoder is None or text.isascii() else len(text.encode("utf-8", "surrogatepass"))

    def offset(self, pos: int) -> int:
        return self.dropped + self.size(self.text[:pos])

    def error(self, message: str, pos: int) -> JsonStreamError:
        at = self.offset(pos)
        return JsonStreamError(f"{message} at {self.unit} {at}", at)

    def truncated(self) -> JsonStreamError:
        """The input ended inside a value (or where undecodable bytes begin)."""
        if self.damage is not None:
            return self.damage
        end = self.offset(len(self.text))
        return JsonStreamError(f"truncated at {self.unit} {end}: the input ends inside a value", end, truncated=True)

    def more(self) -> bool:
        """Read on: the value at `pos` may go on. False at the end of the input."""
        pending = len(self.text) - self.pos
        if pending > MAX_VALUE_CHARS and not self.eof:
            raise self.too_large(self.pos)
        return self.fill(max(_CHUNK, pending))

    def too_large(self, pos: int) -> JsonStreamError:
        limit = MAX_VALUE_CHARS / (1 << 20)
        return self.error(f"a single JSON value larger than {limit:g} MiB (no input object is that large)", pos)

    # -- the grammar -----------------------------------------------------------------------------
    def peek(self) -> str:
        """The next character after white space (not consumed), or '' at the end of the input."""
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def value(self, depth: int) -> Any:
        """The next value, whole; `depth` is how many arrays and objects enclose it."""
        while True:
            start = self.pos  # refilling may move the text, so this is read again each time
            try:
                found, end = self.scan(self.text, start)
            except json.JSONDecodeError as error:
                into = error.pos - start  # refilling may move the text
                near_end = error.pos >= len(self.text) - _TAIL or error.msg.startswith("Unterminated string")
                unfinished = near_end and _UNFINISHED.match(self.text, error.pos) is not None
                if near_end and self.more():
                    continue
                if unfinished:  # and nothing more to read
                    raise self.truncated() from None
                raise self.error(f"invalid JSON ({error.msg})", self.pos + into) from None
            except RecursionError:
                raise self.error(f"JSON nested deeper than {MAX_DEPTH} levels", start) from None
            if end == len(self.text) and self.more():
                continue  # a number at the end of the buffer may go on
            if end - start > MAX_VALUE_CHARS:
                raise self.too_large(start)
            self._check_depth(start, end, depth)
            self.pos = end
            return found

    def _check_depth(self, start: int, end: int, depth: int) -> None:
        text = self.text
        brackets = text.count("[", start, end) + text.count("{", start, end)
        if depth + brackets <= MAX_DEPTH:
            return
        structure = _NOT_BRACKET.sub("", _STRING.sub("", text[start:end]))
        deepest = max(itertools.accumulate(map(_BRACKET_DEPTH.__getitem__, structure)), default=0)
        if depth + deepest > MAX_DEPTH:
            raise self.error(f"JSON nested deeper than {MAX_DEPTH} levels", start)

    def expect(self, wanted: str, what: str) -> str:
        """Consume the next character, one of `wanted`."""
        found = self.peek()
        if not found:
            raise self.truncated()
        if found not in wanted:
            raise self.error(f"invalid JSON (expected {what})", self.pos)
        self.pos += 1
        return found

    def elements(self, depth: int) -> Iterator[Any]:
        """The elements of the array whose '[' was just consumed; `depth` encloses the array."""
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            if not self.peek():
                raise self.truncated()
            yield self.value(depth + 1)
            if self.expect(",]", "',' or ']'") == "]":
                return

    def members(self) -> Iterator[str]:
        """The member names of the top-level object whose '{' was just consumed; the caller reads each value."""
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            found = self.peek()
            if found != '"':
                raise self.error("invalid JSON (expected a member name)", self.pos) if found else self.truncated()
            name = self.value(1)
            self.expect(":", "':'")
            if not self.peek():
                raise self.truncated()
            yield name
            if self.expect(",}", "',' or '}'") == "}":
                return


def iter_stream(handle: IO[bytes] | IO[str], streamed: Collection[str] = ()) -> Iterator[Element | Value]:
    """Every top-level value in `handle`, the arrays named in `streamed` one element at a time.

    A top-level array yields its elements (member None) and no `Value`. Raises `JsonStreamError`
    at the first problem, after yielding everything before it.
    """
    reader = _Reader(handle)
    for index in itertools.count(1):
        first = reader.peek()
        if not first:
            if reader.damage is not None:
                raise reader.damage
            return
        if first == "[":
            reader.pos += 1
            for position, item in enumerate(reader.elements(0)):
                yield Element(index, None, position, item, _NO_MEMBERS)
        elif first == "{" and streamed:
            reader.pos += 1
            members: dict[str, Any] = {}
            names: list[str] = []
            for name in reader.members():
                if name in streamed and reader.peek() == "[":
                    reader.pos += 1
                    names.append(name)
                    for position, item in enumerate(reader.elements(1)):
                        yield Element(index, name, position, item, members)
                else:
                    members[name] = reader.value(1)
            yield Value(index, members, tuple(names))
        else:
            yield Value(index, reader.value(0), ())


def iter_member_elements(handle: IO[bytes] | IO[str], member: str) -> Iterator[tuple[str, Any]]:
    """For each top-level object, stream the elements of array `member` one at a time.

    Yields ("element", item) for each element of `member` and ("object", {other members}) once
    per top-level object. A top-level array yields its elements as elements directly.
    """
    for found in iter_stream(handle, (member,)):
        if isinstance(found, Element):
            yield "element", found.value
        elif isinstance(found.value, dict):
            yield "object", found.value
        else:
            raise JsonStreamError(
                f"top-level value {found.value_index} is a {type(found.value).__name__}, not an object or array",
                -1,
            )

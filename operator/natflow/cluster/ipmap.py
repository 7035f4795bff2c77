"""The time-indexed IP map: who held an address when.

Two layers answer "who had address A between t0 and t1":

1. pod leases: a pod (not hostNetwork) holds its IPs from when it got them until it released them;
2. node addresses: a node owns its InternalIP and every private IP and delegated prefix on its
   ENIs for as long as the node exists. An address of a node that no pod held goes to the node.

Leases of one address never overlap: a later holder starts no earlier than the previous holder's
end, and a holder with no known end ends when the next one starts.

The map is sized for two days of churn in a large cluster (a million leases) without a Python
object per lease, per pod or per address: pods are columns (interned strings; uids and names
packed in one buffer) and PodRecords are built when asked for; addresses, uids and prefixes are
found through open-addressing tables over flat arrays; intervals sit in flat arrays sorted by
(address, start), resolved by the rules above in bulk. An update touches only its address, which
is then re-resolved alone when read, so the operator can feed pod events one at a time while
reports read the map; many updates, or a batch of lookups asking about many changed addresses,
trigger one bulk rebuild. `lookup_columns` answers many queries at once with numpy, as holder
indices.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import ipaddress
import itertools
import socket
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, ValuesView
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from natflow.cluster.objects import OwnerRef, PodRecord
from natflow.net import normalize_address

FOREVER = 1 << 62
NO_END: Final = -(1 << 63)  # "still held" in int64 end columns, which cannot hold None

# What lookup_columns found for a query; also the kinds of its pieces.
HELD_BY_NOBODY: Final = 0
HELD_BY_POD: Final = 1
HELD_BY_NODE: Final = 2
SPLIT: Final = 3  # answered as pieces: several holders shared the interval

# A rebuild re-sorts everything; below this many changes, re-resolving changed addresses is cheaper.
REBUILD_MIN_CHANGES = 4096
RECORD_CACHE_SIZE = 65536  # PodRecords kept built for repeated lookups of the same pods
BULK_CHUNK = 8192  # pods per vectorised step of put_pods: few at a time fragment memory less
PARALLEL_QUERIES = 1 << 17  # lookup_columns answers batches this large on two threads
LOOKUP_FILL = 0.5  # the most a table that every lookup probes may fill (addresses, prefixes)
# A query of a group changed since the last rebuild is answered alone, at about the cost of
# rebuilding this many entries: beyond that, a batch rebuilds first.
REBUILD_ENTRIES_PER_QUERY = 16

_ALIVE: Final = 1
_END_IS_ESTIMATE: Final = 2
_BRANCH_ENI: Final = 4
_WORD: Final = (1 << 64) - 1
_MIX: Final = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)  # odd multipliers spreading keys over slots

T = TypeVar("T")
Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
Words = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]
Piece = tuple[int, int, int, int]  # start, end, HELD_BY_* kind, pod or node address index (-1 for nobody)
# Pieces as columns: query index, start, end, HELD_BY_* kind, holder index.
_PieceColumns = tuple[Int64s, Int64s, Int64s, npt.NDArray[np.int8], Int32s]
# One group's resolved intervals: starts, ends, holders and the [lo, hi) range of them that is the group.
_View = tuple[Sequence[int], Sequence[int], Sequence[int], int, int]
_EMPTY_VIEW: _View = ((), (), (), 0, 0)


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """An address (or prefix) a node owns; `primary` marks the node IP that SNAT rewrites to."""

    node: str
    interface_id: str | None
    primary: bool


@dataclass(frozen=True, slots=True)
class HolderColumns:
    """What `lookup_columns` found, per query: the holder of the whole interval, as an index; for
    queries that several holders shared (SPLIT), their pieces, as columns ordered by query, then start.

    `IpMap.pod_at` and `IpMap.node_address_at` read the indices, which stay valid until `IpMap.prune`.
    """

    kinds: npt.NDArray[np.int8]  # HELD_BY_NOBODY, HELD_BY_POD, HELD_BY_NODE or SPLIT
    holders: Int32s  # the pod index (HELD_BY_POD) or node address index (HELD_BY_NODE), else -1
    piece_queries: Int64s  # the SPLIT query of each piece
    piece_starts: Int64s
    piece_ends: Int64s
    piece_kinds: npt.NDArray[np.int8]  # HELD_BY_NOBODY, HELD_BY_POD or HELD_BY_NODE
    piece_holders: Int32s  # as `holders`


@dataclass(frozen=True, slots=True)
class PodColumns:
    """Many pods field by field for bulk loads (a restart reads a million from the store):
    PodRecord's fields, each a sequence with an entry per pod; owners as (kind, name)."""

    uid: Sequence[str]
    namespace: Sequence[str]
    name: Sequence[str]
    node: Sequence[str]
    ips: Sequence[tuple[str, ...]]
    host_network: Sequence[bool]
    start: Sequence[int]
    end: Sequence[int | None]
    end_is_estimate: Sequence[bool]
    owner: Sequence[tuple[str, str] | None]
    template_hash: Sequence[str | None]
    branch_eni: Sequence[bool]

    @classmethod
    def of(cls, pods: Sequence[PodRecord]) -> PodColumns:
        return cls(
            uid=[pod.uid for pod in pods],
            namespace=[pod.namespace for pod in pods],
            name=[pod.name for pod in pods],
            node=[pod.node for pod in pods],
            ips=[pod.ips for pod in pods],
            host_network=[pod.host_network for pod in pods],
            start=[pod.start for pod in pods],
            end=[pod.end for pod in pods],
            end_is_estimate=[pod.end_is_estimate for pod in pods],
            owner=[(pod.owner.kind, pod.owner.name) if pod.owner else None for pod in pods],
            template_hash=[pod.template_hash for pod in pods],
            branch_eni=[pod.branch_eni for pod in pods],
        )

    def __len__(self) -> int:
        return len(self.uid)

    def record(self, index: int) -> PodRecord:
        owner = self.owner[index]
        return PodRecord(
            uid=self.uid[index],
            namespace=self.namespace[index],
            name=self.name[index],
            node=self.node[index],
            ips=tuple(self.ips[index]),
            host_network=bool(self.host_network[index]),
            start=self.start[index],
            end=self.end[index],
            end_is_estimate=bool(self.end_is_estimate[index]),
            owner=OwnerRef(*owner) if owner else None,
            template_hash=self.template_hash[index],
            branch_eni=bool(self.branch_eni[index]),
        )

    def select(self, indices: Sequence[int]) -> PodColumns:
        picked = {column.name: _pick(getattr(self, column.name), indices) for column in dataclasses.fields(self)}
        return PodColumns(**picked)


def distinct(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """np.unique(values) without the first plain np.unique's import of numpy.ma (~40 ms a process)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _pick(column: Sequence[T], indices: Sequence[int]) -> list[T]:
    return [column[index] for index in indices]


# -- numpy views of array columns (callers keep no view while the column may still grow) ------------
def _int64s(column: array[int]) -> Int64s:
    return np.frombuffer(column, np.int64) if len(column) else np.zeros(0, np.int64)


def _int32s(column: array[int]) -> Int32s:
    return np.frombuffer(column, np.int32) if len(column) else np.zeros(0, np.int32)


def _int8s(column: array[int]) -> npt.NDArray[np.int8]:
    return np.frombuffer(column, np.int8) if len(column) else np.zeros(0, np.int8)


def _column(values: npt.NDArray[np.generic], typecode: str) -> array[int]:
    return array(typecode, values.tobytes())


def _by_id(values: Int64s | Int32s, ids: Int64s) -> Int64s:
    """values[id] for each id, -1 where the id is -1 (an unknown address)."""
    if not len(values):
        return np.full(len(ids), -1, np.int64)
    return np.where(ids >= 0, values[ids], -1).astype(np.int64, copy=False)  # one gather, no masks


# -- addresses ------------------------------------------------------------------------------------------
def _ipv4_int(address: str) -> int:
    """The address as an integer if it is IPv4 text (dotted decimal, as Python's ipaddress reads it), else -1."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, ValueError):  # not IPv4; ValueError: a NUL inside
        return -1


def _text_key(text: str) -> tuple[int, int] | None:
    """A short address text (IPv4's is at most 15 bytes) as two little-endian words; None for texts
    with ':' (IPv6, looked up in canonical form) or NUL, longer ones, and non-ASCII ones."""
    if not 0 < len(text) <= 15 or ":" in text or "\0" in text:
        return None
    data = text.encode()
    if len(data) > 15:
        return None
    padded = data.ljust(16, b"\0")
    return int.from_bytes(padded[:8], "little"), int.from_bytes(padded[8:], "little")


def _text_keys(texts: Sequence[str]) -> tuple[Words, Words, Bools, npt.NDArray[np.uint8] | None]:
    """`_text_key` of many texts at once: both words, which texts have a key, and the texts as a
    matrix of 16 bytes each (None when some text is not ASCII: then none has a key)."""
    count = len(texts)
    try:
        raw = np.fromiter(texts, "S16", count)  # truncates longer texts and drops trailing NULs: see `short`
    except UnicodeEncodeError:
        return np.zeros(count, np.uint64), np.zeros(count, np.uint64), np.zeros(count, bool), None
    data = raw.view(np.uint8).reshape(count, 16)
    short = (data[:, 0] != 0) & (data[:, 15] == 0)  # 1 to 15 bytes, unless NULs hide the length
    joined = "".join(texts)
    if "\0" in joined:
        lengths = np.fromiter(map(len, texts), np.int64, count)
        short &= (data != 0).sum(1) == lengths
    if ":" in joined:
        short &= ~(data == ord(":")).any(1)
    words = raw.view("<u8").reshape(count, 2)
    return words[:, 0].copy(), words[:, 1].copy(), short, data


def _ipv4_values(data: npt.NDArray[np.uint8], short: Bools) -> Int64s:
    """`_ipv4_int` of many texts at once, given `_text_keys`' matrix and which texts are short
    (every IPv4 text is): four dot-separated decimal octets up to 255, no leading zeros."""
    values = np.full(len(short), -1, np.int64)
    count = int(short.sum())
    # Character by row: each step below runs over whole vectors; four zero rows let an octet's
    # third character lie past the text.
    columns = np.zeros((20, count), np.uint8)
    columns[:16] = data[short].T
    used = columns != 0
    dot = columns == ord(".")
    dots_seen = np.cumsum(dot, axis=0, dtype=np.int8)
    valid = (((columns >= ord("0")) & (columns <= ord("9")) | dot) == used).all(0) & (dots_seen[-1] == 3)
    dot_at = [(dots_seen[:16] < seen).sum(0) for seen in (1, 2, 3)]  # where the first, second, third dot are
    octets = zip((np.zeros(count, np.int64), *(at + 1 for at in dot_at)), (*dot_at, used.sum(0)), strict=True)
    flat = columns.ravel()
    row = np.arange(count)
    combined = np.zeros(count, np.int64)
    for start, end in octets:
        length = end - start
        first, second, third = (flat[(start + offset) * count + row].astype(np.int64) - ord("0") for offset in range(3))
        value = np.where(length == 1, first, np.where(length == 2, first * 10 + second, first * 100 + second * 10))
        value += np.where(length == 3, third, 0)
        valid &= (length >= 1) & (length <= 3) & (value <= 255) & ((first != 0) | (length == 1))
        combined = (combined << 8) | np.where(valid, value, 0)
    values[short] = np.where(valid, combined, -1)
    return values


def _network_key(cidr: str) -> tuple[int, int, int, str]:
    """(family, prefix length, network as an integer, network address text) of an address or CIDR."""
    if "/" not in cidr:
        value = _ipv4_int(cidr)
        if value >= 0:
            return 4, 32, value, cidr
    network = ipaddress.ip_network(cidr, strict=False)
    return network.version, network.prefixlen, int(network.network_address), str(network.network_address)


# -- vectorised helpers ---------------------------------------------------------------------------------
def _bisect_right(values: Int64s, lo: Int64s, hi: Int64s, keys: Int64s) -> Int64s:
    """bisect.bisect_right(values, key, lo, hi) for every query at once; lo and hi are consumed."""
    active = np.flatnonzero(lo < hi)
    while active.size:
        low, high, key = lo[active], hi[active], keys[active]
        middle = (low + high) >> 1
        right = values[middle] <= key
        lo[active[right]] = middle[right] + 1
        hi[active[~right]] = middle[~right]
        active = active[lo[active] < hi[active]]
    return lo


def _on_halves(
    pool: ThreadPoolExecutor | None, function: Callable[[int, int], T], halves: list[tuple[int, int]]
) -> list[T]:
    """`function(low, high)` of each half: on the pool's threads if there is one."""
    if pool is None:
        return [function(low, high) for low, high in halves]
    return list(pool.map(function, *zip(*halves, strict=True)))


def _cover(view: _View, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Split [start, end) into pieces with their holder (-1 where nobody held it)."""
    starts, ends, holders, lo, hi = view
    index = max(bisect.bisect_right(starts, start, lo, hi) - 1, lo)
    cursor = start
    while index < hi and starts[index] < end:
        lease_start, lease_end = starts[index], ends[index]
        if lease_end > cursor:
            if lease_start > cursor:
                yield cursor, lease_start, -1
                cursor = lease_start
            piece_end = min(lease_end, end)
            if piece_end > cursor:
                yield cursor, piece_end, holders[index]
                cursor = piece_end
        index += 1
    if cursor < end:
        yield cursor, end, -1


class _Slots:
    """Open addressing from keys of one or two 64-bit words (the first never 0) to int32 values.
    (With one word, `key[-1]` is `key[0]`: the probes below compare the last word too.)

    Flat arrays instead of a dict, which would cost a key and a value object per entry. A slot
    whose value is -1 was removed; probes go on past it. Keys may repeat (hashes of uids): callers
    tell equal keys apart themselves. Many keys are found or added at once in vectorised rounds.
    A table grows when more than `max_fill` of its slots are used: emptier tables take fewer
    probes to find a key (and far fewer to miss one) for more memory.
    """

    def __init__(self, words: int, max_fill: float = 2 / 3) -> None:
        self._words = words
        self._max_fill = max_fill
        self._used = 0  # slots with a key, removed ones included
        self._allocate(16)

    def _allocate(self, size: int) -> None:
        self._keys = [np.zeros(size, np.uint64) for _ in range(self._words)]
        self._values = np.full(size, -1, np.int32)
        # memoryviews index as Python ints, much faster than numpy scalars for one-at-a-time probes
        self._key_slots = [keys.data for keys in self._keys]
        self._value_slots = self._values.data
        self._mask = size - 1
        self._shift = 65 - size.bit_length()  # slot = top bits of the mixed key

    def _home(self, key: Sequence[int]) -> int:
        if self._words == 1:
            return ((key[0] * _MIX[0]) & _WORD) >> self._shift
        return (((key[0] * _MIX[0]) ^ (key[1] * _MIX[1])) & _WORD) >> self._shift

    def _homes(self, keys: Sequence[Words]) -> Int64s:
        mixed = np.zeros(len(keys[0]), np.uint64)
        for word, multiplier in zip(keys, _MIX, strict=False):
            mixed ^= word * np.uint64(multiplier)
        return (mixed >> np.uint64(self._shift)).astype(np.int64)

    def _probe(self, key: Sequence[int]) -> Iterator[int]:
        """The live slots holding key, in probe order."""
        first, second, values, mask = self._key_slots[0], self._key_slots[-1], self._value_slots, self._mask
        slot = self._home(key)
        while found := first[slot]:
            if found == key[0] and values[slot] >= 0 and second[slot] == key[-1]:
                yield slot
            slot = (slot + 1) & mask

    def get(self, key: Sequence[int]) -> int:
        """The value of the first live slot holding key, or -1 (`_probe` without a generator)."""
        first, second, values, mask = self._key_slots[0], self._key_slots[-1], self._value_slots, self._mask
        slot = self._home(key)
        while found := first[slot]:
            if found == key[0] and values[slot] >= 0 and second[slot] == key[-1]:
                value: int = values[slot]
                return value
            slot = (slot + 1) & mask
        return -1

    def values(self, key: Sequence[int]) -> Iterator[int]:
        return (self._value_slots[slot] for slot in self._probe(key))

    def find(self, keys: Sequence[Words], accept: Callable[[int, int], bool] | None = None) -> Int64s:
        """`get` for many keys at once; `accept(query, value)`, if given, must approve a match."""
        count = len(keys[0])
        found = np.full(count, -1, np.int64)
        slots = self._homes(keys)
        waiting = np.arange(count)
        while waiting.size:
            at = slots[waiting]
            first = self._keys[0][at]
            done = first == 0
            match = ~done & (first == keys[0][waiting])
            for word in range(1, self._words):
                match &= self._keys[word][at] == keys[word][waiting]
            matched = np.flatnonzero(match)
            values = self._values[at[matched]]  # read where the key matched only: one gather less
            live = values >= 0
            if accept is not None:
                for position in np.flatnonzero(live).tolist():
                    live[position] = accept(int(waiting[matched[position]]), int(values[position]))
            found[waiting[matched[live]]] = values[live]
            done[matched[live]] = True
            waiting = waiting[~done]
            slots[waiting] = (slots[waiting] + 1) & self._mask
        return found

    def add(self, key: Sequence[int], value: int) -> None:
        if self._used + 1 > len(self._values) * self._max_fill:
            self._resize(1)
        first, mask = self._key_slots[0], self._mask
        slot = self._home(key)
        while first[slot]:
            slot = (slot + 1) & mask
        for word in range(self._words):
            self._key_slots[word][slot] = key[word]
        self._value_slots[slot] = value
        self._used += 1

    def add_many(self, keys: Sequence[Words], values: Int32s) -> None:
        if self._used + len(values) > len(self._values) * self._max_fill:
            self._resize(len(values))
        self._place(keys, values)

    def remove(self, key: Sequence[int], value: int) -> None:
        for slot in self._probe(key):
            if self._value_slots[slot] == value:
                self._value_slots[slot] = -1
                return

    def _resize(self, more: int) -> None:
        """Move the live slots into a table at most 3/4 as full as allowed once `more` are added."""
        live = (self._keys[0] != 0) & (self._values >= 0)
        keys, values = [words[live] for words in self._keys], self._values[live]
        size = 16
        while size * self._max_fill * 3 < 4 * (len(values) + more):
            size *= 2
        self._allocate(size)
        self._used = 0
        self._place(keys, values)

    def _place(self, keys: Sequence[Words], values: Int32s) -> None:
        """Add in rounds: each waiting key takes its probe slot if free (one winner per slot) and the
        others probe on, which is where adding them one by one could have put them."""
        slots = self._homes(keys)
        waiting = np.arange(len(values))
        placed = np.zeros(len(values), bool)
        while waiting.size:
            targets = slots[waiting]
            free = self._keys[0][targets] == 0
            taken, first = np.unique(targets[free], return_index=True)
            winners = waiting[free][first]
            for word in range(self._words):
                self._keys[word][taken] = keys[word][winners]
            self._values[taken] = values[winners]
            placed[winners] = True
            waiting = waiting[~placed[waiting]]
            slots[waiting] = (slots[waiting] + 1) & self._mask
        self._used += len(values)


class _Timelines:
    """Intervals grouped by an integer key (an address, a node network), each naming a holder index.

    Entries are appended to flat columns. A rebuild sorts the live ones by (group, start) and
    resolves them into flat sorted arrays with per-group offsets; the resolution is vectorised and
    only groups with overlaps, ties, open ends before the last or empty intervals go through the
    rule loop. Groups changed after a rebuild are resolved one by one when read.
    """

    def __init__(self, tiebreak: Callable[[int], str]) -> None:
        self._tiebreak = tiebreak  # holder -> its order among intervals that start in the same second
        self._group = array("i")
        self._start = array("q")
        self._end = array("q")
        self._holder = array("i")
        self._alive = array("b")
        self._groups = 0  # group ids are below this
        self._built = 0  # entries [0, _built) were sorted by (group, start) at the last rebuild
        self._rebuild_after = REBUILD_MIN_CHANGES  # entries added since then
        self._raw_offsets = np.zeros(1, np.int32).data  # group -> its range of those entries
        self._offsets: Int32s = np.zeros(1, np.int32)  # group -> its range of resolved intervals
        self._starts: Int64s = np.zeros(0, np.int64)
        self._ends: Int64s = np.zeros(0, np.int64)
        self._holders: Int32s = np.zeros(0, np.int32)
        self._views = self._memoryviews()
        self._recent: dict[int, list[int]] = {}  # group -> entries added since the rebuild
        self._dirty: dict[int, tuple[list[int], list[int], list[int]] | None] = {}  # changed groups
        self._stale = False  # a bulk add is not in _recent or _dirty: rebuild before reading
        self._conflicts: dict[int, int] = {}  # group -> entries dropped by the rules (only nonzero)

    def _memoryviews(self) -> tuple[memoryview, memoryview, memoryview, memoryview]:
        """The resolved arrays for scalar reads: a memoryview indexes as ints, much faster than numpy."""
        return self._offsets.data, self._starts.data, self._ends.data, self._holders.data

    # -- changes ---------------------------------------------------------------------------------------
    def add(self, group: int, start: int, end: int, holder: int) -> None:
        """Add [start, end) for holder (end NO_END: until the next holder starts)."""
        index = len(self._alive)
        self._group.append(group)
        self._start.append(start)
        self._end.append(end)
        self._holder.append(holder)
        self._alive.append(1)
        if group >= self._groups:
            self._groups = group + 1
        if self._stale:  # a rebuild comes before the next read anyway
            return
        self._track(group, index)
        if index - self._built >= self._rebuild_after:
            self.rebuild()  # bulk loads: rebuilding at doubling sizes keeps the total n log n

    def add_many(self, groups: Int32s, starts: Int64s, ends: Int64s, holders: Int32s) -> None:
        """`add` for many entries; a large batch waits, untracked, for one rebuild at the next read."""
        first = len(self._alive)
        self._group.frombytes(groups.tobytes())
        self._start.frombytes(starts.tobytes())
        self._end.frombytes(ends.tobytes())
        self._holder.frombytes(holders.tobytes())
        self._alive.frombytes(bytes([1]) * len(groups))
        if len(groups):
            self._groups = max(self._groups, int(groups.max()) + 1)
        if self._stale or len(groups) >= REBUILD_MIN_CHANGES:
            self._stale = True
            return
        for index, group in enumerate(groups.tolist(), first):
            self._track(group, index)

    def _track(self, group: int, index: int) -> None:
        """Entry `index`, added to `group` since the rebuild, is read with the group's resolved entries."""
        recent = self._recent.get(group)
        if recent is None:
            self._recent[group] = [index]
        else:
            recent.append(index)
        self._dirty[group] = None

    def _fresh(self) -> None:
        if self._stale:
            self.rebuild()

    def remove(self, group: int, holders: Collection[int]) -> None:
        self._fresh()
        for index in self._entries(group):
            if self._holder[index] in holders:
                self._alive[index] = 0
        self._dirty[group] = None

    def _entries(self, group: int) -> list[int]:
        """The live entries of a group."""
        found: list[int] = []
        if group + 1 < len(self._raw_offsets):
            found.extend(range(self._raw_offsets[group], self._raw_offsets[group + 1]))
        found.extend(self._recent.get(group, ()))
        return [index for index in found if self._alive[index]]

    # -- resolution ------------------------------------------------------------------------------------
    def _resolve(self, entries: Iterable[int]) -> tuple[list[int], list[int], list[int], int]:
        """The overlap rules over one group's entries: resolved starts, ends, holders and conflicts."""
        start_of, end_of, holder_of = self._start, self._end, self._holder
        ordered = sorted(entries, key=lambda index: (start_of[index], self._tiebreak(holder_of[index])))
        starts: list[int] = []
        ends: list[int] = []
        holders: list[int] = []
        conflicts = 0
        for index in ordered:
            start, end = start_of[index], end_of[index]
            if holders:
                if ends[-1] == FOREVER:  # the previous holder's end was unknown
                    ends[-1] = max(start, starts[-1])
                if start < ends[-1]:
                    start = ends[-1]
            stop = FOREVER if end == NO_END else end
            if stop <= start and holders and end != NO_END:
                conflicts += 1  # wholly inside the previous holder's lease: cannot have held it
                continue
            starts.append(start)
            ends.append(max(stop, start))
            holders.append(holder_of[index])
        # Empty intervals (kept above only to place the next one) hold nothing.
        kept = [i for i in range(len(starts)) if ends[i] > starts[i]]
        return [starts[i] for i in kept], [ends[i] for i in kept], [holders[i] for i in kept], conflicts

    def _resolved_group(self, group: int) -> tuple[list[int], list[int], list[int]]:
        found = self._dirty[group]
        if found is None:
            starts, ends, holders, conflicts = self._resolve(self._entries(group))
            found = self._dirty[group] = (starts, ends, holders)
            if conflicts:
                self._conflicts[group] = conflicts
            else:
                self._conflicts.pop(group, None)
        return found

    def rebuild(self) -> None:
        """Sort and compact the live entries, then resolve every group into the flat arrays."""
        alive = _int8s(self._alive).astype(bool)
        group = _int32s(self._group)[alive]
        start = _int64s(self._start)[alive]
        end = _int64s(self._end)[alive]
        holder = _int32s(self._holder)[alive]
        del alive
        order = np.lexsort((start, group))
        group, start, end, holder = group[order], start[order], end[order], holder[order]
        self._group, self._start = _column(group, "i"), _column(start, "q")
        self._end, self._holder = _column(end, "q"), _column(holder, "i")
        self._alive = array("b", bytes([1])) * len(group)
        self._built = len(group)
        self._rebuild_after = max(REBUILD_MIN_CHANGES, self._built)
        bounds = np.arange(self._groups + 1)
        raw_offsets = np.searchsorted(group, bounds).astype(np.int32)
        self._raw_offsets = raw_offsets.data
        self._recent.clear()
        self._dirty.clear()
        self._conflicts.clear()
        self._stale = False

        # Groups the vectorised pass cannot resolve: an open end before the last entry, an overlap
        # or a tie (the next starts before the previous ends), or an empty or negative interval.
        open_end = end == NO_END
        irregular = (group[1:] == group[:-1]) & (open_end[:-1] | (start[1:] < end[:-1]))
        odd = ~open_end & ((end <= start) | (end >= FOREVER))  # FOREVER itself reads as "end unknown"
        special = distinct(np.concatenate((group[1:][irregular], group[odd])))
        regular = np.ones(len(group), bool)
        starts_parts, ends_parts, holders_parts, groups_parts = [], [], [], []
        for special_group in special.tolist():
            lo, hi = int(raw_offsets[special_group]), int(raw_offsets[special_group + 1])
            regular[lo:hi] = False
            starts_list, ends_list, holders_list, conflicts = self._resolve(range(lo, hi))
            if conflicts:
                self._conflicts[special_group] = conflicts
            starts_parts.append(np.array(starts_list, np.int64))
            ends_parts.append(np.array(ends_list, np.int64))
            holders_parts.append(np.array(holders_list, np.int32))
            groups_parts.append(np.full(len(starts_list), special_group, np.int32))
        starts = np.concatenate([start[regular], *starts_parts])
        ends = np.concatenate([np.where(open_end, FOREVER, end)[regular], *ends_parts])
        holders = np.concatenate([holder[regular], *holders_parts])
        groups = np.concatenate([group[regular], *groups_parts])
        if special.size:
            order = np.lexsort((starts, groups))
            starts, ends, holders, groups = starts[order], ends[order], holders[order], groups[order]
        self._starts, self._ends, self._holders = starts, ends, holders
        self._offsets = np.searchsorted(groups, bounds).astype(np.int32)
        self._views = self._memoryviews()

    # -- reads -----------------------------------------------------------------------------------------
    def timeline(self, group: int) -> _View:
        self._fresh()
        if group in self._dirty:
            starts, ends, holders = self._resolved_group(group)
            return starts, ends, holders, 0, len(starts)
        offsets, starts_view, ends_view, holders_view = self._views
        if group < 0 or group + 1 >= len(offsets):
            return _EMPTY_VIEW
        return starts_view, ends_view, holders_view, offsets[group], offsets[group + 1]

    def classify(self, groups: Int64s, starts: Int64s, ends: Int64s) -> tuple[Int32s, Bools, Bools]:
        """For each query [start, end) of a group (-1: none): the holder of an interval covering it
        (else -1); whether no interval touches it; and whether its group changed since the rebuild
        (to be read with `timeline`). A query neither covered nor free touches several intervals.
        Only reads once `prepare_reads` ran, so threads may share the work."""
        self._fresh()
        changed = np.zeros(len(groups), bool)
        if self._dirty:
            changed = np.isin(groups, np.fromiter(self._dirty, np.int64, len(self._dirty)))
        lo, hi = self._ranges(groups, changed)
        holders = np.full(len(groups), -1, np.int32)
        free = ~changed
        some = np.flatnonzero(lo < hi)  # queries of groups with intervals: the others touch none
        lo, hi, start, end = lo[some], hi[some], starts[some], ends[some]
        after = _bisect_right(self._starts, lo.copy(), hi.copy(), start)  # the first interval starting later
        before = np.maximum(after - 1, 0)
        has_before = after > lo
        before_end = np.where(has_before, self._ends[before], NO_END)
        next_start = np.where(after < hi, self._starts[np.minimum(after, len(self._starts) - 1)], FOREVER)
        covered = has_before & (before_end >= end)
        holders[some[covered]] = self._holders[before[covered]]
        free[some] &= (before_end <= start) & (next_start >= end)
        return holders, free, changed

    def prepare_reads(self, queries: int, groups: Int64s | None = None) -> None:
        """Rebuild now if a bulk add waits, or if answering the queries of changed groups one by one
        would cost more than a rebuild: so many groups changed, or so many of these `queries` (of
        `groups`, when known; else all of them) ask about changed groups."""
        if self._stale or len(self._dirty) > max(REBUILD_MIN_CHANGES, len(self._alive) >> 5):
            self.rebuild()
            return
        if not self._dirty:
            return
        if groups is not None:
            queries = int(np.count_nonzero(np.isin(groups, np.fromiter(self._dirty, np.int64, len(self._dirty)))))
        if queries * REBUILD_ENTRIES_PER_QUERY >= max(REBUILD_MIN_CHANGES, len(self._alive)):
            self.rebuild()

    def _ranges(self, groups: Int64s, changed: Bools) -> tuple[Int64s, Int64s]:
        """Each group's [lo, hi) range of resolved intervals; empty for none, new or changed groups."""
        count = len(self._offsets) - 1
        indexed = (groups >= 0) & (groups < count) & ~changed
        group = np.where(indexed, groups, 0)
        lo = np.where(indexed, self._offsets[group], 0).astype(np.int64)
        hi = np.where(indexed, self._offsets[np.minimum(group + 1, count)], 0).astype(np.int64)
        return lo, hi

    def touching(self, groups: Int64s, starts: Int64s, ends: Int64s) -> tuple[Int64s, Int64s]:
        """For queries of unchanged groups: the range [first, stop) of the resolved intervals that
        overlap [start, end), as indices into `resolved`."""
        lo, hi = self._ranges(groups, np.zeros(len(groups), bool))
        if not len(self._starts):
            return lo, hi
        after = _bisect_right(self._starts, lo.copy(), hi.copy(), starts)
        previous = np.maximum(after - 1, 0)
        first = np.where((after > lo) & (self._ends[previous] > starts), previous, after)
        return first, _bisect_right(self._starts, lo, hi, ends - 1)

    @property
    def resolved(self) -> tuple[Int64s, Int64s, Int32s]:
        return self._starts, self._ends, self._holders

    def conflicts(self) -> int:
        self._fresh()
        for group in self._dirty:
            self._resolved_group(group)
        return sum(self._conflicts.values())

    def nonempty_groups(self) -> int:
        if self._dirty or self._stale:
            self.rebuild()
        return int(np.count_nonzero(np.diff(np.asarray(self._raw_offsets))))


class _Texts:
    """Strings packed into one buffer: a few bytes each instead of a str object each."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("I")  # 4-byte offsets: the buffer stays far below 4 GiB

    def append(self, text: str) -> None:
        self._data += text.encode()
        self._ends.append(len(self._data))

    def extend(self, texts: Sequence[str]) -> None:
        joined = "".join(texts)
        if joined.isascii():  # one byte per character: lengths need no encoding each
            data = joined.encode()
            lengths = np.fromiter(map(len, texts), np.uint32, len(texts))
        else:
            encoded = [text.encode() for text in texts]
            data = b"".join(encoded)
            lengths = np.fromiter(map(len, encoded), np.uint32, len(encoded))
        self._ends.frombytes((np.cumsum(lengths, dtype=np.uint32) + np.uint32(len(self._data))).tobytes())
        self._data += data

    def __getitem__(self, index: int) -> str:
        start = self._ends[index - 1] if index else 0
        return self._data[start : self._ends[index]].decode()


class _Interned(Generic[T]):
    """Distinct values by index, so columns hold small integers instead of references."""

    def __init__(self) -> None:
        self.values: list[T] = []
        self._ids: dict[T | None, int] = {None: -1}

    def id(self, value: T) -> int:
        found = self._ids.get(value)
        if found is None:
            found = self._ids[value] = len(self.values)
            self.values.append(value)
        return found

    def get(self, value: T) -> int:
        return self._ids.get(value, -1)

    def ids(self, values: Sequence[T | None]) -> list[int]:
        """`id` of each value; -1 for None."""
        found: list[int | None] = list(map(self._ids.get, values))
        for index in [index for index, value_id in enumerate(found) if value_id is None]:
            found[index] = self.id(values[index])  # type: ignore[arg-type]  # None is known: not here
        return found  # type: ignore[return-value]  # no None left


def _flags(end_is_estimate: bool, branch_eni: bool) -> int:
    return _ALIVE | (_END_IS_ESTIMATE if end_is_estimate else 0) | (_BRANCH_ENI if branch_eni else 0)


class _PodTable:
    """Pods as columns, one row each; a PodRecord is built from its row when asked for.

    A uid finds its row through its hash in `_Slots`, checked against the uid text. Rows of dropped
    pods stay, dead, until `IpMap.prune` compacts the table.
    """

    def __init__(self, address_text: Callable[[int], str]) -> None:
        self._address_text = address_text
        self._uids = _Texts()
        self._names = _Texts()
        self._uid_index = _Slots(1)
        self._strings = _Interned[str]()  # namespaces, nodes, template hashes
        self._owners = _Interned[tuple[str, str]]()  # (kind, name): tuples hash in C, dataclasses do not
        self._owner_refs: list[OwnerRef] = []  # the same owners as OwnerRefs, made once each
        self._namespace = array("i")
        self._node = array("i")
        self._template = array("i")
        self._owner = array("i")
        self.address = array("i")  # the pod's one address id; -1 when `ips` holds its addresses
        self.ips: dict[int, tuple[str, ...]] = {}  # several addresses, or one not in canonical form
        self.start = array("q")
        self.end = array("q")
        self.flags = array("b")
        self.live = 0
        self._records: dict[int, PodRecord] = {}
        self._by_node: tuple[Int64s, Int32s] | None = None  # node string id -> offsets into rows

    # -- rows ------------------------------------------------------------------------------------------
    @staticmethod
    def _uid_key(uid: str) -> tuple[int]:
        return ((hash(uid) & _WORD) or 1,)  # salted per process, which is fine: never saved

    def find(self, uid: str) -> int:
        for row in self._uid_index.values(self._uid_key(uid)):
            if self._uids[row] == uid:
                return row
        return -1

    @staticmethod
    def uid_keys(uids: Sequence[str]) -> Words:
        keys = np.fromiter(map(hash, uids), np.int64, len(uids)).view(np.uint64)
        keys[keys == 0] = 1
        return keys

    def find_many(self, uids: Sequence[str], keys: Words) -> Int64s:
        """`find` for many uids, given their `uid_keys`."""
        return self._uid_index.find([keys], lambda query, row: self._uids[row] == uids[query])

    def uid(self, row: int) -> str:
        return self._uids[row]

    def name(self, row: int) -> str:
        return self._names[row]

    def append(self, pod: PodRecord, address: int, ips: tuple[str, ...] | None) -> int:
        row = len(self.flags)
        self._uids.append(pod.uid)
        self._names.append(pod.name)
        self._uid_index.add(self._uid_key(pod.uid), row)
        namespace, node, template, owner, end, flags = self._fields(pod)
        self._namespace.append(namespace)
        self._node.append(node)
        self._template.append(template)
        self._owner.append(owner)
        self.address.append(address)
        self.start.append(pod.start)
        self.end.append(end)
        self.flags.append(flags)
        if ips is not None:
            self.ips[row] = ips
        self.live += 1
        self._by_node = None
        return row

    def append_many(self, pods: PodColumns, keys: Words, addresses: Int32s, starts: Int64s, ends: Int64s) -> Int32s:
        """`append` for pods with one canonical address each and uids not in the table (their
        `uid_keys` given); their rows."""
        first = len(self.flags)
        rows = np.arange(first, first + len(pods), dtype=np.int32)
        self._uids.extend(pods.uid)
        self._names.extend(pods.name)
        self._uid_index.add_many([keys], rows)
        self._namespace.extend(self._strings.ids(pods.namespace))
        self._node.extend(self._strings.ids(pods.node))
        self._template.extend(self._strings.ids(pods.template_hash))
        self._owner.extend(self._owners.ids(pods.owner))
        self.address.frombytes(addresses.tobytes())
        self.start.frombytes(starts.tobytes())
        self.end.frombytes(ends.tobytes())
        self.flags.extend(map(_flags, pods.end_is_estimate, pods.branch_eni))
        self.live += len(pods)
        self._by_node = None
        return rows

    def update(self, row: int, pod: PodRecord, address: int, ips: tuple[str, ...] | None) -> None:
        """Rewrite a live row (same uid and name)."""
        namespace, node, template, owner, end, flags = self._fields(pod)
        self._namespace[row] = namespace
        self._node[row] = node
        self._template[row] = template
        self._owner[row] = owner
        self.address[row] = address
        self.start[row] = pod.start
        self.end[row] = end
        self.flags[row] = flags
        self.ips.pop(row, None)
        if ips is not None:
            self.ips[row] = ips
        self._records.pop(row, None)
        self._by_node = None

    def _fields(self, pod: PodRecord) -> tuple[int, int, int, int, int, int]:
        strings = self._strings
        return (
            strings.id(pod.namespace),
            strings.id(pod.node),
            -1 if pod.template_hash is None else strings.id(pod.template_hash),
            -1 if pod.owner is None else self._owners.id((pod.owner.kind, pod.owner.name)),
            NO_END if pod.end is None else pod.end,
            _flags(pod.end_is_estimate, pod.branch_eni),
        )

    def kill(self, row: int) -> None:
        self._uid_index.remove(self._uid_key(self.uid(row)), row)
        self.flags[row] = 0
        self.live -= 1
        self._records.pop(row, None)
        self.ips.pop(row, None)
        self._by_node = None

    def live_rows(self) -> Int64s:
        return np.flatnonzero(_int8s(self.flags) & _ALIVE)

    # -- records ---------------------------------------------------------------------------------------
    def record(self, row: int) -> PodRecord:
        found = self._records.get(row)
        if found is None:
            if len(self._records) >= RECORD_CACHE_SIZE:
                self._records.clear()
            found = self._records[row] = self.build_record(row)
        return found

    def build_record(self, row: int) -> PodRecord:
        strings = self._strings.values
        address, end, flags = self.address[row], self.end[row], self.flags[row]
        template, owner = self._template[row], self._owner[row]
        return PodRecord(
            uid=self._uids[row],
            namespace=strings[self._namespace[row]],
            name=self._names[row],
            node=strings[self._node[row]],
            ips=(self._address_text(address),) if address >= 0 else self.ips[row],
            host_network=False,
            start=self.start[row],
            end=None if end == NO_END else end,
            end_is_estimate=bool(flags & _END_IS_ESTIMATE),
            owner=self._owner_ref(owner) if owner >= 0 else None,
            template_hash=strings[template] if template >= 0 else None,
            branch_eni=bool(flags & _BRANCH_ENI),
        )

    def _owner_ref(self, index: int) -> OwnerRef:
        refs = self._owner_refs
        refs.extend(OwnerRef(kind, name) for kind, name in self._owners.values[len(refs) :])
        return refs[index]

    def on_node(self, node: str, start: int, end: int) -> list[int]:
        """Rows of pods on `node` at some time in [start, end)."""
        node_id = self._strings.get(node)
        if node_id < 0:
            return []
        if self._by_node is None:
            rows = self.live_rows().astype(np.int32)
            nodes = _int32s(self._node)[rows]
            order = np.argsort(nodes, kind="stable")
            offsets = np.searchsorted(nodes[order], np.arange(len(self._strings.values) + 1)).astype(np.int64)
            self._by_node = (offsets, rows[order])
        offsets, rows = self._by_node
        candidates = rows[offsets[node_id] : offsets[node_id + 1]]
        starts = _int64s(self.start)[candidates]
        ends = _int64s(self.end)[candidates]
        held = (starts < end) & ((ends == NO_END) | (ends > start))
        found: list[int] = candidates[held].tolist()
        return found

    def estimated_rows(self) -> list[int]:
        flags = _int8s(self.flags)
        found: list[int] = np.flatnonzero((flags & _ALIVE != 0) & (flags & _END_IS_ESTIMATE != 0)).tolist()
        return found


class PodRecords(Mapping[str, PodRecord]):
    """The map's pods by uid (read-only), each PodRecord built when read."""

    def __init__(self, ipmap: IpMap) -> None:
        self._ipmap = ipmap

    def __getitem__(self, uid: str) -> PodRecord:
        row = self._ipmap._pods.find(uid)
        if row < 0:
            raise KeyError(uid)
        return self._ipmap._pods.record(row)

    def __iter__(self) -> Iterator[str]:
        table = self._ipmap._pods
        return (table.uid(row) for row in table.live_rows().tolist())

    def __len__(self) -> int:
        return self._ipmap._pods.live

    def values(self) -> ValuesView[PodRecord]:
        return _PodRecordValues(self)


class _PodRecordValues(ValuesView[PodRecord]):
    """Values in row order, without finding each uid again."""

    _mapping: PodRecords

    def __iter__(self) -> Iterator[PodRecord]:
        return self._mapping._ipmap.pods()


class IpMap:
    """Pod leases and node-owned addresses over time."""

    def __init__(self) -> None:
        # Addresses by id, shared by pod leases (a group each) and node host addresses. Short texts
        # (every IPv4 address) are found by their bytes; others (IPv6) by canonical text in a dict.
        self._short_addresses = _Slots(2, LOOKUP_FILL)
        self._long_addresses: dict[str, int] = {}
        self._long_texts: dict[int, str] = {}  # the text of every address that has no IPv4 integer
        self._address_ints = array("q")  # IPv4 addresses as integers; -1 for others
        self._address_node_group = array("i")  # the address's node group as a /32 (/128), or -1
        self._pods = _PodTable(self._address_text)
        self._leases = _Timelines(self._pods.uid)  # holders: pod rows
        # Node groups: one per owned /32 (/128) or prefix; holders: (node, NodeAddress) pairs.
        self._node_holders = _Interned[tuple[str, NodeAddress]]()
        self._ownership = _Timelines(lambda holder: self._node_holders.values[holder][0])
        self._ipv4_prefixes: dict[int, _Slots] = {}  # length -> network + 1 -> group; longest first
        self._ipv6_prefixes: dict[int, dict[int, int]] = {}  # length -> network -> group; longest first
        self._node_groups = 0
        self._node_owned: dict[str, tuple[array[int], frozenset[int]]] = {}  # node -> its groups, holders
        self.pod_records = PodRecords(self)

    # -- addresses -------------------------------------------------------------------------------------
    def _find_address(self, address: str) -> int:
        """The id of an address in any spelling; -1 for one the map does not know."""
        return self._look_up_address(address, _text_key(address))

    def _look_up_address(self, address: str, key: tuple[int, int] | None) -> int:
        if key is not None:
            return self._short_addresses.get(key)
        found = self._long_addresses.get(address)
        if found is None and ":" in address:
            found = self._long_addresses.get(normalize_address(address))
        return -1 if found is None else found

    def _address_id(self, address: str) -> int:
        """The id of an address in canonical form, added if new."""
        key = _text_key(address)
        found = self._look_up_address(address, key)
        if found < 0:
            found = len(self._address_ints)
            if key is None:
                self._long_addresses[address] = found
            else:
                self._short_addresses.add(key, found)
            self._append_address(found, address, _ipv4_int(address))
        return found

    def _append_address(self, address_id: int, address: str, value: int) -> None:
        if value < 0:
            self._long_texts[address_id] = address
        self._address_ints.append(value)
        self._address_node_group.append(-1)

    def _add_addresses(self, addresses: Sequence[str]) -> None:
        """`_address_id` for many new, distinct addresses (canonical form)."""
        first = len(self._address_ints)
        ids = np.arange(first, first + len(addresses), dtype=np.int32)
        low, high, short, data = _text_keys(addresses)
        self._short_addresses.add_many([low[short], high[short]], ids[short])
        for index in np.flatnonzero(~short).tolist():
            self._long_addresses[addresses[index]] = first + index
        if data is None:
            values = np.fromiter(map(_ipv4_int, addresses), np.int64, len(addresses))
        else:
            values = _ipv4_values(data, short)
        for index in np.flatnonzero(values < 0).tolist():
            self._long_texts[first + index] = addresses[index]
        self._address_ints.frombytes(values.tobytes())
        self._address_node_group.frombytes(np.full(len(addresses), -1, np.int32).tobytes())

    def _address_text(self, address_id: int) -> str:
        value = self._address_ints[address_id]
        return socket.inet_ntoa(value.to_bytes(4, "big")) if value >= 0 else self._long_texts[address_id]

    def _find_addresses(self, addresses: Sequence[str]) -> tuple[Int64s, Int64s]:
        """`_find_address` of many addresses at once, and their IPv4 integers (-1 if not IPv4)."""
        low, high, short, data = _text_keys(addresses)
        if short.all():  # IPv4 texts: no masks to apply
            ids = self._short_addresses.find([low, high])
        else:
            ids = np.full(len(addresses), -1, np.int64)
            ids[short] = self._short_addresses.find([low[short], high[short]])
        for index in np.flatnonzero(~short).tolist():
            ids[index] = self._find_address(addresses[index])
        values = _by_id(_int64s(self._address_ints), ids)
        unknown = np.flatnonzero(ids < 0)
        if unknown.size:
            if data is None:
                texts = [addresses[index] for index in unknown.tolist()]
                values[unknown] = np.fromiter(map(_ipv4_int, texts), np.int64, len(texts))
            else:
                values[unknown] = _ipv4_values(data[unknown], short[unknown])
        return ids, values

    # -- updates ---------------------------------------------------------------------------------------
    def put_pod(self, pod: PodRecord) -> None:
        """Add or replace a pod's lease (hostNetwork pods hold no address of their own)."""
        table = self._pods
        row = table.find(pod.uid)
        if row >= 0 and (pod.host_network or table.name(row) != pod.name):
            self._drop_row(row)
            row = -1
        if pod.host_network:
            return
        canonical = tuple(dict.fromkeys(normalize_address(ip) for ip in pod.ips))
        addresses = [self._address_id(address) for address in canonical]
        single = len(pod.ips) == 1 and canonical[0] == pod.ips[0]
        address = addresses[0] if single else -1
        ips = None if single else pod.ips
        end = NO_END if pod.end is None else pod.end
        if row < 0:
            row = table.append(pod, address, ips)
        else:
            old = self._row_addresses(row)
            if old == addresses and table.start[row] == pod.start and table.end[row] == end:
                table.update(row, pod, address, ips)  # the lease is unchanged
                return
            for address_id in old:
                self._leases.remove(address_id, (row,))
            table.update(row, pod, address, ips)
        for address_id in addresses:
            self._leases.add(address_id, pod.start, end, row)

    def put_pods(self, pods: Iterable[PodRecord]) -> None:
        """`put_pod` for many pods, in bulk."""
        iterator = iter(pods)
        while chunk := list(itertools.islice(iterator, BULK_CHUNK)):
            self.put_pod_columns(PodColumns.of(chunk))

    def put_pod_columns(self, pods: PodColumns) -> None:
        """`put_pod` for many pods: new pods with one IPv4 address go in at once, others one by one."""
        uids = pods.uid
        if len(set(uids)) < len(uids):  # the same pod twice: its versions must apply in order
            for index in range(len(uids)):
                self.put_pod(pods.record(index))
            return
        keys = self._pods.uid_keys(uids)
        texts = [ips[0] if ips else "" for ips in pods.ips]
        low, high, short, _ = _text_keys(texts)
        bulk = short & (self._pods.find_many(uids, keys) < 0)
        bulk &= ~np.fromiter(pods.host_network, bool, len(pods))
        bulk &= np.fromiter(map(len, pods.ips), np.int64, len(pods)) == 1
        if not bulk.all():
            for index in np.flatnonzero(~bulk).tolist():
                self.put_pod(pods.record(index))
            chosen = np.flatnonzero(bulk)
            pods, keys, low, high = pods.select(chosen.tolist()), keys[chosen], low[chosen], high[chosen]
            texts = [texts[index] for index in chosen.tolist()]
        addresses = self._short_addresses.find([low, high])
        new = np.flatnonzero(addresses < 0)
        if new.size:
            unseen = list(dict.fromkeys(texts[index] for index in new.tolist()))
            self._add_addresses(unseen)
            addresses[new] = self._short_addresses.find([low[new], high[new]])
        groups = addresses.astype(np.int32)
        starts = np.fromiter(pods.start, np.int64, len(pods))
        ends = np.fromiter([NO_END if end is None else end for end in pods.end], np.int64, len(pods))
        rows = self._pods.append_many(pods, keys, groups, starts, ends)
        self._leases.add_many(groups, starts, ends, rows)

    def _row_addresses(self, row: int) -> list[int]:
        address = self._pods.address[row]
        if address >= 0:
            return [address]
        return [self._find_address(a) for a in dict.fromkeys(normalize_address(ip) for ip in self._pods.ips[row])]

    def _drop_row(self, row: int) -> None:
        for address_id in self._row_addresses(row):
            self._leases.remove(address_id, (row,))
        self._pods.kill(row)

    def drop_pod(self, uid: str) -> None:
        row = self._pods.find(uid)
        if row >= 0:
            self._drop_row(row)

    def put_node_addresses(
        self, node: str, cidrs: Iterable[tuple[str, NodeAddress]], start: int, end: int | None
    ) -> None:
        """Replace everything a node owns: (address or CIDR, what it is) for the node's lifetime."""
        self.drop_node(node)
        groups = array("i")
        holders: set[int] = set()
        for cidr, info in cidrs:
            family, prefix, network, text = _network_key(cidr)
            if prefix == (32 if family == 4 else 128):
                address_id = self._address_id(text)
                group = self._address_node_group[address_id]
                if group < 0:
                    group = self._address_node_group[address_id] = self._new_node_group()
            elif family == 4:
                table = self._ipv4_prefixes.get(prefix)
                if table is None:
                    table = self._ipv4_prefixes[prefix] = _Slots(1, LOOKUP_FILL)
                    self._ipv4_prefixes = dict(sorted(self._ipv4_prefixes.items(), reverse=True))
                group = table.get((network + 1,))
                if group < 0:
                    group = self._new_node_group()
                    table.add((network + 1,), group)
            else:
                networks = self._ipv6_prefixes.get(prefix)
                if networks is None:
                    networks = self._ipv6_prefixes[prefix] = {}
                    self._ipv6_prefixes = dict(sorted(self._ipv6_prefixes.items(), reverse=True))
                group = networks.get(network, -1)
                if group < 0:
                    group = networks[network] = self._new_node_group()
            holder = self._node_holders.id((node, info))
            self._ownership.add(group, start, NO_END if end is None else end, holder)
            groups.append(group)
            holders.add(holder)
        self._node_owned[node] = (groups, frozenset(holders))

    def _new_node_group(self) -> int:
        self._node_groups += 1
        return self._node_groups - 1

    def drop_node(self, node: str) -> None:
        groups, holders = self._node_owned.pop(node, (array("i"), frozenset()))
        for group in dict.fromkeys(groups):
            self._ownership.remove(group, holders)

    def rebuild(self) -> None:
        """Sort and resolve everything changed since the last rebuild in one vectorised pass; reads
        do it when they need to, a bulk load (a restart) does it once at its end."""
        self._leases.rebuild()
        self._ownership.rebuild()

    def prune(self, before: int) -> int:
        """Forget leases that ended before `before` (retention); returns how many were dropped.

        The pod table is rebuilt from the pods that stay, which compacts it (pod indices change).
        """
        table = self._pods
        rows = table.live_rows()
        ends = _int64s(table.end)[rows]
        gone = rows[(ends != NO_END) & (ends <= before)].tolist()
        if not gone:
            return 0
        dropped = sum(len(self._row_addresses(row)) for row in gone)
        kept = [table.build_record(row) for row in rows[(ends == NO_END) | (ends > before)].tolist()]
        self._pods = _PodTable(self._address_text)
        self._leases = _Timelines(self._pods.uid)
        self.put_pods(kept)
        return dropped

    # -- lookups ---------------------------------------------------------------------------------------
    def _pieces(self, address: str, address_id: int, start: int, end: int) -> list[Piece]:
        """Who held `address` (-1: an unknown one) in [start, end), as pieces."""
        pieces: list[Piece] = []
        node_timelines: list[_View] | None = None
        for piece_start, piece_end, row in _cover(self._leases.timeline(address_id), start, end):
            if row >= 0:
                pieces.append((piece_start, piece_end, HELD_BY_POD, row))
                continue
            if node_timelines is None:
                groups = self._node_groups_of(address, address_id)
                node_timelines = [self._ownership.timeline(group) for group in groups]
            self._node_pieces(node_timelines, piece_start, piece_end, pieces)
        return pieces

    def _node_groups_of(self, address: str, address_id: int) -> list[int]:
        """The node groups an address falls in, most specific first."""
        groups = []
        if address_id >= 0 and self._address_node_group[address_id] >= 0:
            groups.append(self._address_node_group[address_id])
        value = self._address_ints[address_id] if address_id >= 0 else _ipv4_int(address)
        if value >= 0:
            for prefix, table in self._ipv4_prefixes.items():
                group = table.get((((value >> (32 - prefix)) << (32 - prefix)) + 1,))
                if group >= 0:
                    groups.append(group)
        elif self._ipv6_prefixes:
            try:
                value = int(ipaddress.IPv6Address(address))
            except ValueError:
                return groups
            for prefix, networks in self._ipv6_prefixes.items():
                group = networks.get((value >> (128 - prefix)) << (128 - prefix), -1)
                if group >= 0:
                    groups.append(group)
        return groups

    def _node_pieces(self, timelines: list[_View], start: int, end: int, pieces: list[Piece]) -> None:
        if not timelines:
            pieces.append((start, end, HELD_BY_NOBODY, -1))
            return
        for piece_start, piece_end, holder in _cover(timelines[0], start, end):
            if holder >= 0:
                pieces.append((piece_start, piece_end, HELD_BY_NODE, holder))
            else:
                self._node_pieces(timelines[1:], piece_start, piece_end, pieces)

    def lookup_columns(self, addresses: Sequence[str], firsts: npt.ArrayLike, lasts: npt.ArrayLike) -> HolderColumns:
        """Who held each `addresses[i]` from second `firsts[i]` through second `lasts[i]` (inclusive),
        vectorised, as holder indices: where one pod or node (or nobody) held the address for the
        whole query, its index; otherwise its pieces. Large batches are answered in halves on two
        threads (numpy runs without the GIL)."""
        count = len(addresses)
        starts = np.asarray(firsts, np.int64).reshape(count)
        ends = np.maximum(np.asarray(lasts, np.int64).reshape(count), starts) + 1
        bounds = [0, count] if count < PARALLEL_QUERIES else [0, count // 2, count]
        halves = list(itertools.pairwise(bounds))
        with ThreadPoolExecutor(2) if len(halves) > 1 else contextlib.nullcontext() as pool:
            found = _on_halves(pool, lambda low, high: self._find_addresses(addresses[low:high]), halves)
            ids = np.concatenate([half_ids for half_ids, _ in found])
            values = np.concatenate([half_values for _, half_values in found])
            self._leases.prepare_reads(count, ids)
            self._ownership.prepare_reads(count)
            columns = (ids, values, starts, ends)
            answers = _on_halves(pool, lambda low, high: self._answer(*(c[low:high] for c in columns)), halves)
        kinds = np.concatenate([answer[0] for answer in answers])
        holders = np.concatenate([answer[1] for answer in answers])
        parts = [(part[0] + low, *part[1:]) for (low, _), (_, _, part) in zip(halves, answers, strict=True)]
        answered = np.zeros(count, bool)
        answered[np.concatenate([part[0] for part in parts])] = True
        alone = np.flatnonzero((kinds == SPLIT) & ~answered)  # a changed address, or a gap the node groups split
        if alone.size:
            parts.append(self._pieces_alone(alone, addresses, ids, starts, ends, kinds, holders))
        queries, piece_starts, piece_ends, piece_kinds, piece_holders = (
            np.concatenate(c) for c in zip(*parts, strict=True)
        )
        order = np.argsort(queries, kind="stable")  # each query's pieces are together and in order already
        return HolderColumns(
            kinds,
            holders,
            queries[order],
            piece_starts[order],
            piece_ends[order],
            piece_kinds[order],
            piece_holders[order],
        )

    def _pieces_alone(
        self,
        alone: Int64s,
        addresses: Sequence[str],
        ids: Int64s,
        starts: Int64s,
        ends: Int64s,
        kinds: npt.NDArray[np.int8],
        holders: Int32s,
    ) -> _PieceColumns:
        """The pieces of queries answered one by one; those that one holder held after all get it
        in `kinds` and `holders` instead."""
        queries, piece_starts, piece_ends, piece_kinds, piece_holders = [], [], [], [], []
        for index in alone.tolist():
            for start, end, kind, holder in self._pieces(
                addresses[index], int(ids[index]), int(starts[index]), int(ends[index])
            ):
                queries.append(index)
                piece_starts.append(start)
                piece_ends.append(end)
                piece_kinds.append(kind)
                piece_holders.append(holder)
        query = np.array(queries, np.int64)
        kind_column, holder_column = np.array(piece_kinds, np.int8), np.array(piece_holders, np.int32)
        boundary = query[1:] != query[:-1]
        single = np.append(True, boundary) & np.append(boundary, True)  # first and last of its query
        kinds[query[single]], holders[query[single]] = kind_column[single], holder_column[single]
        several = ~single
        return (
            query[several],
            np.array(piece_starts, np.int64)[several],
            np.array(piece_ends, np.int64)[several],
            kind_column[several],
            holder_column[several],
        )

    def _answer(
        self, ids: Int64s, values: Int64s, starts: Int64s, ends: Int64s
    ) -> tuple[npt.NDArray[np.int8], Int32s, _PieceColumns]:
        """The vectorised part of `lookup_columns` (it only reads): kinds, holders, and the pieces
        of the SPLIT queries it could answer."""
        kinds = np.full(len(ids), SPLIT, np.int8)
        holders, pod_free, changed = self._leases.classify(ids, starts, ends)
        kinds[holders >= 0] = HELD_BY_POD
        pod_split = np.flatnonzero((holders < 0) & ~pod_free & ~changed)  # leases cover part of it
        free = np.flatnonzero(pod_free)
        kinds[free], holders[free] = self._node_answers(ids[free], values[free], starts[free], ends[free])
        return kinds, holders, self._split_pieces(pod_split, ids, values, starts, ends)

    def _node_answers(
        self, ids: Int64s, values: Int64s, starts: Int64s, ends: Int64s
    ) -> tuple[npt.NDArray[np.int8], Int32s]:
        """Kind and holder of queries no pod touched: the node groups decide, most specific first;
        SPLIT where one covers part of a query, and for IPv6 addresses when IPv6 prefixes exist."""
        count = len(ids)
        kinds = np.full(count, HELD_BY_NOBODY, np.int8)
        holders = np.full(count, -1, np.int32)
        pending = np.arange(count)
        if self._ipv6_prefixes:
            kinds[values < 0] = SPLIT  # answered one by one
            pending = pending[values >= 0]
        levels: list[tuple[int, _Slots | None]] = [(0, None), *self._ipv4_prefixes.items()]
        for prefix, table in levels:
            if table is None:  # the address itself
                groups = _by_id(_int32s(self._address_node_group), ids[pending])
            else:
                ipv4 = values[pending] >= 0
                networks = ((values[pending][ipv4] >> (32 - prefix)) << (32 - prefix)) + 1
                groups = np.full(len(pending), -1, np.int64)
                groups[ipv4] = table.find([networks.astype(np.uint64)])
            grouped = groups >= 0  # the others are free at this level: no need to classify them
            asked = pending[grouped]
            found, free, _ = self._ownership.classify(groups[grouped], starts[asked], ends[asked])
            held = found >= 0
            kinds[asked[held]] = HELD_BY_NODE
            holders[asked[held]] = found[held]
            kinds[asked[~held & ~free]] = SPLIT
            pending = np.concatenate((pending[~grouped], asked[free]))
        return kinds, holders

    def _split_pieces(self, split: Int64s, ids: Int64s, values: Int64s, starts: Int64s, ends: Int64s) -> _PieceColumns:
        """Pieces of queries that pod leases cover in part, vectorised: each lease's part, and the
        gaps between, each decided by the node groups. Queries with a gap the node groups split
        are left out."""
        group, start, end = ids[split], starts[split], ends[split]
        first, stop = self._leases.touching(group, start, end)
        counts = stop - first
        owner = np.repeat(np.arange(len(split)), counts)  # the query of each lease piece
        index = first[owner] + np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        lease_starts, lease_ends, lease_holders = self._leases.resolved
        piece_start = np.maximum(lease_starts[index], start[owner])
        piece_end = np.minimum(lease_ends[index], end[owner])
        # Gaps: before each lease piece (from the previous piece's end, or the query's start), after the last.
        previous_end = np.where(index == first[owner], start[owner], np.roll(piece_end, 1))
        before = piece_start > previous_end
        after = (index == stop[owner] - 1) & (piece_end < end[owner])
        gap_owner = np.concatenate((owner[before], owner[after]))
        gap_start = np.concatenate((previous_end[before], piece_end[after]))
        gap_end = np.concatenate((piece_start[before], end[owner][after]))
        gap_kinds, gap_holders = self._node_answers(group[gap_owner], values[split][gap_owner], gap_start, gap_end)
        undecided = np.zeros(len(split), bool)
        undecided[gap_owner[gap_kinds == SPLIT]] = True
        all_owner = np.concatenate((owner, gap_owner))
        all_start = np.concatenate((piece_start, gap_start))
        order = np.lexsort((all_start, all_owner))
        order = order[~undecided[all_owner[order]]]
        return (
            split[all_owner[order]],
            all_start[order],
            np.concatenate((piece_end, gap_end))[order],
            np.concatenate((np.full(len(owner), HELD_BY_POD, np.int8), gap_kinds))[order],
            np.concatenate((lease_holders[index], gap_holders))[order],
        )

    def pod_at(self, index: int) -> PodRecord:
        """The pod of a HELD_BY_POD index from `lookup_columns`."""
        return self._pods.record(index)

    def node_address_at(self, index: int) -> NodeAddress:
        """The node address of a HELD_BY_NODE index from `lookup_columns`."""
        return self._node_holders.values[index][1]

    # -- introspection ---------------------------------------------------------------------------------
    @property
    def lease_conflicts(self) -> int:
        """Leases dropped because they lay wholly inside another holder's lease of the same IP."""
        return self._leases.conflicts()

    def pod_address_count(self) -> int:
        return self._leases.nonempty_groups()

    def pods(self) -> Iterator[PodRecord]:
        """Every pod in the map (built one by one, not kept)."""
        table = self._pods
        return (table.build_record(row) for row in table.live_rows().tolist())

    def pods_on_node(self, node: str, start: int, end: int) -> list[PodRecord]:
        """Pods (not hostNetwork) that were on `node` at some time in [start, end)."""
        return [self._pods.record(row) for row in self._pods.on_node(node, start, end)]

    def estimated_ends(self) -> list[PodRecord]:
        """Pods whose end was estimated (deleted with no deletion time)."""
        return [self._pods.record(row) for row in self._pods.estimated_rows()]

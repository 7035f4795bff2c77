"""The time-indexed IP map: who held an address when.

Two layers answer "who had address A between t0 and t1":

1. pod leases: a pod (not hostNetwork) holds its IPs from when it got them until it released them;
2. node addresses: a node owns its InternalIP and every private IP and delegated prefix on its
   ENIs for as long as the node exists. An address of a node that no pod held goes to the node.

Leases of one address never overlap: a later holder starts no earlier than the previous holder's
end, and a holder with no known end ends when the next one starts.

The map is sized for a day or two of churn in a large cluster (a million leases): pods are kept as
columns (interned strings, uids and names packed in one buffer) and PodRecords are built only when
asked for; intervals sit in flat arrays sorted by (address, start), resolved by the rules above in
bulk. Updates touch only their address, which is re-resolved alone when read, so the operator can
feed pod events one at a time while reports read the map; many updates trigger one bulk rebuild.
`lookup` answers one address, `lookup_columns` and `lookup_many` answer many at once with numpy.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import socket
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from itertools import repeat
from typing import Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from natflow.cluster.objects import OwnerRef, PodRecord
from natflow.net import normalize_address

FOREVER = 1 << 62
NO_END: Final = -(1 << 63)  # "still held" in int64 end columns, which cannot hold None

# What lookup_columns found for each query.
HELD_BY_NOBODY: Final = 0
HELD_BY_POD: Final = 1
HELD_BY_NODE: Final = 2
SEGMENTS: Final = 3  # more than one holder, or an address changed since the last rebuild: see `segments`

# A rebuild re-sorts everything; below these many changes, re-resolving changed addresses is cheaper.
REBUILD_MIN_CHANGES = 4096
RECORD_CACHE_SIZE = 65536
BULK_CHUNK = (
    65536  # pods per vectorised step of put_pods  # PodRecords kept built for repeated lookups of the same pods
)

_ALIVE: Final = 1
_END_IS_ESTIMATE: Final = 2
_BRANCH_ENI: Final = 4

T = TypeVar("T")
Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]
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
class Segment:
    """Part of a lookup interval: [start, end) held by a pod, owned by a node, or by no one."""

    start: int
    end: int
    pod: PodRecord | None
    node: NodeAddress | None

    @property
    def seconds(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class HolderColumns:
    """Answers of `lookup_columns`, one per query, without a Segment where one holder held it all.

    Indices are valid until the map next changes: `IpMap.pod_at` and `IpMap.node_address_at` read them.
    """

    kinds: npt.NDArray[np.int8]  # HELD_BY_NOBODY, HELD_BY_POD, HELD_BY_NODE or SEGMENTS
    holders: Int32s  # pod index for HELD_BY_POD, node address index for HELD_BY_NODE, else -1
    segments: dict[int, list[Segment]]  # query index -> what `lookup` says, for kind SEGMENTS


def _int64s(column: array[int]) -> Int64s:
    """A numpy view of an array column; callers keep no view while the column may still grow."""
    return np.frombuffer(column, np.int64) if len(column) else np.zeros(0, np.int64)


def _int32s(column: array[int]) -> Int32s:
    return np.frombuffer(column, np.int32) if len(column) else np.zeros(0, np.int32)


def _int8s(column: array[int]) -> npt.NDArray[np.int8]:
    return np.frombuffer(column, np.int8) if len(column) else np.zeros(0, np.int8)


def _column(values: npt.NDArray[np.generic], typecode: str) -> array[int]:
    return array(typecode, values.tobytes())


def _by_id(values: Int64s | Int32s, ids: Int64s) -> Int64s:
    """values[id] for each id, -1 where the id is -1 (unknown address)."""
    found = np.full(len(ids), -1, np.int64)
    known = ids >= 0
    found[known] = values[ids[known]]
    return found


def _ipv4_int(address: str) -> int:
    """The address as an integer if it is IPv4 text, else -1."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        return -1


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
        self._raw_offsets = np.zeros(1, np.int64).data  # group -> its range of those entries
        self._offsets: Int64s = np.zeros(1, np.int64)  # group -> its range of resolved intervals
        self._starts: Int64s = np.zeros(0, np.int64)
        self._ends: Int64s = np.zeros(0, np.int64)
        self._holders: Int32s = np.zeros(0, np.int32)
        # The same arrays for scalar reads: indexing a memoryview gives ints, much faster than numpy's.
        self._views: tuple[memoryview, memoryview, memoryview, memoryview] = self._memoryviews()
        self._recent: dict[int, list[int]] = {}  # group -> entries added since the rebuild
        self._dirty: dict[int, tuple[list[int], list[int], list[int]] | None] = {}  # changed groups
        self._conflicts: dict[int, int] = {}  # group -> entries dropped by the rules (only nonzero)

    def _memoryviews(self) -> tuple[memoryview, memoryview, memoryview, memoryview]:
        return self._offsets.data, self._starts.data, self._ends.data, self._holders.data

    # -- changes -----------------------------------------------------------------------------------
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
        recent = self._recent.get(group)
        if recent is None:
            self._recent[group] = [index]
        else:
            recent.append(index)
        self._dirty[group] = None
        if index - self._built >= self._rebuild_after:
            self.rebuild()  # bulk loads: rebuilding at doubling sizes keeps the total linear-logarithmic

    def add_many(self, groups: Int32s, starts: Int64s, ends: Int64s, holders: Int32s) -> None:
        """`add` for many entries."""
        first = len(self._alive)
        self._group.frombytes(groups.astype(np.int32).tobytes())
        self._start.frombytes(starts.astype(np.int64).tobytes())
        self._end.frombytes(ends.astype(np.int64).tobytes())
        self._holder.frombytes(holders.astype(np.int32).tobytes())
        self._alive.frombytes(bytes([1]) * len(groups))
        if len(groups):
            self._groups = max(self._groups, int(groups.max()) + 1)
        if len(self._alive) - self._built > self._rebuild_after:
            self.rebuild()
            return
        for index, group in enumerate(groups.tolist(), first):
            recent = self._recent.get(group)
            if recent is None:
                self._recent[group] = [index]
            else:
                recent.append(index)
            self._dirty[group] = None

    def remove(self, group: int, holders: Collection[int]) -> None:
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

    # -- resolution ----------------------------------------------------------------------------------
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
        raw_offsets = np.searchsorted(group, bounds).astype(np.int64)
        self._raw_offsets = raw_offsets.data
        self._recent.clear()
        self._dirty.clear()
        self._conflicts.clear()

        # Groups the vectorised pass cannot resolve: an open end before the last entry, an overlap
        # or a tie (the next starts before the previous ends), or an empty or negative interval.
        open_end = end == NO_END
        same_group = group[1:] == group[:-1]
        irregular = same_group & (open_end[:-1] | (start[1:] < end[:-1]))
        odd = ~open_end & ((end <= start) | (end >= FOREVER))  # FOREVER itself reads as "end unknown"
        special = np.unique(np.concatenate((group[1:][irregular], group[odd])))
        regular = np.ones(len(group), bool)
        starts_parts, ends_parts, holders_parts, groups_parts = [], [], [], []
        for special_group in special.tolist():
            lo, hi = raw_offsets[special_group], raw_offsets[special_group + 1]
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
        self._offsets = np.searchsorted(groups, bounds).astype(np.int64)
        self._views = self._memoryviews()

    # -- reads -----------------------------------------------------------------------------------------
    def timeline(self, group: int) -> _View:
        if group in self._dirty:
            starts, ends, holders = self._resolved_group(group)
            return starts, ends, holders, 0, len(starts)
        offsets, starts_view, ends_view, holders_view = self._views
        if group < 0 or group + 1 >= len(offsets):
            return _EMPTY_VIEW
        return starts_view, ends_view, holders_view, offsets[group], offsets[group + 1]

    def classify(self, groups: Int64s, starts: Int64s, ends: Int64s) -> tuple[Int32s, Bools]:
        """For each query [start, end) of a group (-1: none), the holder of one interval covering it
        (else -1) and whether no interval touches it. Neither: it needs `timeline` (several holders,
        or the group changed since the rebuild)."""
        if len(self._dirty) > max(REBUILD_MIN_CHANGES, len(self._starts) >> 6):
            self.rebuild()
        count = len(self._offsets) - 1
        if self._dirty:
            dirty = np.isin(groups, np.fromiter(self._dirty, np.int64, len(self._dirty)))
        else:
            dirty = np.zeros(len(groups), bool)
        indexed = (groups >= 0) & (groups < count) & ~dirty  # others have no intervals, or are dirty
        group = np.where(indexed, groups, 0)
        lo = np.where(indexed, self._offsets[group], 0)
        hi = np.where(indexed, self._offsets[np.minimum(group + 1, count)], 0)
        after = _bisect_right(self._starts, lo.copy(), hi.copy(), starts)  # first interval starting later
        holders = np.full(len(groups), -1, np.int32)
        free = ~dirty
        if len(self._starts):
            last = len(self._starts) - 1
            before = np.maximum(after - 1, 0)
            has_before = after > lo
            before_end = np.where(has_before, self._ends[before], NO_END)
            next_start = np.where(after < hi, self._starts[np.minimum(after, last)], FOREVER)
            covered = has_before & (before_end >= ends)
            holders[covered] = self._holders[before[covered]]
            free &= (before_end <= starts) & (next_start >= ends)
        return holders, free

    def conflicts(self) -> int:
        for group in self._dirty:
            self._resolved_group(group)
        return sum(self._conflicts.values())

    def nonempty_groups(self) -> int:
        if self._dirty:
            self.rebuild()
        return int(np.count_nonzero(np.diff(np.asarray(self._raw_offsets))))


class _Texts:
    """Strings packed into one buffer: a few bytes each instead of a str object each."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("q")

    def append(self, text: str) -> None:
        self._data += text.encode()
        self._ends.append(len(self._data))

    def extend(self, texts: Sequence[str]) -> None:
        encoded = [text.encode() for text in texts]
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        self._ends.frombytes((np.cumsum(lengths) + len(self._data)).tobytes())
        self._data += b"".join(encoded)

    def __getitem__(self, index: int) -> str:
        start = self._ends[index - 1] if index else 0
        return self._data[start : self._ends[index]].decode()


class _Interned(Generic[T]):
    """Distinct values by index, so columns hold small integers instead of references."""

    def __init__(self) -> None:
        self.values: list[T] = []
        self._ids: dict[T, int] = {}

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
        known = self._ids
        for value in set(values):
            if value is not None and value not in known:
                self.id(value)
        return [-1 if value is None else known[value] for value in values]


class _UidIndex:
    """uid -> pod row by open addressing over two flat arrays: a dict would cost a str and an int
    object per pod, more than all the pod's columns together.

    A slot holds the uid's hash (0: empty) and its row (-1: removed; probes go on past it).
    Different uids with equal hashes are told apart by the uid text itself.
    """

    def __init__(self, uid_of: Callable[[int], str]) -> None:
        self._uid_of = uid_of
        self._used = 0  # slots with a hash, removed ones included
        self._allocate(16)

    def _allocate(self, size: int) -> None:
        self._hashes = np.zeros(size, np.int64)
        self._rows = np.zeros(size, np.int32)
        self._hash_slots, self._row_slots = self._hashes.data, self._rows.data  # fast scalar access
        self._mask = size - 1

    @staticmethod
    def _keys(uids: Sequence[str]) -> Int64s:
        keys = np.fromiter(map(hash, uids), np.int64, len(uids))  # salted per process: fine, never saved
        keys[keys == 0] = 1
        return keys

    def _slot(self, uid: str) -> int:
        """The slot holding uid, or -1."""
        key = hash(uid) or 1
        hashes, rows, mask = self._hash_slots, self._row_slots, self._mask
        slot = key & mask
        while found := hashes[slot]:
            if found == key and rows[slot] >= 0 and self._uid_of(rows[slot]) == uid:
                return slot
            slot = (slot + 1) & mask
        return -1

    def find(self, uid: str) -> int:
        slot = self._slot(uid)
        found: int = self._row_slots[slot] if slot >= 0 else -1
        return found

    def find_many(self, uids: Sequence[str]) -> Int64s:
        """`find` for each uid, probing in vectorised rounds."""
        keys = self._keys(uids)
        found = np.full(len(uids), -1, np.int64)
        slots = keys & self._mask
        waiting = np.arange(len(uids))
        while waiting.size:
            at = slots[waiting]
            done = self._hashes[at] == 0
            for position in np.flatnonzero((self._hashes[at] == keys[waiting]) & (self._rows[at] >= 0)).tolist():
                row = int(self._rows[at[position]])
                if self._uid_of(row) == uids[waiting[position]]:
                    found[waiting[position]] = row
                    done[position] = True
            waiting = waiting[~done]
            slots[waiting] = (slots[waiting] + 1) & self._mask
        return found

    def add(self, uid: str, row: int) -> None:
        """Index a uid that is not indexed yet."""
        if 3 * (self._used + 1) > 2 * len(self._hashes):
            self._resize(self._used + 1)
        key = hash(uid) or 1
        hashes, mask = self._hash_slots, self._mask
        slot = key & mask
        while hashes[slot]:
            slot = (slot + 1) & mask
        hashes[slot] = key
        self._row_slots[slot] = row
        self._used += 1

    def add_many(self, uids: Sequence[str], rows: Int32s) -> None:
        """`add` for uids none of which is indexed, nor repeated."""
        if 3 * (self._used + len(uids)) > 2 * len(self._hashes):
            self._resize(self._used + len(uids))
        self._place(self._keys(uids), rows)

    def remove(self, uid: str) -> None:
        slot = self._slot(uid)
        if slot >= 0:
            self._row_slots[slot] = -1

    def _resize(self, needed: int) -> None:
        """Move the live slots into a table that is at most half full with `needed` slots used."""
        live = (self._hashes != 0) & (self._rows >= 0)
        keys, rows = self._hashes[live], self._rows[live]
        size = 16
        while size < 2 * (needed - (self._used - len(keys))):
            size *= 2
        self._allocate(size)
        self._used = 0
        self._place(keys, rows)

    def _place(self, keys: Int64s, rows: Int32s) -> None:
        """Insert in vectorised rounds: each waiting key takes its probe slot if that is free (one
        winner per slot), the others probe on, exactly as one-by-one linear probing allows."""
        slots = keys & self._mask
        waiting = np.arange(len(keys))
        placed = np.zeros(len(keys), bool)
        while waiting.size:
            targets = slots[waiting]
            free = self._hashes[targets] == 0
            taken, first = np.unique(targets[free], return_index=True)
            winners = waiting[free][first]
            self._hashes[taken] = keys[winners]
            self._rows[taken] = rows[winners]
            placed[winners] = True
            waiting = waiting[~placed[waiting]]
            slots[waiting] = (slots[waiting] + 1) & self._mask
        self._used += len(keys)


class _PodTable:
    """Pods as columns, one row each; a PodRecord is built from its row when asked for.

    Rows of dropped pods stay, dead, until `IpMap.prune` compacts the table.
    """

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses  # the map's address texts by id, for `ips`
        self._uids = _Texts()
        self._names = _Texts()
        self._strings = _Interned[str]()  # namespaces, nodes, template hashes
        self._owners = _Interned[tuple[str, str]]()  # (kind, name): tuples hash in C, dataclasses do not
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
        self._uid_index = _UidIndex(self.uid)
        self._records: dict[int, PodRecord] = {}
        self._by_node: tuple[Int64s, Int32s] | None = None  # node string id -> offsets into rows

    # -- rows ----------------------------------------------------------------------------------------
    def find(self, uid: str) -> int:
        return self._uid_index.find(uid)

    def uid(self, row: int) -> str:
        return self._uids[row]

    def name(self, row: int) -> str:
        return self._names[row]

    def append(self, pod: PodRecord, address: int, ips: tuple[str, ...] | None) -> int:
        row = len(self.flags)
        self._uids.append(pod.uid)
        self._names.append(pod.name)
        self._uid_index.add(pod.uid, row)
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

    def append_many(self, pods: Sequence[PodRecord], addresses: Sequence[int]) -> Int32s:
        """`append` for pods with one canonical address each and uids not in the table; their rows."""
        first = len(self.flags)
        rows = np.arange(first, first + len(pods), dtype=np.int32)
        uids = [pod.uid for pod in pods]
        self._uids.extend(uids)
        self._names.extend([pod.name for pod in pods])
        self._uid_index.add_many(uids, rows)
        self._namespace.extend(self._strings.ids([pod.namespace for pod in pods]))
        self._node.extend(self._strings.ids([pod.node for pod in pods]))
        self._template.extend(self._strings.ids([pod.template_hash for pod in pods]))
        self._owner.extend(self._owners.ids([(pod.owner.kind, pod.owner.name) if pod.owner else None for pod in pods]))
        self.address.extend(addresses)
        self.start.extend([pod.start for pod in pods])
        self.end.extend([NO_END if pod.end is None else pod.end for pod in pods])
        self.flags.extend(
            [
                _ALIVE | (_END_IS_ESTIMATE if p.end_is_estimate else 0) | (_BRANCH_ENI if p.branch_eni else 0)
                for p in pods
            ]
        )
        self.live += len(pods)
        self._by_node = None
        return rows

    def find_many(self, uids: Sequence[str]) -> Int64s:
        return self._uid_index.find_many(uids)

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
            self._flags(pod),
        )

    @staticmethod
    def _flags(pod: PodRecord) -> int:
        return _ALIVE | (_END_IS_ESTIMATE if pod.end_is_estimate else 0) | (_BRANCH_ENI if pod.branch_eni else 0)

    def kill(self, row: int) -> None:
        self.flags[row] = 0
        self.live -= 1
        self._uid_index.remove(self.uid(row))
        self._records.pop(row, None)
        self.ips.pop(row, None)
        self._by_node = None

    def live_rows(self) -> Int64s:
        return np.flatnonzero(_int8s(self.flags) & _ALIVE)

    # -- records -------------------------------------------------------------------------------------
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
            ips=(self._addresses[address],) if address >= 0 else self.ips[row],
            host_network=False,
            start=self.start[row],
            end=None if end == NO_END else end,
            end_is_estimate=bool(flags & _END_IS_ESTIMATE),
            owner=OwnerRef(*self._owners.values[owner]) if owner >= 0 else None,
            template_hash=strings[template] if template >= 0 else None,
            branch_eni=bool(flags & _BRANCH_ENI),
        )

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
    """Values in row order without finding each uid again."""

    _mapping: PodRecords

    def __iter__(self) -> Iterator[PodRecord]:
        return self._mapping._ipmap.pods()


def _network_key(cidr: str) -> tuple[int, int, int, str]:
    """(family, prefix length, network as an integer, network address text) of an address or CIDR."""
    if "/" not in cidr:
        value = _ipv4_int(cidr)
        if value >= 0:
            return 4, 32, value, cidr
    network = ipaddress.ip_network(cidr, strict=False)
    return network.version, network.prefixlen, int(network.network_address), str(network.network_address)


class IpMap:
    """Pod leases and node-owned addresses over time."""

    def __init__(self) -> None:
        # Addresses by id, shared by pod leases (a group per address) and node host addresses.
        self._address_ids: dict[str, int] = {}
        self._addresses: list[str] = []
        self._address_ints = array("q")  # IPv4 addresses as integers (prefix matches); -1 otherwise
        self._address_node_group = array("i")  # the address's node group as a /32 (/128), or -1
        self._pods = _PodTable(self._addresses)
        self._leases = _Timelines(self._pods.uid)  # holders: pod rows
        # Node groups: one per owned /32 (/128) or prefix; holders: (node, NodeAddress) pairs.
        self._node_holders = _Interned[tuple[str, NodeAddress]]()
        self._ownership = _Timelines(lambda holder: self._node_holders.values[holder][0])
        self._prefixes: dict[tuple[int, int], dict[int, int]] = {}  # (family, length) -> network -> group
        self._node_groups = 0
        self._node_owned: dict[str, tuple[array[int], frozenset[int]]] = {}  # node -> its groups, holders
        self.pod_records = PodRecords(self)

    def _address_id(self, address: str) -> int:
        """The id of an address in canonical form, added if new."""
        found = self._address_ids.get(address)
        if found is None:
            found = self._address_ids[address] = len(self._addresses)
            self._addresses.append(address)
            self._address_ints.append(_ipv4_int(address))
            self._address_node_group.append(-1)
        return found

    def _find_address(self, address: str) -> int:
        found = self._address_ids.get(address)
        if found is None and ":" in address:
            found = self._address_ids.get(normalize_address(address))
        return -1 if found is None else found

    # -- updates -------------------------------------------------------------------------------
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
        """`put_pod` for many pods (a restart's reload): new pods with one IPv4 address go in bulk."""
        iterator = iter(pods)
        while chunk := list(itertools.islice(iterator, BULK_CHUNK)):
            uids = [pod.uid for pod in chunk]
            if len(set(uids)) < len(uids):  # the same pod twice: its versions must apply in order
                for pod in chunk:
                    self.put_pod(pod)
                continue
            found = self._pods.find_many(uids).tolist()
            bulk = []
            for pod, row in zip(chunk, found, strict=True):
                if row < 0 and not pod.host_network and len(pod.ips) == 1 and ":" not in pod.ips[0]:
                    bulk.append(pod)
                else:
                    self.put_pod(pod)
            texts = [pod.ips[0] for pod in bulk]
            for text in set(texts).difference(self._address_ids):
                self._address_id(text)
            addresses = list(map(self._address_ids.__getitem__, texts))
            rows = self._pods.append_many(bulk, addresses)
            starts = np.fromiter((pod.start for pod in bulk), np.int64, len(bulk))
            ends = np.fromiter((NO_END if pod.end is None else pod.end for pod in bulk), np.int64, len(bulk))
            self._leases.add_many(np.array(addresses, np.int32), starts, ends, rows)

    def _row_addresses(self, row: int) -> list[int]:
        address = self._pods.address[row]
        if address >= 0:
            return [address]
        return [self._address_ids[a] for a in dict.fromkeys(normalize_address(ip) for ip in self._pods.ips[row])]

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
            else:
                table = self._prefixes.get((family, prefix))
                if table is None:
                    table = self._prefixes[(family, prefix)] = {}
                    # Longest prefix first: a /28 is more specific than a /24.
                    self._prefixes = dict(sorted(self._prefixes.items(), key=lambda item: -item[0][1]))
                group = table.get(network, -1)
                if group < 0:
                    group = table[network] = self._new_node_group()
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
        self._pods = _PodTable(self._addresses)
        self._leases = _Timelines(self._pods.uid)
        for pod in kept:
            self.put_pod(pod)
        return dropped

    # -- lookups -------------------------------------------------------------------------------
    def lookup(self, address: str, first: int, last: int) -> list[Segment]:
        """Who held `address` from second `first` through second `last` (inclusive)."""
        start, end = first, max(last, first) + 1
        address_id = self._find_address(address)
        segments: list[Segment] = []
        node_timelines: list[_View] | None = None
        for piece_start, piece_end, row in _cover(self._leases.timeline(address_id), start, end):
            if row >= 0:
                segments.append(Segment(piece_start, piece_end, self._pods.record(row), None))
                continue
            if node_timelines is None:
                node_timelines = [
                    self._ownership.timeline(group) for group in self._node_groups_of(address, address_id)
                ]
            segments.extend(self._node_cover(node_timelines, piece_start, piece_end))
        return segments

    def _node_groups_of(self, address: str, address_id: int) -> list[int]:
        """The node groups an address falls in, most specific first."""
        groups = []
        if address_id >= 0 and self._address_node_group[address_id] >= 0:
            groups.append(self._address_node_group[address_id])
        if self._prefixes:
            value = self._address_ints[address_id] if address_id >= 0 else _ipv4_int(address)
            family, bits = 4, 32
            if value < 0:
                try:
                    parsed = ipaddress.ip_address(address)
                except ValueError:
                    return groups
                family, bits, value = parsed.version, parsed.max_prefixlen, int(parsed)
            for (table_family, prefix), table in self._prefixes.items():
                if table_family == family:
                    shift = bits - prefix
                    group = table.get((value >> shift) << shift)
                    if group is not None:
                        groups.append(group)
        return groups

    def _node_cover(self, timelines: list[_View], start: int, end: int) -> Iterator[Segment]:
        if not timelines:
            yield Segment(start, end, None, None)
            return
        head, rest = timelines[0], timelines[1:]
        for piece_start, piece_end, holder in _cover(head, start, end):
            if holder >= 0:
                yield Segment(piece_start, piece_end, None, self._node_holders.values[holder][1])
            else:
                yield from self._node_cover(rest, piece_start, piece_end)

    def lookup_columns(self, addresses: Sequence[str], firsts: npt.ArrayLike, lasts: npt.ArrayLike) -> HolderColumns:
        """`lookup` for many queries at once, vectorised: where one pod or node (or nobody) held the
        address for the whole query, its index; otherwise the Segments from `lookup` (several
        holders, an address changed since the last rebuild, an IPv6 address inside a prefix)."""
        count = len(addresses)
        starts = np.asarray(firsts, np.int64).reshape(count)
        ends = np.maximum(np.asarray(lasts, np.int64).reshape(count), starts) + 1
        ids = np.fromiter(map(self._address_ids.get, addresses, repeat(-1)), np.int64, count)
        for index in np.flatnonzero(ids < 0).tolist():
            if ":" in addresses[index]:
                ids[index] = self._find_address(addresses[index])
        kinds = np.full(count, SEGMENTS, np.int8)
        holders, pod_free = self._leases.classify(ids, starts, ends)
        kinds[holders >= 0] = HELD_BY_POD
        # Where no pod held it: the node groups, most specific first, until one decides.
        pending = np.flatnonzero(pod_free)
        pending_ids = ids[pending]
        groups = _by_id(_int32s(self._address_node_group), pending_ids)
        free = self._decide_by_node(pending, groups, starts, ends, kinds, holders)
        pending, pending_ids = pending[free], pending_ids[free]
        if self._prefixes and pending.size:
            values = _by_id(_int64s(self._address_ints), pending_ids)
            for position in np.flatnonzero(pending_ids < 0).tolist():
                values[position] = _ipv4_int(addresses[pending[position]])
            if any(family == 6 for family, _ in self._prefixes):
                pending, values = pending[values >= 0], values[values >= 0]  # the rest: `lookup`
            for (family, prefix), table in self._prefixes.items():
                if family == 4 and pending.size:
                    shift = 32 - prefix
                    networks = ((values >> shift) << shift).tolist()
                    groups = np.fromiter(map(table.get, networks, repeat(-1)), np.int64, len(networks))
                    free = self._decide_by_node(pending, groups, starts, ends, kinds, holders)
                    pending, values = pending[free], values[free]
        kinds[pending] = HELD_BY_NOBODY
        segments = {
            index: self.lookup(addresses[index], int(starts[index]), int(ends[index]) - 1)
            for index in np.flatnonzero(kinds == SEGMENTS).tolist()
        }
        return HolderColumns(kinds, holders, segments)

    def _decide_by_node(
        self,
        pending: Int64s,
        groups: Int64s,
        starts: Int64s,
        ends: Int64s,
        kinds: npt.NDArray[np.int8],
        holders: Int32s,
    ) -> Bools:
        """Settle the pending queries one node group covers; returns which ones no group touched."""
        found, free = self._ownership.classify(groups, starts[pending], ends[pending])
        held = found >= 0
        kinds[pending[held]] = HELD_BY_NODE
        holders[pending[held]] = found[held]
        return free

    def lookup_many(self, addresses: Sequence[str], firsts: npt.ArrayLike, lasts: npt.ArrayLike) -> list[list[Segment]]:
        """`lookup` for each query, computed by `lookup_columns`."""
        columns = self.lookup_columns(addresses, firsts, lasts)
        starts = np.asarray(firsts, np.int64).reshape(len(addresses))
        ends = np.maximum(np.asarray(lasts, np.int64).reshape(len(addresses)), starts) + 1
        record = self._pods.record
        nodes = self._node_holders.values
        found: list[list[Segment]] = []
        for index, (kind, holder, start, end) in enumerate(
            zip(columns.kinds.tolist(), columns.holders.tolist(), starts.tolist(), ends.tolist(), strict=True)
        ):
            if kind == HELD_BY_POD:
                found.append([Segment(start, end, record(holder), None)])
            elif kind == HELD_BY_NODE:
                found.append([Segment(start, end, None, nodes[holder][1])])
            elif kind == HELD_BY_NOBODY:
                found.append([Segment(start, end, None, None)])
            else:
                found.append(columns.segments[index])
        return found

    def pod_at(self, index: int) -> PodRecord:
        """The pod of a HELD_BY_POD index from `lookup_columns`."""
        return self._pods.record(index)

    def node_address_at(self, index: int) -> NodeAddress:
        """The node address of a HELD_BY_NODE index from `lookup_columns`."""
        return self._node_holders.values[index][1]

    # -- introspection -------------------------------------------------------------------------
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

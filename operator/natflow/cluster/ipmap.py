"""The time-indexed IP map: who held an address when.

Two layers answer "who had address A between t0 and t1":

1. pod leases: a pod (not hostNetwork) holds its IPs from when it got them until it released them;
2. node addresses: a node owns its InternalIP and every private IP and delegated prefix on its
   ENIs for as long as the node exists. An address of a node that no pod held goes to the node.

Leases of one address never overlap: a later holder starts no earlier than the previous holder's
end, and a holder with no known end ends when the next one starts. Lookups bisect sorted arrays
per address (no scans), and updates re-sort only the address they touch, so the operator can
feed pod events one at a time while reports read the map.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from natflow.cluster.objects import PodRecord
from natflow.net import normalize_address

FOREVER = 1 << 62

H = TypeVar("H")


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


class _Timeline(Generic[H]):
    """Intervals of one address by owner key; resolved into sorted non-overlapping arrays lazily."""

    __slots__ = ("_raw", "_resolved", "conflicts")

    def __init__(self) -> None:
        self._raw: dict[str, tuple[int, int | None, H]] = {}
        self._resolved: tuple[list[int], list[int], list[H]] | None = None
        self.conflicts = 0

    def put(self, key: str, start: int, end: int | None, holder: H) -> None:
        self._raw[key] = (start, end, holder)
        self._resolved = None

    def drop(self, key: str) -> None:
        if self._raw.pop(key, None) is not None:
            self._resolved = None

    def __len__(self) -> int:
        return len(self._raw)

    def prune(self, before: int) -> int:
        old = [k for k, (_, end, _) in self._raw.items() if end is not None and end <= before]
        for key in old:
            del self._raw[key]
        if old:
            self._resolved = None
        return len(old)

    def resolved(self) -> tuple[list[int], list[int], list[H]]:
        if self._resolved is None:
            starts: list[int] = []
            ends: list[int] = []
            holders: list[H] = []
            conflicts = 0
            ordered = sorted(self._raw.items(), key=lambda item: (item[1][0], item[0]))
            for _, (start, end, holder) in ordered:
                if holders:
                    if ends[-1] == FOREVER:  # the previous holder's end was unknown
                        ends[-1] = max(start, starts[-1])
                    elif start < ends[-1]:
                        start = ends[-1]
                stop = FOREVER if end is None else end
                if stop <= start and holders and end is not None:
                    conflicts += 1  # wholly inside the previous holder's lease: cannot have held it
                    continue
                starts.append(start)
                ends.append(max(stop, start))
                holders.append(holder)
            self.conflicts = conflicts
            self._resolved = (starts, ends, holders)
        return self._resolved

    def cover(self, start: int, end: int) -> Iterator[tuple[int, int, H | None]]:
        """Split [start, end) into pieces with their holder (None where nobody held it)."""
        starts, ends, holders = self.resolved()
        index = max(bisect.bisect_right(starts, start) - 1, 0)
        cursor = start
        while index < len(starts) and starts[index] < end:
            lease_start, lease_end = starts[index], ends[index]
            if lease_end > cursor:
                if lease_start > cursor:
                    yield cursor, lease_start, None
                    cursor = lease_start
                piece_end = min(lease_end, end)
                if piece_end > cursor:
                    yield cursor, piece_end, holders[index]
                    cursor = piece_end
            index += 1
        if cursor < end:
            yield cursor, end, None


def _network_key(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr, strict=False)
    return network.version, network.prefixlen, int(network.network_address)


class IpMap:
    """Pod leases and node-owned addresses over time."""

    def __init__(self) -> None:
        self._pods: dict[str, _Timeline[PodRecord]] = {}
        self._pod_addresses: dict[str, tuple[str, ...]] = {}
        # (family, prefix length) -> network integer -> timeline of owning nodes
        self._nodes: dict[tuple[int, int], dict[int, _Timeline[NodeAddress]]] = {}
        self._node_keys: dict[str, list[tuple[tuple[int, int], int, str]]] = {}

    # -- updates -------------------------------------------------------------------------------
    def put_pod(self, pod: PodRecord) -> None:
        """Add or replace a pod's lease (hostNetwork pods hold no address of their own)."""
        self.drop_pod(pod.uid)
        if pod.host_network:
            return
        addresses = tuple(normalize_address(ip) for ip in pod.ips)
        for address in addresses:
            timeline = self._pods.get(address)
            if timeline is None:
                timeline = self._pods[address] = _Timeline()
            timeline.put(pod.uid, pod.start, pod.end, pod)
        self._pod_addresses[pod.uid] = addresses

    def drop_pod(self, uid: str) -> None:
        for address in self._pod_addresses.pop(uid, ()):
            timeline = self._pods.get(address)
            if timeline is not None:
                timeline.drop(uid)
                if not len(timeline):
                    del self._pods[address]

    def put_node_addresses(
        self, node: str, cidrs: Iterable[tuple[str, NodeAddress]], start: int, end: int | None
    ) -> None:
        """Replace everything a node owns: (address or CIDR, what it is) for the node's lifetime."""
        self.drop_node(node)
        keys: list[tuple[tuple[int, int], int, str]] = []
        for cidr, info in cidrs:
            family, prefix, network = _network_key(cidr)
            table = self._nodes.setdefault((family, prefix), {})
            timeline = table.get(network)
            if timeline is None:
                timeline = table[network] = _Timeline()
            owner_key = f"{node}|{cidr}"
            timeline.put(owner_key, start, end, info)
            keys.append(((family, prefix), network, owner_key))
        self._node_keys[node] = keys

    def drop_node(self, node: str) -> None:
        for table_key, network, owner_key in self._node_keys.pop(node, []):
            table = self._nodes.get(table_key, {})
            timeline = table.get(network)
            if timeline is not None:
                timeline.drop(owner_key)
                if not len(timeline):
                    del table[network]

    def prune(self, before: int) -> int:
        """Forget leases that ended before `before` (retention); returns how many were dropped."""
        dropped = 0
        for address in list(self._pods):
            timeline = self._pods[address]
            dropped += timeline.prune(before)
            if not len(timeline):
                del self._pods[address]
        for uid in [u for u, addrs in self._pod_addresses.items() if not any(a in self._pods for a in addrs)]:
            del self._pod_addresses[uid]
        return dropped

    # -- lookups -------------------------------------------------------------------------------
    def lookup(self, address: str, first: int, last: int) -> list[Segment]:
        """Who held `address` from second `first` through second `last` (inclusive)."""
        start, end = first, max(last, first) + 1
        timeline = self._pods.get(address)
        if timeline is None and ":" in address:
            timeline = self._pods.get(normalize_address(address))
        pieces = list(timeline.cover(start, end)) if timeline is not None else [(start, end, None)]
        segments: list[Segment] = []
        node_timelines: list[_Timeline[NodeAddress]] | None = None
        for piece_start, piece_end, pod in pieces:
            if pod is not None:
                segments.append(Segment(piece_start, piece_end, pod, None))
                continue
            if node_timelines is None:
                node_timelines = self._node_timelines(address)
            segments.extend(self._node_cover(node_timelines, piece_start, piece_end))
        return segments

    def _node_timelines(self, address: str) -> list[_Timeline[NodeAddress]]:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return []
        bits = 32 if parsed.version == 4 else 128
        value = int(parsed)
        found = []
        # Longest prefix first: a /32 secondary IP is more specific than a /28 prefix.
        for (family, prefix), table in sorted(self._nodes.items(), key=lambda item: -item[0][1]):
            if family != parsed.version:
                continue
            shift = bits - prefix
            timeline = table.get((value >> shift) << shift)
            if timeline is not None:
                found.append(timeline)
        return found

    @staticmethod
    def _node_cover(timelines: list[_Timeline[NodeAddress]], start: int, end: int) -> Iterator[Segment]:
        if not timelines:
            yield Segment(start, end, None, None)
            return
        head, rest = timelines[0], timelines[1:]
        for piece_start, piece_end, node in head.cover(start, end):
            if node is not None:
                yield Segment(piece_start, piece_end, None, node)
            else:
                yield from IpMap._node_cover(rest, piece_start, piece_end)

    # -- introspection -------------------------------------------------------------------------
    @property
    def lease_conflicts(self) -> int:
        """Leases dropped because they lay wholly inside another holder's lease of the same IP."""
        total = 0
        for timeline in self._pods.values():
            timeline.resolved()
            total += timeline.conflicts
        return total

    def pod_address_count(self) -> int:
        return len(self._pods)

    def pods(self) -> Iterator[PodRecord]:
        seen: set[str] = set()
        for timeline in self._pods.values():
            for pod in timeline.resolved()[2]:
                if pod.uid not in seen:
                    seen.add(pod.uid)
                    yield pod

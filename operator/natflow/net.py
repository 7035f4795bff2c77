"""Address helpers: IPv4/IPv6 text to integers, CIDR sets with fast membership tests."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable


def address_key(address: str) -> int | None:
    """Return the address as an integer (IPv6 offset above the IPv4 space), or None if not an address.

    IPv4 and IPv6 share one integer line so that one sorted index holds both families.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if parsed.version == 4:
        return int(parsed)
    return int(parsed) + (1 << 32)


def normalize_address(address: str) -> str:
    """Canonical text of an address (IPv6 written in many ways becomes one)."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def cidr_range(cidr: str) -> tuple[int, int]:
    """The [first, last] integer range of a CIDR (``strict=False`` accepts host bits)."""
    network = ipaddress.ip_network(cidr, strict=False)
    offset = 0 if network.version == 4 else 1 << 32
    return int(network.network_address) + offset, int(network.broadcast_address) + offset


class CidrSet:
    """A set of CIDR blocks with O(log n) membership, memoised per address text."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        ranges = sorted(cidr_range(c) for c in cidrs)
        merged: list[tuple[int, int]] = []
        for first, last in ranges:
            if merged and first <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        self._firsts = [first for first, _ in merged]
        self._lasts = [last for _, last in merged]
        self.cidrs = tuple(cidrs) if not isinstance(cidrs, tuple) else cidrs
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._firsts)

    def ipv4_ranges(self) -> list[tuple[int, int]]:
        """The [first, last] ranges of IPv4 addresses in the set, as integers."""
        last_ipv4 = (1 << 32) - 1
        return [
            (first, min(last, last_ipv4))
            for first, last in zip(self._firsts, self._lasts, strict=True)
            if first <= last_ipv4
        ]

    def contains_key(self, key: int) -> bool:
        index = bisect.bisect_right(self._firsts, key) - 1
        return index >= 0 and key <= self._lasts[index]

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        known = self._memo.get(address)
        if known is None:
            key = address_key(address)
            known = key is not None and self.contains_key(key)
            if len(self._memo) > 1_000_000:  # bounded: many distinct internet peers
                self._memo.clear()
            self._memo[address] = known
        return known

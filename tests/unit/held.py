"""The IP map's answers as plain values, for tests: `lookup_columns` query by query, and the rule
loop that it falls back to for addresses changed since the last rebuild."""

from __future__ import annotations

from collections.abc import Sequence

from natflow.cluster.ipmap import HELD_BY_NODE, HELD_BY_POD, SPLIT, IpMap, NodeAddress
from natflow.cluster.objects import PodRecord

# [start, end) held by a pod, owned by a node address, or by no one (both None)
Held = tuple[int, int, PodRecord | None, NodeAddress | None]


def _holder(ipmap: IpMap, start: int, end: int, kind: int, holder: int) -> Held:
    return (
        start,
        end,
        ipmap.pod_at(holder) if kind == HELD_BY_POD else None,
        ipmap.node_address_at(holder) if kind == HELD_BY_NODE else None,
    )


def held_many(ipmap: IpMap, addresses: Sequence[str], firsts: Sequence[int], lasts: Sequence[int]) -> list[list[Held]]:
    """`lookup_columns`, each query's answer as the pieces of its interval."""
    columns = ipmap.lookup_columns(addresses, firsts, lasts)
    found: list[list[Held]] = []
    for index, (first, last) in enumerate(zip(firsts, lasts, strict=True)):
        kind, holder = int(columns.kinds[index]), int(columns.holders[index])
        if kind != SPLIT:
            found.append([_holder(ipmap, first, max(last, first) + 1, kind, holder)])
            continue
        mine = (columns.piece_queries == index).nonzero()[0].tolist()
        assert len(mine) > 1, "a SPLIT query has several pieces"
        found.append(
            [
                _holder(
                    ipmap,
                    int(columns.piece_starts[at]),
                    int(columns.piece_ends[at]),
                    int(columns.piece_kinds[at]),
                    int(columns.piece_holders[at]),
                )
                for at in mine
            ]
        )
    return found


def held(ipmap: IpMap, address: str, first: int, last: int) -> list[Held]:
    """Who held `address` from second `first` through second `last` (inclusive), by `lookup_columns`."""
    return held_many(ipmap, [address], [first], [last])[0]


def held_by_rules(ipmap: IpMap, address: str, first: int, last: int) -> list[Held]:
    """The same answer from the rule loop, one address at a time (what `lookup_columns` falls back
    to for changed addresses): the reference the vectorised answers are checked against."""
    pieces = ipmap._pieces(address, ipmap._find_address(address), first, max(last, first) + 1)
    return [_holder(ipmap, *piece) for piece in pieces]

"""The IP map at cluster scale: batched lookups, memory, and a restart's reload from the store.

A seeded synthetic cluster is generated with numpy: 5,000 nodes (half with secondary IPs, half
with /28 prefixes, 3 ENIs of 10-30 each; some replaced mid-window, so node addresses have history
too), 150,000 live pods, and 1 million pod leases over 48 hours. Every slot of a node passes its
own few addresses from pod to pod, so each address is reused many times; a few leases overlap the
next (clock skew) to keep the rule path busy. Reduced rows to look up mix pod addresses (spans of
up to 5 minutes, some across a change of holder), node IPs (SNAT), node secondary IPs and prefix
addresses at random times, and addresses nobody owns.

Figures, each against a baseline in the same run:

- reduced rows looked up per second by `IpMap.lookup_columns` (2M rows, the median of three runs),
  against the map's rule loop one row at a time, as the Attributor looked rows up before (200k
  rows); both must answer alike;
- the memory a restart's ClusterState keeps (1M leases, every ENI address), as RSS growth in a
  forked child, against a dict of lists of (start, end, PodRecord) per address plus PodRecords by
  uid (as the state held them before) built from the same rows;
- `Store.load` of the generated SQLite file until the map is sorted, against reading the same rows
  into that dict-of-lists map.

`quick` runs a tenth of the cluster (targets scaled to match where they depend on size).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import multiprocessing
import os
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import numpy.typing as npt

from natflow.cluster.ipmap import SPLIT, HolderColumns, IpMap, NodeAddress, Piece
from natflow.cluster.objects import NodeRecord, OwnerRef, PodRecord
from natflow.cluster.state import ClusterState, InterfaceAddresses
from natflow.store import Store

SEED = 7
NODES = 5_000
SLOTS_PER_NODE = 30  # live pods per node: 150,000 in all
LEASES = 1_000_000
QUERIES = 2_000_000
PER_ROW_QUERIES = 200_000  # per-row lookup is the slow baseline: a smaller sample
WINDOW_START = 1_795_255_200  # 2026-11-21T10:00:00Z
WINDOW = 48 * 3600
REPLACED_NODES = 0.05  # nodes replaced mid-window by one reusing their addresses
SKEWED_LEASES = 0.005  # leases whose end overlaps the next holder's start
NAMESPACES = 60
DEPLOYMENTS = 3_000
VPC_BASE = 10 << 24  # 10.0.0.0/8: each node's ENIs live in its own /21
NODE_BLOCK = 2048

Ints = npt.NDArray[np.int64]
Row = tuple[str, float, float, float, str]


def _dotted(address: int) -> str:
    return socket.inet_ntoa(address.to_bytes(4, "big"))


@dataclass
class Cluster:
    """The generated cluster, as columns; PodRecords are made on demand (and not kept)."""

    node_names: list[str]
    replaced_names: dict[int, str]  # node -> the name of the node it replaced
    replaced_at: list[int]  # node -> when it replaced that node (0 when it did not)
    interfaces: list[list[InterfaceAddresses]]  # node -> its ENIs
    lease_node: Ints
    lease_address: Ints
    lease_start: Ints
    lease_end: Ints  # -1: still held
    lease_deployment: Ints
    uid_hex: str  # 32 hex digits per lease
    suffixes: Ints
    deployments: list[tuple[str, str, OwnerRef]]  # namespace, template hash, ReplicaSet
    texts: dict[int, str]  # address integer -> text, for every address a node owns or a pod held

    def pods(self) -> Iterator[PodRecord]:
        """Every lease as the PodRecord of its pod."""
        chunk = 65536
        for first in range(0, len(self.lease_start), chunk):
            columns = (
                self.lease_node[first : first + chunk].tolist(),
                self.lease_address[first : first + chunk].tolist(),
                self.lease_start[first : first + chunk].tolist(),
                self.lease_end[first : first + chunk].tolist(),
                self.lease_deployment[first : first + chunk].tolist(),
                self.suffixes[first : first + chunk].tolist(),
            )
            for index, (node, address, start, end, deployment, suffix) in enumerate(zip(*columns, strict=True), first):
                namespace, template_hash, owner = self.deployments[deployment]
                uid = self.uid_hex[32 * index : 32 * index + 32]
                yield PodRecord(
                    uid=f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}",
                    namespace=namespace,
                    name=f"{owner.name}-{suffix:05x}",
                    node=self.node_names[node] if start >= self.replaced_at[node] else self.replaced_names[node],
                    ips=(self.texts[address],),
                    host_network=False,
                    start=start,
                    end=None if end < 0 else end,
                    end_is_estimate=False,
                    owner=owner,
                    template_hash=template_hash,
                    branch_eni=False,
                )

    def node_lifetimes(self) -> Iterator[tuple[int, str, int, int | None]]:
        """(node index, name, start, end); a replaced node's predecessor owned the same addresses before."""
        for node, name in enumerate(self.node_names):
            replaced = self.replaced_names.get(node)
            if replaced is None:
                yield node, name, 0, None
            else:
                at = int(self.replaced_at[node])
                yield node, replaced, 0, at
                yield node, name, at, None

    def node_records(self) -> Iterator[NodeRecord]:
        for node, name, start, end in self.node_lifetimes():
            node_ip = self.interfaces[node][0].primary_ip or ""
            yield NodeRecord(f"uid-{name}", name, (node_ip,), f"i-{node:017x}", start, end)

    def instances(self) -> dict[str, list[InterfaceAddresses]]:
        """What describe-network-interfaces says, by instance (a replaced node shares its successor's)."""
        return {f"i-{node:017x}": interfaces for node, interfaces in enumerate(self.interfaces)}


def generate(scale: float) -> Cluster:
    rng = np.random.default_rng(SEED)
    nodes = max(int(NODES * scale), 10)
    leases = int(LEASES * scale)
    texts: dict[int, str] = {}
    node_names = []
    interfaces: list[list[InterfaceAddresses]] = []
    pools: list[list[int]] = []  # node -> addresses its pods take
    per_interface = rng.integers(10, 31, (nodes, 3))
    prefix_mode = rng.random(nodes) < 0.5
    for node in range(nodes):
        block = VPC_BASE + node * NODE_BLOCK
        node_names.append(f"ip-{_dotted(block).replace('.', '-')}.ec2.internal")
        pool: list[int] = []
        enis = []
        for eni in range(3):
            count = int(per_interface[node, eni])
            primary = block + eni
            texts[primary] = _dotted(primary)
            if prefix_mode[node]:
                bases = [block + 128 + (eni * 30 + j) * 16 for j in range(count)]
                pool.extend(base + i for base in bases for i in range(16))
                secondary, prefixes = (), tuple(f"{_dotted(base)}/28" for base in bases)
            else:
                addresses = [block + 16 + eni * 32 + j for j in range(count)]
                pool.extend(addresses)
                secondary, prefixes = tuple(_dotted(a) for a in addresses), ()
            enis.append(InterfaceAddresses(f"eni-{node:08x}{eni:09x}", eni == 0, texts[primary], secondary, prefixes))
        interfaces.append(enis)
        pools.append(pool)
    replaced = np.flatnonzero(rng.random(nodes) < REPLACED_NODES)
    replaced_at = np.zeros(nodes, np.int64)
    replaced_at[replaced] = WINDOW_START + rng.integers(3600, WINDOW - 3600, len(replaced))
    replaced_names = {int(node): f"{node_names[node]}-old" for node in replaced}

    # Leases: each slot of a node is a chain of pods; the last one of each chain is still running.
    slots = nodes * SLOTS_PER_NODE
    lengths = 1 + rng.multinomial(leases - slots, np.full(slots, 1 / slots))
    slot = np.repeat(np.arange(slots), lengths)
    position = np.arange(leases) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    start = rng.integers(WINDOW_START - 3600, WINDOW_START + WINDOW, leases)
    start = start[np.lexsort((start, slot))]
    last = np.append(slot[1:] != slot[:-1], True)
    next_start = np.append(start[1:], 0)
    end = np.where(last, -1, np.maximum(next_start - rng.integers(0, 31, leases), start))
    skewed = ~last & (rng.random(leases) < SKEWED_LEASES)
    end[skewed] = next_start[skewed] + rng.integers(1, 60, int(skewed.sum()))
    node = slot // SLOTS_PER_NODE
    # Slot s of a node takes the node's addresses s, s+30, s+60, ... in turn: disjoint per slot.
    sizes = np.array([len(pool) for pool in pools])
    offsets = np.cumsum(sizes) - sizes
    flat = np.concatenate([np.array(pool, np.int64) for pool in pools])
    turns = sizes[node] // SLOTS_PER_NODE
    address = flat[offsets[node] + slot % SLOTS_PER_NODE + SLOTS_PER_NODE * (position % turns)]
    for value in np.unique(address).tolist():
        texts.setdefault(value, _dotted(value))

    deployments = []
    for index in range(DEPLOYMENTS):
        template_hash = f"{int(rng.integers(1 << 40)):010x}"[:10]
        owner = OwnerRef("ReplicaSet", f"service-{index}-{template_hash}")
        deployments.append((f"team-{index % NAMESPACES}", template_hash, owner))
    return Cluster(
        node_names=node_names,
        replaced_names=replaced_names,
        replaced_at=replaced_at.tolist(),
        interfaces=interfaces,
        lease_node=node,
        lease_address=address,
        lease_start=start,
        lease_end=end,
        lease_deployment=rng.integers(0, DEPLOYMENTS, leases),
        uid_hex=rng.bytes(16 * leases).hex(),
        suffixes=rng.integers(0, 1 << 20, leases),
        deployments=deployments,
        texts=texts,
    )


def queries(cluster: Cluster, count: int) -> tuple[list[str], Ints, Ints]:
    """Reduced rows: 60% pod addresses during a lease, 25% node IPs, 10% any node address, 5% unknown."""
    rng = np.random.default_rng(SEED + 1)
    kind = rng.choice(4, count, p=[0.60, 0.25, 0.10, 0.05])
    first = rng.integers(WINDOW_START, WINDOW_START + WINDOW, count)
    lease = rng.integers(0, len(cluster.lease_start), count)
    lease_end = np.where(cluster.lease_end[lease] < 0, WINDOW_START + WINDOW, cluster.lease_end[lease])
    during = cluster.lease_start[lease] + (rng.random(count) * (lease_end - cluster.lease_start[lease])).astype(
        np.int64
    )
    first = np.where(kind == 0, during, first)
    last = first + rng.integers(0, 300, count)
    nodes = len(cluster.node_names)
    node = rng.integers(0, nodes, count)
    values = np.where(kind == 0, cluster.lease_address[lease], VPC_BASE + node * NODE_BLOCK)
    values = np.where(kind == 2, VPC_BASE + node * NODE_BLOCK + rng.integers(0, NODE_BLOCK, count), values)
    values = np.where(kind == 3, (172 << 24) + rng.integers(0, 1 << 20, count), values)
    texts = cluster.texts
    addresses = [texts.get(value) or _dotted(value) for value in values.tolist()]
    return addresses, first, last


NaiveMap = tuple[dict[str, list[tuple[int, int | None, PodRecord]]], dict[str, PodRecord], dict[str, list[object]]]


def write_store(cluster: Cluster, path: str) -> None:
    store = Store(path)
    with store.batch():
        for record in cluster.node_records():
            store.save_node(record)
        store.save_pods(cluster.pods())
    store.close()


def load_state(path: str) -> tuple[ClusterState, int]:
    """A restart: the store into a ClusterState (the map sorted and ready); and the pods loaded."""
    store = Store(path)
    state = ClusterState()
    loaded = store.load(state)
    store.close()
    return state, loaded


def load_whole_state(cluster: Cluster, path: str) -> ClusterState:
    """`load_state`, then every node's ENI addresses, as AWS lists them after a restart."""
    state, _ = load_state(path)
    state.set_interfaces(cluster.instances())
    state.ipmap.rebuild()
    return state


def naive_map(cluster: Cluster, pods: Iterable[PodRecord], nodes: bool) -> NaiveMap:
    """PodRecords in a dict of lists of (start, end, pod) per address and by uid, as the state held
    them before; with `nodes`, every ENI address likewise (a NodeAddress each)."""
    leases: dict[str, list[tuple[int, int | None, PodRecord]]] = {}
    by_uid: dict[str, PodRecord] = {}
    for pod in pods:
        by_uid[pod.uid] = pod
        for ip in pod.ips:
            leases.setdefault(ip, []).append((pod.start, pod.end, pod))
    for timeline in leases.values():
        timeline.sort(key=lambda lease: lease[0])
    owned: dict[str, list[object]] = {}
    if nodes:
        instances = cluster.instances()
        for record in cluster.node_records():
            for interface in instances[record.instance_id or ""]:
                for address in (interface.primary_ip or "", *interface.secondary_ips, *interface.prefixes):
                    info = NodeAddress(record.name, interface.interface_id, address == interface.primary_ip)
                    owned.setdefault(address, []).append((record.start, record.end, info))
    return leases, by_uid, owned


def stored_pods(path: str) -> Iterator[PodRecord]:
    """The store's pod rows as PodRecords, read plainly."""
    database = sqlite3.connect(path)
    for row in database.execute("SELECT * FROM pods"):
        uid, namespace, name, node, ips, host, start, end, estimate, owner_kind, owner_name, template, branch = row
        owner = OwnerRef(owner_kind, owner_name) if owner_kind else None
        addresses = tuple(json.loads(ips))
        yield PodRecord(
            uid, namespace, name, node, addresses, bool(host), start, end, bool(estimate), owner, template, bool(branch)
        )
    database.close()


def resident_megabytes(make: Callable[[], object]) -> float:
    """Memory that what `make()` returns keeps resident, measured in a forked child (so that nothing
    of it stays in this process): the RSS once it is built, minus the RSS before."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_measure_resident, args=(make, sender))
    child.start()
    megabytes: float = receiver.recv()
    child.join()
    return megabytes


def _measure_resident(make: Callable[[], object], sender: Connection) -> None:
    before = _settled_resident()
    made = make()
    sender.send((_settled_resident() - before) / (1 << 20))
    del made


def _settled_resident() -> int:
    """This process's RSS after a collection, with freed memory handed back to the OS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def run(quick: bool) -> list[Row]:
    scale = 0.1 if quick else 1.0
    cluster = generate(scale)
    live = int((cluster.lease_end < 0).sum())
    size = f"{len(cluster.node_names):,} nodes, {live:,} live pods, {len(cluster.lease_start):,} leases"
    if quick:
        size += " (quick: targets scaled by 0.1)"
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "state.sqlite")
        write_store(cluster, path)
        started = time.perf_counter()
        state, loaded = load_state(path)
        reload_seconds = time.perf_counter() - started
        state.set_interfaces(cluster.instances())
        lookups = lookup_rows(state.ipmap, cluster, quick, size)
        del state
        gc.collect()
        started = time.perf_counter()
        naive_map(cluster, stored_pods(path), nodes=False)
        naive_reload_seconds = time.perf_counter() - started
        state_mb = resident_megabytes(lambda: load_whole_state(cluster, path))
        naive_mb = resident_megabytes(lambda: naive_map(cluster, stored_pods(path), nodes=True))
    memory = (
        "RSS growth: the ClusterState a restart builds, every ENI address in; baseline: a dict of lists of PodRecords"
    )
    reload = f"Store.load of {loaded:,} pods, the map sorted; baseline: the same rows into a dict of lists"
    return [
        *lookups,
        ("IP map memory MB", state_mb, naive_mb, 300 * scale, f"{memory}; {size}"),
        ("IP map reload s", reload_seconds, naive_reload_seconds, 10 * scale, f"{reload}; {size}"),
    ]


def lookup_rows(ipmap: IpMap, cluster: Cluster, quick: bool, size: str) -> list[Row]:
    count = QUERIES // 10 if quick else QUERIES
    addresses, firsts, lasts = queries(cluster, count)
    timings = []
    for _ in range(3):  # the median of three: the first run also pays for fresh memory pages
        started, cpu_started = time.perf_counter(), time.process_time()
        columns = ipmap.lookup_columns(addresses, firsts, lasts)
        timings.append((time.perf_counter() - started, time.process_time() - cpu_started))
    wall, cpu = sorted(timings)[1]
    columns_rate = rate(count, wall)
    sample = PER_ROW_QUERIES // 10 if quick else PER_ROW_QUERIES
    sample_firsts, sample_lasts = firsts[:sample].tolist(), lasts[:sample].tolist()
    started = time.perf_counter()
    per_row = [
        ipmap._pieces(address, ipmap._find_address(address), first, max(last, first) + 1)
        for address, first, last in zip(addresses, sample_firsts, sample_lasts, strict=False)
    ]
    per_row_rate = rate(sample, time.perf_counter() - started)
    if answers(columns, sample_firsts, sample_lasts) != per_row:
        raise AssertionError("lookup_columns differs from the rule loop")
    split = int(np.count_nonzero(columns.kinds == SPLIT))
    detail = (
        f"{count:,} reduced rows ({split / count:.1%} split), median of 3 runs on two threads (CPU {cpu:.2f} s: "
        f"{rate(count, cpu) / 1e6:.2f}M rows per CPU second, steadier on a shared machine); per-row on {sample:,}"
    )
    return [("IP map lookups/s, lookup_columns vs per-row", columns_rate, per_row_rate, 2e6, f"{detail}; {size}")]


def answers(columns: HolderColumns, firsts: list[int], lasts: list[int]) -> list[list[Piece]]:
    """The first queries' answers from `lookup_columns` as the rule loop gives them: lists of pieces."""
    pieces: dict[int, list[Piece]] = {}
    piece_columns = (columns.piece_starts, columns.piece_ends, columns.piece_kinds, columns.piece_holders)
    for query, *piece in zip(columns.piece_queries.tolist(), *(c.tolist() for c in piece_columns), strict=True):
        pieces.setdefault(query, []).append(tuple(piece))
    whole = zip(columns.kinds.tolist(), columns.holders.tolist(), firsts, lasts, strict=False)
    return [
        pieces[index] if kind == SPLIT else [(first, max(last, first) + 1, kind, holder)]
        for index, (kind, holder, first, last) in enumerate(whole)
    ]


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    started = time.perf_counter()
    rows = run(quick)
    width = max(len(row[0]) for row in rows)
    for figure, natflow, baseline, target, comment in rows:
        ratio = natflow / baseline if baseline else float("inf")
        print(
            f"{figure:<{width}}  {natflow:>14,.2f}  {baseline:>14,.2f}  x{ratio:<6.2f}  target {target:,.0f}  {comment}"
        )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

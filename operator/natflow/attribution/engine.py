"""Give every reduced NAT Gateway byte to a workload, a node, or an unattributed address.

Rules (one place for them):

* an address held by a pod (not hostNetwork) at the time: the pod's workload, source ``pod``;
* the node's primary IP (the address SNAT rewrites pod traffic to) with no pod on it:
  the Node, source ``nodeSNAT`` while the node's SNAT decision (cluster/snat.py: its NodeClass,
  Cilium, Calico or aws-node, at the time) translates pod traffic to that destination,
  ``hostNetwork`` while it does not, ``node`` when the decision is unknown;
* any other address a node owns (secondary IPs, /28 prefixes) that no pod held: the Node, ``node``;
* anything else: ``unattributed``, labelled with what AWS says about the ENI that owns it.

A reduced row whose time span covers more than one holder is split by seconds of overlap; the
split is exact in integers (largest remainder), so every row still adds up to its NAT Gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from natflow.attribution import GroupBy
from natflow.attribution.pricing import cost
from natflow.aws.inventory import AddressOwner
from natflow.cluster.ipmap import FOREVER, HELD_BY_NOBODY, HELD_BY_NODE, HELD_BY_POD, SPLIT, HolderColumns, distinct
from natflow.cluster.objects import PodRecord
from natflow.cluster.snat import SnatDecision
from natflow.cluster.state import ClusterState
from natflow.flowlogs.reduce import Reduction, columns_of
from natflow.net import CidrSet

TOP_DESTINATIONS = 5

SOURCE_POD = "pod"
SOURCE_HOST_NETWORK = "hostNetwork"
SOURCE_NODE_SNAT = "nodeSNAT"
SOURCE_NODE = "node"
SOURCE_UNATTRIBUTED = "unattributed"
_SOURCES = (SOURCE_POD, SOURCE_HOST_NETWORK, SOURCE_NODE_SNAT, SOURCE_NODE, SOURCE_UNATTRIBUTED)

Int64s = npt.NDArray[np.int64]

# (NAT Gateway, namespace, workload kind, workload name, source)
RowKey = tuple[str, str, str, str, str]


@dataclass
class Attribution:
    nat_gateway_id: str
    namespace: str
    workload_kind: str
    workload_name: str
    source: str
    bytes_out: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    packets_in: int = 0
    split_bytes: int = 0
    pods: set[str] = field(default_factory=set)
    destinations: dict[str, int] = field(default_factory=dict)
    # node -> [first, last) seconds its address carried bytes, for the candidate pods
    node_spans: dict[str, list[int]] = field(default_factory=dict)
    address_owner: AddressOwner | None = None

    @property
    def total_bytes(self) -> int:
        return self.bytes_out + self.bytes_in

    def top_destinations(self, count: int = TOP_DESTINATIONS) -> list[tuple[str, int]]:
        ordered = sorted(self.destinations.items(), key=lambda item: (-item[1], item[0]))
        return ordered[:count]


@dataclass
class GatewayTotals:
    nat_gateway_id: str
    bytes_out: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    packets_in: int = 0
    attributed_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.bytes_out + self.bytes_in

    @property
    def coverage(self) -> float:
        return round(self.attributed_bytes / self.total_bytes, 4) if self.total_bytes else 0.0


@dataclass
class SnatExposure:
    """Bytes that node-level SNAT hid behind a node IP, and the pods that could have sent them; the
    same bytes per (node, SNAT decision); node-IP bytes whose node's SNAT is unknown."""

    bytes_by_node: dict[str, int] = field(default_factory=dict)
    pods_by_node: dict[str, list[str]] = field(default_factory=dict)
    hidden: dict[tuple[str, SnatDecision], int] = field(default_factory=dict)
    unknown: dict[tuple[str, SnatDecision], int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_node.values())


@dataclass
class AttributionResult:
    gateways: dict[str, GatewayTotals]
    rows: list[Attribution]
    snat: SnatExposure
    split_rows: int
    split_bytes: int
    price_per_gb: float

    def row_cost(self, row: Attribution) -> float:
        return cost(row.total_bytes, self.price_per_gb)


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split an integer total in proportion to weights; the parts always sum to the total."""
    weight_sum = sum(weights)
    if weight_sum <= 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [total * w // weight_sum for w in weights]
    remainder = total - sum(shares)
    if remainder:
        order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
        for index in order[:remainder]:
            shares[index] += 1
    return shares


def _exact(values: list[int]) -> npt.NDArray[Any]:
    """Integers as int64 where no sum of them can overflow it, else as Python ints (slower, as exact)."""
    try:
        column = np.array(values, np.int64)
    except OverflowError:
        return np.array(values, object)
    if len(column) and max(-int(column.min()), int(column.max())) * len(column) >= 1 << 63:
        return np.array(values, object)
    return column


def _total(parts: _Parts, chosen: Int64s) -> int:
    return int(sum(parts.bytes[chosen].tolist()))


def _sums(groups: Int64s, size: int, values: npt.NDArray[Any]) -> list[int]:
    """The sum of `values` in each group 0 .. size-1, as Python ints."""
    sums = np.zeros(size, values.dtype)
    np.add.at(sums, groups, values)
    found: list[int] = sums.tolist()
    return found


class _Rows:
    """The reduced rows as columns; ENIs and destinations as codes into their distinct values."""

    def __init__(self, reduction: Reduction) -> None:
        columns = columns_of(reduction.rows)
        self.addresses, self.peers = columns.addresses, columns.peers
        self.byte_list, self.packet_list = columns.bytes, columns.packets
        self.bytes, self.packets = _exact(self.byte_list), _exact(self.packet_list)
        self.firsts = np.frombuffer(columns.firsts, np.int64)
        self.lasts = np.frombuffer(columns.lasts, np.int64)
        self.directions = np.frombuffer(columns.directions, np.int64)
        self.enis, self.eni_codes = columns.enis, np.frombuffer(columns.eni_codes, np.int64)
        self.destinations = columns.destinations
        self.destination_codes = np.frombuffer(columns.destination_codes, np.int64)
        if "" in self.destinations:  # no destination: nothing to count
            self.destination_codes[self.destination_codes == self.destinations.index("")] = -1


@dataclass(frozen=True, slots=True)
class _Parts:
    """What each holder got of each reduced row: one part per row, or one per piece of a split row."""

    row: Int64s  # the reduced row
    kind: npt.NDArray[np.int8]  # HELD_BY_POD, HELD_BY_NODE or HELD_BY_NOBODY
    holder: npt.NDArray[np.int32]  # the pod or node address index
    start: Int64s
    end: Int64s
    bytes: npt.NDArray[Any]
    packets: npt.NDArray[Any]
    split: npt.NDArray[np.bool_]  # a piece of a split row

    def select(self, order: Int64s) -> _Parts:
        return _Parts(*(getattr(self, column.name)[order] for column in fields(self)))


class Attributor:
    """Joins reduced rows with the cluster state. One instance per report run."""

    def __init__(
        self,
        state: ClusterState,
        natgw_by_eni: Mapping[str, str],
        nat_gateway_ids: Iterable[str],
        address_owners: Mapping[str, AddressOwner],
        group_by: GroupBy,
        price_per_gb: float,
    ) -> None:
        self.state = state
        self.natgw_by_eni = natgw_by_eni
        self.nat_gateway_ids = list(nat_gateway_ids)
        self.address_owners = address_owners
        self.group_by = group_by
        self.price_per_gb = price_per_gb
        self._hidden: dict[tuple[str, SnatDecision], int] = {}
        self._unknown: dict[tuple[str, SnatDecision], int] = {}

    def attribute(self, reduction: Reduction) -> AttributionResult:
        """Every reduced row's bytes to the holders of its address, in columns: one batched lookup,
        then sums per output row with numpy; only rows that several holders shared are split one by one."""
        self._hidden, self._unknown = {}, {}
        rows = _Rows(reduction)
        found = self.state.ipmap.lookup_columns(rows.addresses, rows.firsts, rows.lasts)
        parts, split_rows, split_bytes = self._parts(rows, found)
        node_ip = self._on_node_ip(parts)
        labels, part_label = self._labels(rows, parts, node_ip)
        gateway_ids = list(dict.fromkeys([*self.nat_gateway_ids, *(self.natgw_by_eni[eni] for eni in rows.enis)]))
        code_of = {gateway_id: code for code, gateway_id in enumerate(gateway_ids)}
        row_gateway = np.array([code_of[self.natgw_by_eni[eni]] for eni in rows.enis], np.int64)[rows.eni_codes]
        part_gateway = row_gateway[parts.row]
        gateways = self._gateway_totals(gateway_ids, row_gateway, rows, part_gateway, labels, part_label, parts)

        # Output rows in the order their first part comes (parts are in reduced-row order).
        targets, first, part_target = np.unique(
            part_gateway * len(labels) + part_label, return_index=True, return_inverse=True
        )
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        part_target = rank[part_target]
        output = []
        for target in targets[order].tolist():
            gateway_code, label_code = divmod(target, len(labels))
            namespace, kind, name, source = labels[label_code]
            owner = self.address_owners.get(name) if source == SOURCE_UNATTRIBUTED else None
            output.append(Attribution(gateway_ids[gateway_code], namespace, kind, name, source, address_owner=owner))
        self._add_sums(output, parts, part_target, rows)
        self._add_holders(output, parts, part_target, node_ip)

        snat = self._finish_nodes(output)
        ordered = sorted(
            output,
            key=lambda r: (-r.total_bytes, r.nat_gateway_id, r.namespace, r.workload_kind, r.workload_name, r.source),
        )
        return AttributionResult(gateways, ordered, snat, split_rows, split_bytes, self.price_per_gb)

    @staticmethod
    def _gateway_totals(
        gateway_ids: list[str],
        row_gateway: Int64s,
        rows: _Rows,
        part_gateway: Int64s,
        labels: list[tuple[str, str, str, str]],
        part_label: Int64s,
        parts: _Parts,
    ) -> dict[str, GatewayTotals]:
        gateways = {gateway_id: GatewayTotals(gateway_id) for gateway_id in gateway_ids}
        totals = gateways.values()
        by_direction = row_gateway * 2 + rows.directions
        for field_out, field_in, column in (
            ("bytes_out", "bytes_in", rows.bytes),
            ("packets_out", "packets_in", rows.packets),
        ):
            sums = _sums(by_direction, 2 * len(gateway_ids), column)
            for gateway, out_sum, in_sum in zip(totals, sums[0::2], sums[1::2], strict=True):
                setattr(gateway, field_out, out_sum)
                setattr(gateway, field_in, in_sum)
        attributed = np.array([label[3] != SOURCE_UNATTRIBUTED for label in labels], bool)[part_label]
        attributed_sums = _sums(part_gateway[attributed], len(gateway_ids), parts.bytes[attributed])
        for gateway, attributed_sum in zip(totals, attributed_sums, strict=True):
            gateway.attributed_bytes = attributed_sum
        return gateways

    def _parts(self, rows: _Rows, found: HolderColumns) -> tuple[_Parts, int, int]:
        """One part per reduced row a single holder held; one per piece of the others, their bytes and
        packets split by seconds of overlap (exactly, in integers). Also how many rows were split and
        their bytes."""
        whole = np.flatnonzero(found.kinds != SPLIT)
        split = np.flatnonzero(found.kinds == SPLIT)
        pieces = (
            np.searchsorted(found.piece_queries, split, "left"),
            np.searchsorted(found.piece_queries, split, "right"),
        )
        split_bytes_list: list[int] = []
        split_packets_list: list[int] = []
        nbytes, packets = rows.byte_list, rows.packet_list
        weights = (found.piece_ends - found.piece_starts).tolist()
        for row, low, high in zip(split.tolist(), pieces[0].tolist(), pieces[1].tolist(), strict=True):
            shares = weights[low:high]
            split_bytes_list.extend(allocate(nbytes[row], shares))
            split_packets_list.extend(allocate(packets[row], shares))
        piece_rows = found.piece_queries
        parts = _Parts(
            row=np.concatenate((whole, piece_rows)),
            kind=np.concatenate((found.kinds[whole], found.piece_kinds)),
            holder=np.concatenate((found.holders[whole], found.piece_holders)),
            start=np.concatenate((rows.firsts[whole], found.piece_starts)),
            end=np.concatenate((np.maximum(rows.lasts[whole], rows.firsts[whole]) + 1, found.piece_ends)),
            bytes=np.concatenate((rows.bytes[whole], np.array(split_bytes_list, rows.bytes.dtype))),
            packets=np.concatenate((rows.packets[whole], np.array(split_packets_list, rows.packets.dtype))),
            split=np.concatenate((np.zeros(len(whole), bool), np.ones(len(piece_rows), bool))),
        )
        # Reduced-row order: a row has one part or pieces (in time order already), never both.
        return (
            parts.select(np.argsort(parts.row, kind="stable")),
            len(split),
            sum(nbytes[row] for row in split.tolist()),
        )

    # -- labels: (namespace, kind, name, source) of each part ------------------------------------------
    def _on_node_ip(self, parts: _Parts) -> npt.NDArray[np.bool_]:
        """Which parts a node held by its node IP (the address SNAT rewrites to)."""
        nodes = np.flatnonzero(parts.kind == HELD_BY_NODE)
        holders, inverse = np.unique(parts.holder[nodes], return_inverse=True)
        ipmap = self.state.ipmap
        primary = np.array([ipmap.node_address_at(holder).primary for holder in holders.tolist()], bool)
        node_ip = np.zeros(len(parts.row), bool)
        node_ip[nodes] = primary[inverse]
        return node_ip

    def _labels(
        self, rows: _Rows, parts: _Parts, node_ip: npt.NDArray[np.bool_]
    ) -> tuple[list[tuple[str, str, str, str]], Int64s]:
        """The distinct (namespace, kind, name, source) of output rows, and each part's."""
        labels: dict[tuple[str, str, str, str], int] = {}
        part_label = np.zeros(len(parts.row), np.int64)
        ipmap = self.state.ipmap

        pods = np.flatnonzero(parts.kind == HELD_BY_POD)
        holders, inverse = np.unique(parts.holder[pods], return_inverse=True)
        pod_labels = [
            labels.setdefault((*self._group(ipmap.pod_at(h)), SOURCE_POD), len(labels)) for h in holders.tolist()
        ]
        part_label[pods] = np.array(pod_labels, np.int64)[inverse]

        nodes = np.flatnonzero(parts.kind == HELD_BY_NODE)
        sources = np.full(len(parts.row), _SOURCES.index(SOURCE_NODE), np.int64)
        self._node_ip_sources(rows, parts, np.flatnonzero(node_ip), sources)
        sources = sources[nodes]
        keys, inverse = np.unique(parts.holder[nodes].astype(np.int64) * len(_SOURCES) + sources, return_inverse=True)
        node_labels = []
        for key in keys.tolist():
            holder, source = divmod(key, len(_SOURCES))
            label = ("", "Node", ipmap.node_address_at(holder).node, _SOURCES[source])
            node_labels.append(labels.setdefault(label, len(labels)))
        part_label[nodes] = np.array(node_labels, np.int64)[inverse]

        nobody = np.flatnonzero(parts.kind == HELD_BY_NOBODY)
        addresses = rows.addresses
        codes = {addresses[row]: -1 for row in parts.row[nobody].tolist()}
        for address in codes:
            codes[address] = labels.setdefault(("", "IP", address, SOURCE_UNATTRIBUTED), len(labels))
        part_label[nobody] = np.array([codes[addresses[row]] for row in parts.row[nobody].tolist()], np.int64)
        return list(labels), part_label

    def _group(self, pod: PodRecord) -> tuple[str, str, str]:
        if self.group_by == "pod":
            return pod.namespace, "Pod", pod.name
        if self.group_by == "namespace":
            return pod.namespace, "Namespace", pod.namespace
        workload = self.state.workload(pod)
        return workload.namespace, workload.kind, workload.name

    def _node_ip_sources(self, rows: _Rows, parts: _Parts, on_node_ip: Int64s, sources: Int64s) -> None:
        """The source (an index into `_SOURCES`) of the parts on a node IP, from the node's SNAT
        decision at each part's start; other node parts stay `node`. Also sums, per node and
        decision, the bytes that node SNAT hid and the bytes whose SNAT is unknown."""
        ipmap = self.state.ipmap
        holders, inverse = np.unique(parts.holder[on_node_ip], return_inverse=True)
        node_codes: dict[str, int] = {}
        part_node = np.array(
            [node_codes.setdefault(ipmap.node_address_at(h).node, len(node_codes)) for h in holders.tolist()], np.int64
        )[inverse]
        for node, code in node_codes.items():
            on_node = on_node_ip[part_node == code]
            timeline = self.state.snat_timeline(node)
            since = np.array([when for when, _ in timeline], np.int64)
            decision_index = np.searchsorted(since, parts.start[on_node], "right") - 1
            for index in distinct(decision_index).tolist():
                decision = timeline[index][1]
                chosen = on_node[decision_index == index]
                if decision.node_snat is None:
                    self._unknown[(node, decision)] = self._unknown.get((node, decision), 0) + _total(parts, chosen)
                    continue
                if not decision.node_snat:
                    sources[chosen] = _SOURCES.index(SOURCE_HOST_NETWORK)
                    continue
                if decision.kept_cidrs:  # pods reach these destinations with their own IP
                    kept_cidrs = CidrSet(decision.kept_cidrs)
                    peers = [rows.peers[row] for row in parts.row[chosen].tolist()]
                    kept = {peer: bool(peer) and peer in kept_cidrs for peer in dict.fromkeys(peers)}
                    pod_ip = np.fromiter(map(kept.__getitem__, peers), bool, len(peers))
                    sources[chosen[pod_ip]] = _SOURCES.index(SOURCE_HOST_NETWORK)
                    chosen = chosen[~pod_ip]
                sources[chosen] = _SOURCES.index(SOURCE_NODE_SNAT)
                self._hidden[(node, decision)] = self._hidden.get((node, decision), 0) + _total(parts, chosen)

    # -- sums per output row ---------------------------------------------------------------------------
    def _add_sums(self, output: list[Attribution], parts: _Parts, part_target: Int64s, rows: _Rows) -> None:
        """Bytes and packets each way, split bytes and bytes per destination of each output row."""
        size = len(output)
        direction = rows.directions[parts.row]
        by_direction = part_target * 2 + direction
        for field_out, field_in, column in (
            ("bytes_out", "bytes_in", parts.bytes),
            ("packets_out", "packets_in", parts.packets),
        ):
            sums = _sums(by_direction, 2 * size, column)
            for row, out_sum, in_sum in zip(output, sums[0::2], sums[1::2], strict=True):
                setattr(row, field_out, out_sum)
                setattr(row, field_in, in_sum)
        for row, split_sum in zip(output, _sums(part_target[parts.split], size, parts.bytes[parts.split]), strict=True):
            row.split_bytes = split_sum
        destination = rows.destination_codes[parts.row]
        counted = np.flatnonzero((destination >= 0) & (parts.bytes != 0))
        pairs, first, inverse = np.unique(
            part_target[counted] * len(rows.destinations) + destination[counted], return_index=True, return_inverse=True
        )
        sums = _sums(inverse, len(pairs), parts.bytes[counted])
        order = np.argsort(first, kind="stable")  # each row's destinations in the order they first came
        for pair, pair_sum in zip(pairs[order].tolist(), [sums[index] for index in order.tolist()], strict=True):
            target, code = divmod(pair, len(rows.destinations))
            output[target].destinations[rows.destinations[code]] = pair_sum

    def _add_holders(
        self, output: list[Attribution], parts: _Parts, part_target: Int64s, node_ip: npt.NDArray[np.bool_]
    ) -> None:
        """Each row's pods, and for the node IP, when it carried bytes (hostNetwork and SNATed pods send
        from it, never from a secondary address or prefix)."""
        ipmap = self.state.ipmap
        pods = np.flatnonzero(parts.kind == HELD_BY_POD)
        pairs = distinct(part_target[pods] << 32 | parts.holder[pods].astype(np.int64))
        for target, holder in zip((pairs >> 32).tolist(), (pairs & 0xFFFFFFFF).tolist(), strict=True):
            output[target].pods.add(ipmap.pod_at(holder).key)
        targets = part_target[node_ip]
        firsts = np.full(len(output), FOREVER, np.int64)
        lasts = np.full(len(output), -FOREVER, np.int64)
        np.minimum.at(firsts, targets, parts.start[node_ip])
        np.maximum.at(lasts, targets, parts.end[node_ip])
        for target in distinct(targets).tolist():
            row = output[target]
            row.node_spans[row.workload_name] = [int(firsts[target]), int(lasts[target])]

    # -- node rows: candidate pods and SNAT exposure -------------------------------------------------
    def _finish_nodes(self, rows: Iterable[Attribution]) -> SnatExposure:
        exposure = SnatExposure(hidden=dict(self._hidden), unknown=dict(self._unknown))
        for row in rows:
            for node, (start, end) in row.node_spans.items():
                candidates = self.state.pods_on_node(node, start, end)
                if row.source == SOURCE_NODE_SNAT:
                    decision = self.state.snat_at(node, start)
                    hidden = [
                        p for p in candidates if not p.host_network and not (p.branch_eni and decision.branch_eni_kept)
                    ]
                    row.pods.update(p.key for p in candidates if p.host_network or p in hidden)
                    exposure.bytes_by_node[node] = exposure.bytes_by_node.get(node, 0) + row.total_bytes
                    known = exposure.pods_by_node.setdefault(node, [])
                    known.extend(p.key for p in hidden if p.key not in known)
                elif row.source in (SOURCE_HOST_NETWORK, SOURCE_NODE):
                    row.pods.update(p.key for p in candidates if p.host_network)
        return exposure

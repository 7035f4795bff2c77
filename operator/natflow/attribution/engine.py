"""Give every reduced NAT Gateway byte to a workload, a node, or an unattributed address.

Rules (one place for them):

* an address held by a pod (not hostNetwork) at the time: the pod's workload, source ``pod``;
* the node's primary IP (the address SNAT rewrites pod traffic to) with no pod on it:
  the Node, source ``nodeSNAT`` while the aws-node DaemonSet SNATs (EXTERNALSNAT=false and the
  destination not in AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS), ``hostNetwork`` while it does not,
  ``node`` when the CNI is unknown;
* any other address a node owns (secondary IPs, /28 prefixes) that no pod held: the Node, ``node``;
* anything else: ``unattributed``, labelled with what AWS says about the ENI that owns it.

A reduced row whose time span covers more than one holder is split by seconds of overlap; the
split is exact in integers (largest remainder), so every row still adds up to its NAT Gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from natflow.attribution.pricing import cost
from natflow.aws.inventory import AddressOwner
from natflow.cluster.ipmap import Segment
from natflow.cluster.objects import PodRecord
from natflow.cluster.state import ClusterState
from natflow.flowlogs.reduce import BYTES, FIRST_START, LAST_END, OUT, PACKETS, Reduction
from natflow.net import CidrSet

GroupBy = Literal["workload", "pod", "namespace"]
GROUP_BY_CHOICES: tuple[GroupBy, ...] = ("workload", "pod", "namespace")
TOP_DESTINATIONS = 5

SOURCE_POD = "pod"
SOURCE_HOST_NETWORK = "hostNetwork"
SOURCE_NODE_SNAT = "nodeSNAT"
SOURCE_NODE = "node"
SOURCE_UNATTRIBUTED = "unattributed"

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
    """Bytes that node-level SNAT hid behind a node IP, and the pods that could have sent them."""

    bytes_by_node: dict[str, int] = field(default_factory=dict)
    pods_by_node: dict[str, list[str]] = field(default_factory=dict)

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
        self._exclusions: dict[tuple[str, ...], CidrSet] = {}

    def attribute(self, reduction: Reduction) -> AttributionResult:
        gateways = {gid: GatewayTotals(gid) for gid in self.nat_gateway_ids}
        rows: dict[RowKey, Attribution] = {}
        split_rows = split_bytes = 0
        items = list(reduction.rows.items())
        # One batched lookup for every row: holders are resolved once each, not once per row.
        found = self.state.ipmap.lookup_many(
            [key[1] for key, _ in items],
            [value[FIRST_START] for _, value in items],
            [value[LAST_END] for _, value in items],
        )
        for ((eni, address, direction, _minute, peer, service), value), segments in zip(items, found, strict=True):
            gateway_id = self.natgw_by_eni[eni]
            totals = gateways.setdefault(gateway_id, GatewayTotals(gateway_id))
            nbytes, packets = value[BYTES], value[PACKETS]
            if direction == OUT:
                totals.bytes_out += nbytes
                totals.packets_out += packets
            else:
                totals.bytes_in += nbytes
                totals.packets_in += packets
            if len(segments) == 1:
                parts = [(segments[0], nbytes, packets)]
            else:
                weights = [s.seconds for s in segments]
                parts = list(zip(segments, allocate(nbytes, weights), allocate(packets, weights), strict=True))
                split_rows += 1
                split_bytes += nbytes
            destination = service or peer
            for segment, part_bytes, part_packets in parts:
                row = self._row_for(rows, gateway_id, address, segment, peer)
                if direction == OUT:
                    row.bytes_out += part_bytes
                    row.packets_out += part_packets
                else:
                    row.bytes_in += part_bytes
                    row.packets_in += part_packets
                if len(parts) > 1:
                    row.split_bytes += part_bytes
                if destination and part_bytes:
                    row.destinations[destination] = row.destinations.get(destination, 0) + part_bytes
                if row.source != SOURCE_UNATTRIBUTED:
                    totals.attributed_bytes += part_bytes
        snat = self._finish_nodes(rows.values())
        ordered = sorted(
            rows.values(),
            key=lambda r: (-r.total_bytes, r.nat_gateway_id, r.namespace, r.workload_kind, r.workload_name, r.source),
        )
        return AttributionResult(gateways, ordered, snat, split_rows, split_bytes, self.price_per_gb)

    # -- one segment -> one row ------------------------------------------------------------------
    def _row_for(
        self, rows: dict[RowKey, Attribution], gateway_id: str, address: str, segment: Segment, peer: str
    ) -> Attribution:
        owner: AddressOwner | None = None
        node_name: str | None = None
        if segment.pod is not None:
            namespace, kind, name = self._group(segment.pod)
            source = SOURCE_POD
        elif segment.node is not None:
            node_name = segment.node.node
            namespace, kind, name = "", "Node", node_name
            source = self._node_source(segment, peer) if segment.node.primary else SOURCE_NODE
        else:
            namespace, kind, name, source = "", "IP", address, SOURCE_UNATTRIBUTED
            owner = self.address_owners.get(address)
        key = (gateway_id, namespace, kind, name, source)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Attribution(gateway_id, namespace, kind, name, source, address_owner=owner)
        if segment.pod is not None:
            row.pods.add(segment.pod.key)
        elif node_name is not None and segment.node is not None and segment.node.primary:
            # Candidates only for the node IP: hostNetwork and SNATed pods send from it, never from
            # a secondary address or prefix.
            span = row.node_spans.get(node_name)
            if span is None:
                row.node_spans[node_name] = [segment.start, segment.end]
            else:
                span[0] = min(span[0], segment.start)
                span[1] = max(span[1], segment.end)
        return row

    def _group(self, pod: PodRecord) -> tuple[str, str, str]:
        if self.group_by == "pod":
            return pod.namespace, "Pod", pod.name
        if self.group_by == "namespace":
            return pod.namespace, "Namespace", pod.namespace
        workload = self.state.workload(pod)
        return workload.namespace, workload.kind, workload.name

    def _node_source(self, segment: Segment, peer: str) -> str:
        setting = self.state.snat.at(segment.start)
        if setting is None or setting.node_snat is None:
            return SOURCE_NODE
        if not setting.node_snat:
            return SOURCE_HOST_NETWORK
        if peer and setting.exclude_cidrs:
            excluded = self._exclusions.get(setting.exclude_cidrs)
            if excluded is None:
                excluded = self._exclusions[setting.exclude_cidrs] = CidrSet(setting.exclude_cidrs)
            if peer in excluded:
                return SOURCE_HOST_NETWORK  # pods reach excluded CIDRs with their own IP
        return SOURCE_NODE_SNAT

    # -- node rows: candidate pods and SNAT exposure -------------------------------------------------
    def _finish_nodes(self, rows: Iterable[Attribution]) -> SnatExposure:
        exposure = SnatExposure()
        for row in rows:
            for node, (start, end) in row.node_spans.items():
                candidates = self.state.pods_on_node(node, start, end)
                if row.source == SOURCE_NODE_SNAT:
                    setting = self.state.snat.at(start)
                    strict = setting is None or setting.pod_sg_mode == "strict"
                    hidden = [p for p in candidates if not p.host_network and not (p.branch_eni and strict)]
                    row.pods.update(p.key for p in candidates if p.host_network or p in hidden)
                    exposure.bytes_by_node[node] = exposure.bytes_by_node.get(node, 0) + row.total_bytes
                    known = exposure.pods_by_node.setdefault(node, [])
                    known.extend(p.key for p in hidden if p.key not in known)
                elif row.source in (SOURCE_HOST_NETWORK, SOURCE_NODE):
                    row.pods.update(p.key for p in candidates if p.host_network)
        return exposure

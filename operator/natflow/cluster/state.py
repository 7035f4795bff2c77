"""Everything natflow knows about the cluster, fed object by object (dump files or watch events)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from natflow.cluster.ipmap import HELD_BY_NODE, HELD_BY_POD, IpMap, NodeAddress, PodColumns
from natflow.cluster.objects import (
    NodeRecord,
    OwnerRef,
    PodRecord,
    SnatSetting,
    node_record,
    owner_of,
    pod_record,
    snat_setting,
)
from natflow.cluster.owners import Workload, workload_of
from natflow.cluster.snat import (
    SOURCE_CALICO,
    SOURCE_CILIUM,
    SOURCE_NODECLASS,
    CalicoPool,
    CiliumConfig,
    NodeClassSnat,
    SnatDecision,
    SnatInputs,
    calico_pools,
    cilium_config,
    decide,
    nodeclass_snat,
)

OWNER_KINDS = ("ReplicaSet", "Job")
T = TypeVar("T")
BEFORE_ALL = -(1 << 62)
# A node's SNAT decisions over time: (since, decision), the first since BEFORE_ALL.
SnatTimeline = list[tuple[int, SnatDecision]]


@dataclass(frozen=True, slots=True)
class InterfaceAddresses:
    """What AWS says one ENI of an instance carries (from describe-network-interfaces)."""

    interface_id: str
    primary_interface: bool  # device index 0: its primary IP is the node IP that SNAT uses
    primary_ip: str | None
    secondary_ips: tuple[str, ...]
    prefixes: tuple[str, ...]


class History(Generic[T]):
    """One configuration over time: each value holds from its `since` until the next one."""

    def __init__(self) -> None:
        self._since: list[int] = []
        self._values: list[T | None] = []

    def set(self, since: int, value: T | None) -> None:
        index = bisect.bisect_left(self._since, since)
        if index < len(self._since) and self._since[index] == since:
            self._values[index] = value
        else:
            self._since.insert(index, since)
            self._values.insert(index, value)

    def at(self, when: int) -> T | None:
        index = bisect.bisect_right(self._since, when) - 1
        return self._values[index] if index >= 0 else None

    def changes(self) -> list[tuple[int, T | None]]:
        return list(zip(self._since, self._values, strict=True))

    def observe(self, now: int, value: T | None) -> int | None:
        """A watch saw `value` at `now`: record it unless it is the last one already; returns since when.
        The first value seen holds for all earlier history (natflow cannot know what came before it)."""
        if self._values and self._values[-1] == value:
            return None
        since = now if self._since else 0
        self.set(since, value)
        return since

    @property
    def known(self) -> bool:
        return any(value is not None for value in self._values)


class SnatHistory(History[SnatSetting]):
    """The aws-node SNAT setting over time; None means no aws-node DaemonSet."""


@dataclass(frozen=True, slots=True)
class AddressHolder:
    """Who held an address at one time, and whether that node's pods reach the NAT Gateway as its IP."""

    kind: str  # "pod", "node" or "nobody"
    pod: PodRecord | None
    node: str | None  # the pod's node, or the node that owns the address
    node_ip: bool  # the node's primary IP (the address node SNAT rewrites pod traffic to)
    snat: SnatDecision | None  # the node's SNAT decision at that time


class ClusterState:
    def __init__(self) -> None:
        self.ipmap = IpMap()
        # Pods with IPs of their own live in the map's pod table (a million, after two days of churn).
        self.pods: Mapping[str, PodRecord] = self.ipmap.pod_records
        self.host_network_pods: dict[str, PodRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.owners: dict[tuple[str, str, str], OwnerRef | None] = {}
        self.snat = SnatHistory()
        # The other SNAT sources over time (cluster/snat.py decides per node from all of them).
        self.nodeclasses: dict[str, History[NodeClassSnat]] = {}
        self.cilium: History[CiliumConfig] = History()
        self.calico: History[tuple[CalicoPool, ...]] = History()
        self._calico_objects: dict[str, tuple[CalicoPool, ...]] = {}
        self._host_network_by_node: dict[str, set[str]] = {}
        self._interfaces_by_instance: dict[str, list[InterfaceAddresses]] = {}
        self._workloads: dict[str, Workload] = {}

    # -- objects ----------------------------------------------------------------------------------
    def apply(self, obj: Mapping[str, Any], deleted: bool = False) -> None:
        """Apply one Kubernetes object of any kind natflow reads; raises ObjectError when unusable."""
        kind = obj.get("kind")
        if kind == "Pod":
            record = pod_record(obj, deleted=deleted)
            if record is not None:
                self.put_pod(record)
        elif kind == "Node":
            self.put_node(node_record(obj, deleted=deleted))
        elif kind in OWNER_KINDS:
            self.put_owner(*owner_of(obj))

    def put_owner(self, key: tuple[str, str, str], owner: OwnerRef | None) -> None:
        """A ReplicaSet's or Job's owner: the workloads worked out before it are forgotten."""
        self.owners[key] = owner
        self._workloads.clear()

    def put_pod(self, pod: PodRecord) -> None:
        old = self.host_network_pods.pop(pod.uid, None)
        if old is not None:
            self._host_network_by_node.get(old.node, set()).discard(pod.uid)
        if pod.host_network:
            self.host_network_pods[pod.uid] = pod
            self._host_network_by_node.setdefault(pod.node, set()).add(pod.uid)
        self.ipmap.put_pod(pod)  # also drops the pod's lease if it became hostNetwork
        self._workloads.pop(pod.uid, None)

    def put_pod_columns(self, pods: PodColumns) -> None:
        """`put_pod` for many pods at once (a restart's reload)."""
        host_network = self.host_network_pods
        if len(set(pods.uid)) < len(pods):  # the same pod twice: its versions must apply in order
            one_by_one = list(range(len(pods)))
        elif any(pods.host_network) or any(map(host_network.__contains__, pods.uid)):
            held = zip(pods.uid, pods.host_network, strict=True)
            one_by_one = [index for index, (uid, host) in enumerate(held) if host or uid in host_network]
        else:
            one_by_one = []
        for index in one_by_one:
            self.put_pod(pods.record(index))
        if one_by_one:
            pods = pods.select(sorted(set(range(len(pods))).difference(one_by_one)))
        self.ipmap.put_pod_columns(pods)
        if self._workloads:
            for uid in pods.uid:
                self._workloads.pop(uid, None)

    def put_node(self, node: NodeRecord) -> None:
        self.nodes[node.name] = node
        self._refresh_node(node.name)

    def set_interfaces(self, by_instance: Mapping[str, list[InterfaceAddresses]]) -> None:
        """The ENIs of each instance; node addresses are rebuilt for nodes whose instance is known."""
        self._interfaces_by_instance = dict(by_instance)
        for name in self.nodes:
            self._refresh_node(name)

    def _refresh_node(self, name: str) -> None:
        node = self.nodes[name]
        owned: dict[str, NodeAddress] = {}
        for interface in self._interfaces_by_instance.get(node.instance_id or "", []):
            if interface.primary_ip:
                owned[interface.primary_ip] = NodeAddress(name, interface.interface_id, interface.primary_interface)
            for address in (*interface.secondary_ips, *interface.prefixes):
                owned.setdefault(address, NodeAddress(name, interface.interface_id, False))
        for address in node.internal_ips:
            known = owned.get(address)
            owned[address] = NodeAddress(name, known.interface_id if known else None, True)
        self.ipmap.put_node_addresses(name, owned.items(), node.start, node.end)

    # -- questions --------------------------------------------------------------------------------
    def owner_lookup(self, namespace: str, kind: str, name: str) -> tuple[bool, OwnerRef | None]:
        key = (namespace, kind, name)
        if key in self.owners:
            return True, self.owners[key]
        return False, None

    def workload(self, pod: PodRecord) -> Workload:
        found = self._workloads.get(pod.uid)
        if found is None:
            found = self._workloads[pod.uid] = workload_of(pod, self.owner_lookup)
        return found

    def pods_on_node(self, node: str, start: int, end: int) -> list[PodRecord]:
        """Pods (hostNetwork ones too) that were on `node` at some time in [start, end)."""
        found = self.ipmap.pods_on_node(node, start, end)
        for uid in self._host_network_by_node.get(node, ()):
            pod = self.host_network_pods[uid]
            if pod.start < end and (pod.end is None or pod.end > start):
                found.append(pod)
        return sorted(found, key=lambda p: p.key)

    def set_snat(self, since: int, obj: Mapping[str, Any] | None) -> SnatSetting | None:
        setting = snat_setting(obj) if obj is not None else None
        self.snat.set(since, setting)
        return setting

    # -- SNAT per node, per time ------------------------------------------------------------------
    def observe_snat_source(self, now: int, kind: str, name: str, obj: Mapping[str, Any] | None) -> int | None:
        """A watch saw a SNAT source object (`kind` one of SNAT_SOURCE_KINDS; None: it is gone) at `now`;
        returns since when its value holds, or None when nothing changed. Raises ObjectError."""
        history, value = self._snat_source(kind, name, obj)
        return history.observe(now, value)

    def replay_snat_source(self, kind: str, name: str, since: int, obj: Mapping[str, Any] | None) -> None:
        """A SNAT source object known to hold from `since` (the store, a dump's versions); in time order."""
        history, value = self._snat_source(kind, name, obj)
        history.set(since, value)

    def _snat_source(self, kind: str, name: str, obj: Mapping[str, Any] | None) -> tuple[History[Any], Any]:
        if kind == SOURCE_NODECLASS:
            return self.nodeclasses.setdefault(name, History()), nodeclass_snat(obj) if obj is not None else None
        if kind == SOURCE_CILIUM:
            return self.cilium, cilium_config(obj) if obj is not None else None
        if kind != SOURCE_CALICO:
            raise ValueError(f"not a SNAT source kind: {kind}")
        pools = calico_pools(obj) if obj is not None else ()
        if pools:
            self._calico_objects[name] = pools
        else:
            self._calico_objects.pop(name, None)
        current = tuple(sorted(pool for key in sorted(self._calico_objects) for pool in self._calico_objects[key]))
        return self.calico, current or None

    def snat_inputs_at(self, when: int) -> SnatInputs:
        return SnatInputs(
            aws_node=self.snat.at(when),
            nodeclasses={name: history.at(when) for name, history in self.nodeclasses.items()},
            cilium=self.cilium.at(when),
            calico=self.calico.at(when) or (),
        )

    def snat_timeline(self, node: str) -> SnatTimeline:
        """The node's SNAT decisions over time, each from the sources as they were then."""
        record = self.nodes.get(node)
        nodeclass = record.nodeclass if record is not None else None
        histories: list[History[Any]] = [self.snat, self.cilium, self.calico]
        if nodeclass is not None and nodeclass in self.nodeclasses:
            histories.append(self.nodeclasses[nodeclass])
        times = sorted({since for history in histories for since, _ in history.changes()})
        timeline: SnatTimeline = []
        for when in (BEFORE_ALL, *times):
            decision = decide(nodeclass, self.snat_inputs_at(when))
            if not timeline or timeline[-1][1] != decision:
                timeline.append((when, decision))
        return timeline

    def snat_at(self, node: str, when: int) -> SnatDecision:
        timeline = self.snat_timeline(node)
        index = bisect.bisect_right([since for since, _ in timeline], when) - 1
        return timeline[max(index, 0)][1]

    @property
    def snat_known(self) -> bool:
        """Whether any SNAT source was ever seen."""
        nodeclasses = any(history.known for history in self.nodeclasses.values())
        return self.snat.known or self.cilium.known or self.calico.known or nodeclasses

    def holder_at(self, address: str, when: int) -> AddressHolder:
        """Who held `address` at `when` (a pod, a node, or nobody), and its node's SNAT decision then:
        with node SNAT, a pod's traffic reached the NAT Gateway as its node's IP, not this address."""
        found = self.ipmap.lookup_columns([address], [when], [when])
        kind, holder = int(found.kinds[0]), int(found.holders[0])
        if kind == HELD_BY_POD:
            pod = self.ipmap.pod_at(holder)
            snat = self.snat_at(pod.node, when) if pod.node else None
            return AddressHolder("pod", pod, pod.node or None, False, snat)
        if kind == HELD_BY_NODE:
            owned = self.ipmap.node_address_at(holder)
            return AddressHolder("node", None, owned.node, owned.primary, self.snat_at(owned.node, when))
        return AddressHolder("nobody", None, None, False, None)

    def estimated_ends(self) -> Iterable[PodRecord]:
        host_network = (p for p in self.host_network_pods.values() if p.end_is_estimate)
        return itertools.chain(self.ipmap.estimated_ends(), host_network)

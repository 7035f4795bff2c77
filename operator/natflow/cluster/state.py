"""Everything natflow knows about the cluster, fed object by object (dump files or watch events)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from natflow.cluster.ipmap import IpMap, NodeAddress, PodColumns
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

OWNER_KINDS = ("ReplicaSet", "Job")


@dataclass(frozen=True, slots=True)
class InterfaceAddresses:
    """What AWS says one ENI of an instance carries (from describe-network-interfaces)."""

    interface_id: str
    primary_interface: bool  # device index 0: its primary IP is the node IP that SNAT uses
    primary_ip: str | None
    secondary_ips: tuple[str, ...]
    prefixes: tuple[str, ...]


class SnatHistory:
    """The aws-node SNAT setting over time; None means no aws-node DaemonSet (CNI unknown)."""

    def __init__(self) -> None:
        self._since: list[int] = []
        self._settings: list[SnatSetting | None] = []

    def set(self, since: int, setting: SnatSetting | None) -> None:
        index = bisect.bisect_left(self._since, since)
        if index < len(self._since) and self._since[index] == since:
            self._settings[index] = setting
        else:
            self._since.insert(index, since)
            self._settings.insert(index, setting)

    def at(self, when: int) -> SnatSetting | None:
        index = bisect.bisect_right(self._since, when) - 1
        return self._settings[index] if index >= 0 else None

    def changes(self) -> list[tuple[int, SnatSetting | None]]:
        return list(zip(self._since, self._settings, strict=True))

    @property
    def known(self) -> bool:
        return any(setting is not None for setting in self._settings)


class ClusterState:
    def __init__(self) -> None:
        self.ipmap = IpMap()
        # Pods with IPs of their own live in the map's pod table (a million, after two days of churn).
        self.pods: Mapping[str, PodRecord] = self.ipmap.pod_records
        self.host_network_pods: dict[str, PodRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.owners: dict[tuple[str, str, str], OwnerRef | None] = {}
        self.snat = SnatHistory()
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

    def estimated_ends(self) -> Iterable[PodRecord]:
        host_network = (p for p in self.host_network_pods.values() if p.end_is_estimate)
        return itertools.chain(self.ipmap.estimated_ends(), host_network)

"""The subject of a trace (a pod, a workload's pods, or an address) as addresses over the window,
and who held an inside address when (the time-indexed IP map, as attribution reads it)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from natflow.cluster.ipmap import HELD_BY_NODE, HELD_BY_POD, SPLIT
from natflow.cluster.objects import PodRecord
from natflow.cluster.state import ClusterState
from natflow.trace.findings import NodeTranslation

FOREVER = 1 << 62


class SubjectError(ValueError):
    """A subject the cluster does not know, or written wrongly; the message says which."""


@dataclass
class Subject:
    kind: str  # pod | workload | address
    name: str
    addresses: list[str]  # the inside addresses to look for, the subject's own first
    node_translations: list[NodeTranslation] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) warnings
    # When the subject used each address (a pod's lease; an address given: always). Records of an
    # address outside these times are another holder's.
    times: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def uses(self, address: str | None, when: int) -> bool:
        if address not in self.addresses:
            return False
        spans = self.times.get(address)
        return spans is None or any(start <= when < end for start, end in spans)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "addresses": list(self.addresses)}


@dataclass(frozen=True)
class Holder:
    kind: str  # pod | node | unattributed
    name: str
    namespace: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "name": self.name, "namespace": self.namespace}


def _overlaps(pod: PodRecord, window: tuple[int, int]) -> bool:
    return pod.start < window[1] and (pod.end is None or pod.end > window[0])


def address_subject(text: str) -> Subject:
    try:
        address = str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise SubjectError(f"--address: not an IP address: {text!r}") from None
    return Subject("address", address, [address])


def pod_subject(state: ClusterState, text: str, window: tuple[int, int]) -> Subject:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise SubjectError(f"--pod: expected NAMESPACE/NAME, got {text!r}")
    pods = [p for p in _all_pods(state) if p.namespace == namespace and p.name == name and _overlaps(p, window)]
    if not pods:
        raise SubjectError(f"--pod {text}: no pod of that name held an address in the window")
    return _pods_subject(state, "pod", text, pods, window)


def workload_subject(state: ClusterState, text: str, window: tuple[int, int]) -> Subject:
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise SubjectError(f"--workload: expected NAMESPACE/KIND/NAME, got {text!r}")
    namespace, kind, name = parts
    pods = []
    for pod in _all_pods(state):
        if pod.namespace != namespace or not _overlaps(pod, window):
            continue
        workload = state.workload(pod)
        if workload.kind.lower() == kind.lower() and workload.name == name:
            pods.append(pod)
    if not pods:
        raise SubjectError(f"--workload {text}: no pod of it held an address in the window")
    return _pods_subject(state, "workload", text, pods, window)


def _all_pods(state: ClusterState) -> list[PodRecord]:
    return [*state.pods.values(), *state.host_network_pods.values()]


def _pods_subject(
    state: ClusterState, kind: str, name: str, pods: Sequence[PodRecord], window: tuple[int, int]
) -> Subject:
    """The pods' addresses; where node SNAT rewrote them, the node's address too (the pod cannot be
    seen past its node then: its conversations are the node address's, shared with the node's other pods)."""
    subject = Subject(kind, name, [])
    own: dict[str, None] = {}
    nodes: dict[str, None] = {}
    for pod in sorted(pods, key=lambda p: (p.start, p.key)):
        node = state.nodes.get(pod.node)
        node_ip = node.internal_ips[0] if node and node.internal_ips else None
        lease = (pod.start, pod.end if pod.end is not None else FOREVER)
        for ip in pod.ips:
            subject.times.setdefault(ip, []).append(lease)
        if pod.host_network:
            own.update(dict.fromkeys(pod.ips))
            subject.notes.append(
                (
                    "HostNetworkPod",
                    f"{pod.key} uses the host network: its address is node "
                    f"{pod.node}'s, shared with the node and its other hostNetwork pods",
                )
            )
            continue
        own.update(dict.fromkeys(pod.ips))
        start, end = max(pod.start, window[0]), min(pod.end or FOREVER, window[1])
        # The pod's node's SNAT decisions over its time in the window (per node: aws-node, NodeClass, Cilium, Calico).
        timeline = state.snat_timeline(pod.node) if pod.node else []
        before = [d for since, d in timeline if since <= start][-1:]
        in_pod = before + [d for since, d in timeline if start < since < end]
        snat = [d.node_snat for d in in_pod] or [None]
        hiding = [d for d in in_pod if d.node_snat]
        hidden = bool(hiding) and not (pod.branch_eni and all(d.branch_eni_kept for d in in_pod))
        if hidden and node_ip:
            nodes[node_ip] = None
            subject.times.setdefault(node_ip, []).append(lease)
            for ip in pod.ips:
                subject.node_translations.append(NodeTranslation(ip, node_ip))
            subject.notes.append(
                (
                    "NodeSnatHidesPod",
                    f"node SNAT was on ({hiding[0].origin}: {hiding[0].setting}): "
                    f"{pod.key}'s traffic leaving the VPC carries node {pod.node}'s address {node_ip}; the pod "
                    f"cannot be seen past its node, so {node_ip}'s conversations (the node's and its other pods') "
                    "are shown",
                )
            )
        elif any(value is None for value in snat):
            subject.notes.append(
                (
                    "CNIUnknown",
                    f"whether node {pod.node} rewrote {pod.key}'s address (node SNAT) "
                    "is unknown: only the pod's own address is traced",
                )
            )
    subject.addresses = [*own, *(ip for ip in nodes if ip not in own)]
    return subject


def holders(state: ClusterState, queries: Sequence[tuple[str, int, int]]) -> list[Holder]:
    """Who held each (address, first second, last second): a pod, a node, else unattributed; where
    several held it in turn, the first of them."""
    if not queries:
        return []
    ipmap = state.ipmap
    found = ipmap.lookup_columns([q[0] for q in queries], [q[1] for q in queries], [q[2] for q in queries])
    first_piece: dict[int, tuple[int, int]] = {}
    for query, kind, holder in zip(
        found.piece_queries.tolist(), found.piece_kinds.tolist(), found.piece_holders.tolist(), strict=True
    ):
        first_piece.setdefault(query, (kind, holder))
    result = []
    for index, (kind, holder) in enumerate(zip(found.kinds.tolist(), found.holders.tolist(), strict=True)):
        if kind == SPLIT:
            kind, holder = first_piece.get(index, (0, -1))
        if kind == HELD_BY_POD:
            pod = ipmap.pod_at(holder)
            result.append(Holder("pod", pod.name, pod.namespace))
        elif kind == HELD_BY_NODE:
            result.append(Holder("node", ipmap.node_address_at(holder).node, None))
        else:
            result.append(Holder("unattributed", queries[index][0], None))
    return result

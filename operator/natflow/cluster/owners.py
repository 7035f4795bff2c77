"""Pod -> workload: ReplicaSet -> Deployment, Job -> CronJob, StatefulSet, DaemonSet, else the Pod."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from natflow.cluster.objects import OwnerRef, PodRecord

# Owner lookups follow at most this many hops (pod -> ReplicaSet -> Deployment is two).
MAX_HOPS = 4


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    kind: str
    name: str


# (namespace, kind, name) -> (is the object known?, its controlling owner if it has one)
OwnerLookup = Callable[[str, str, str], tuple[bool, OwnerRef | None]]


def workload_of(pod: PodRecord, lookup: OwnerLookup) -> Workload:
    """The workload a pod belongs to, walking known owner objects, else the naming rules."""
    owner = pod.owner
    if owner is None:
        return Workload(pod.namespace, "Pod", pod.name)
    for _ in range(MAX_HOPS):
        known, parent = lookup(pod.namespace, owner.kind, owner.name)
        if known:
            if parent is None:
                break
            owner = parent
            continue
        if owner.kind == "ReplicaSet" and pod.template_hash and owner.name.endswith("-" + pod.template_hash):
            # Unknown ReplicaSet: the Deployment controller names it <deployment>-<pod-template-hash>.
            owner = OwnerRef("Deployment", owner.name[: -len(pod.template_hash) - 1])
        break
    return Workload(pod.namespace, owner.kind, owner.name)

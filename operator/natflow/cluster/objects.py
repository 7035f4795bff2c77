"""Slim, immutable records of the Kubernetes objects natflow reads.

The same functions serve the offline command (objects from ``kubectl get -o json`` files) and the
operator (bodies from watch events), so both apply the same timing rules. Only what attribution
needs is kept: no managedFields, no specs beyond hostNetwork.
"""

from __future__ import annotations

import contextlib
import ipaddress
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from natflow.timeutil import parse_time

# The condition set when the pod's sandbox (and so its IP) is ready; PodHasNetwork before 1.28.
NETWORK_READY_CONDITIONS = ("PodReadyToStartContainers", "PodHasNetwork")
POD_ENI_ANNOTATION = "vpc.amazonaws.com/pod-eni"
TERMINAL_PHASES = ("Succeeded", "Failed")


class ObjectError(ValueError):
    """An object natflow cannot use; the message names it and says what is wrong."""


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PodRecord:
    uid: str
    namespace: str
    name: str
    node: str
    ips: tuple[str, ...]
    host_network: bool
    start: int  # when the pod got its IP
    end: int | None  # when it released it; None while it still holds it
    end_is_estimate: bool  # deleted with no deletion time: end taken from the last status time
    owner: OwnerRef | None
    template_hash: str | None
    branch_eni: bool  # security groups for pods: its own ENI, never SNATed in strict mode

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    uid: str
    name: str
    internal_ips: tuple[str, ...]
    instance_id: str | None
    start: int
    end: int | None


@dataclass(frozen=True, slots=True)
class SnatSetting:
    """What the aws-node DaemonSet says about source NAT (absent EXTERNALSNAT means false)."""

    external_snat: bool | None  # None: the value is not readable (e.g. valueFrom)
    exclude_cidrs: tuple[str, ...]
    pod_sg_mode: str  # POD_SECURITY_GROUP_ENFORCING_MODE: strict (default) or standard

    @property
    def node_snat(self) -> bool | None:
        return None if self.external_snat is None else not self.external_snat


def describe(obj: Mapping[str, Any]) -> str:
    """``Pod default/web-1`` style name for messages, whatever state the object is in."""
    meta = member(obj, "metadata")
    kind = obj.get("kind") or "object"
    name = meta.get("name") or "<no name>"
    namespace = meta.get("namespace")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def member(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A member that should be an object; anything else reads as empty."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ObjectError(f"{describe(obj)}: no metadata.name")
    return meta


def _time(obj: Mapping[str, Any], value: Any, what: str) -> int | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ObjectError(f"{describe(obj)}: {what} is not a time: {reprlib.repr(value)}")
    try:
        return parse_time(value)
    except ValueError:
        raise ObjectError(f"{describe(obj)}: {what} is not a time: {reprlib.repr(value)}") from None


def controller_owner(meta: Mapping[str, Any]) -> OwnerRef | None:
    """The controlling ownerReference (or the only one when none is marked controller)."""
    refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict) and r.get("kind") and r.get("name")]
    for ref in refs:
        if ref.get("controller"):
            return OwnerRef(str(ref["kind"]), str(ref["name"]))
    return OwnerRef(str(refs[0]["kind"]), str(refs[0]["name"])) if len(refs) == 1 else None


def pod_record(obj: Mapping[str, Any], deleted: bool = False) -> PodRecord | None:
    """The pod's IP lease, or None while it has no IP. Raises ObjectError for unusable objects."""
    as_shown, as_deleted = pod_records(obj)
    return as_deleted if deleted else as_shown


def pod_records(obj: Mapping[str, Any]) -> tuple[PodRecord | None, PodRecord | None]:
    """The pod's IP lease as the object shows it, and as it is when a DELETED event carried it.

    Both or neither are None; they differ only in the end of a lease that the object leaves open.
    """
    meta = _metadata(obj)
    spec = member(obj, "spec")
    status = member(obj, "status")
    ips = [str(e["ip"]) for e in status.get("podIPs") or [] if isinstance(e, dict) and isinstance(e.get("ip"), str)]
    ips = [ip for ip in ips if ip]
    if not ips and isinstance(status.get("podIP"), str) and status["podIP"]:
        ips = [status["podIP"]]
    if not ips:
        return None, None
    created = _time(obj, meta.get("creationTimestamp"), "metadata.creationTimestamp")

    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    network_ready = None
    for condition in conditions:
        if condition.get("type") in NETWORK_READY_CONDITIONS and condition.get("status") == "True":
            network_ready = _time(obj, condition.get("lastTransitionTime"), f"condition {condition['type']}")
    start = network_ready or _time(obj, status.get("startTime"), "status.startTime") or created
    if start is None:
        raise ObjectError(f"{describe(obj)}: has an IP but no conditions, startTime or creationTimestamp")

    ends: list[int] = []
    if status.get("phase") in TERMINAL_PHASES:
        for container in status.get("containerStatuses") or []:
            terminated = ((container or {}).get("state") or {}).get("terminated") or {}
            finished = _time(obj, terminated.get("finishedAt"), "containerStatuses[].state.terminated.finishedAt")
            if finished is not None:
                ends.append(finished)
        if ends:
            ends = [max(ends)]
    deletion = _time(obj, meta.get("deletionTimestamp"), "metadata.deletionTimestamp")
    if deletion is not None:
        ends.append(deletion)
    end = max(min(ends), start) if ends else None

    labels = member(meta, "labels")
    annotations = member(meta, "annotations")
    pod_eni = str(annotations.get(POD_ENI_ANNOTATION) or "")
    record = PodRecord(
        uid=str(meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}"),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta["name"]),
        node=str(spec.get("nodeName") or ""),
        ips=tuple(ips),
        host_network=bool(spec.get("hostNetwork")),
        start=start,
        end=end,
        end_is_estimate=False,
        owner=controller_owner(meta),
        template_hash=labels.get("pod-template-hash"),
        branch_eni=pod_eni.strip() not in ("", "[]"),
    )
    if end is not None:
        return record, record
    # Gone (or finished) without a recorded time: the last time its status changed is the best bound.
    # A condition time that does not parse leaves the estimate alone (and the lease as shown usable).
    times = [start]
    for condition in conditions:
        text = condition.get("lastTransitionTime")
        if isinstance(text, str) and text:
            with contextlib.suppress(ValueError):
                times.append(parse_time(text))
    ended = replace(record, end=max(times), end_is_estimate=True)
    return (ended if status.get("phase") in TERMINAL_PHASES else record), ended


def instance_id_of(provider_id: str) -> str | None:
    """``aws:///us-west-2a/i-0abc`` -> ``i-0abc`` (all the cloud-provider-aws forms)."""
    last = provider_id.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("i-") else None


def node_record(obj: Mapping[str, Any], deleted: bool = False) -> NodeRecord:
    meta = _metadata(obj)
    spec = member(obj, "spec")
    status = member(obj, "status")
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
    internal = tuple(str(a["address"]) for a in addresses if a.get("type") == "InternalIP" and a.get("address"))
    created = _time(obj, meta.get("creationTimestamp"), "metadata.creationTimestamp") or 0
    end = _time(obj, meta.get("deletionTimestamp"), "metadata.deletionTimestamp")
    provider = spec.get("providerID")
    return NodeRecord(
        uid=str(meta.get("uid") or meta["name"]),
        name=str(meta["name"]),
        internal_ips=internal,
        instance_id=instance_id_of(provider) if isinstance(provider, str) else None,
        start=created,
        end=end,
    )


def owner_of(obj: Mapping[str, Any]) -> tuple[tuple[str, str, str], OwnerRef | None]:
    """(namespace, kind, name) of a ReplicaSet/Job and its controlling owner."""
    meta = _metadata(obj)
    key = (str(meta.get("namespace") or "default"), str(obj.get("kind")), str(meta["name"]))
    return key, controller_owner(meta)


def _is_ipv4_cidr(text: str) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False).version == 4
    except ValueError:
        return False


def snat_setting(obj: Mapping[str, Any]) -> SnatSetting:
    """Read the aws-node DaemonSet's container ``aws-node`` environment."""
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    container = next((c for c in containers if c.get("name") == "aws-node"), None)
    if container is None:
        raise ObjectError(f"{describe(obj)}: no container named aws-node")
    env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}

    def value(name: str) -> str | None:
        entry = env.get(name)
        if entry is None:
            return None
        if "value" not in entry and "valueFrom" in entry:
            raise LookupError(name)
        return str(entry.get("value") or "")

    try:
        external = value("AWS_VPC_K8S_CNI_EXTERNALSNAT")
        external_snat: bool | None = (external or "false").strip().lower() == "true"
    except LookupError:
        external_snat = None
    try:
        excluded = value("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS") or ""
    except LookupError:
        excluded = ""
    try:
        mode = (value("POD_SECURITY_GROUP_ENFORCING_MODE") or "strict").strip().lower()
    except LookupError:
        mode = "strict"
    # The CNI skips IPv6 and invalid entries (parseCIDRString); so does natflow.
    cidrs = tuple(c for c in (part.strip() for part in excluded.split(",")) if _is_ipv4_cidr(c))
    return SnatSetting(external_snat=external_snat, exclude_cidrs=cidrs, pod_sg_mode=mode)

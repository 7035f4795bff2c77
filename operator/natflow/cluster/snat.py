"""Who translates a node's pod addresses before they reach a NAT Gateway, and where natflow read it.

SNAT is decided per node, from one of four sources (each read by a pure function below):

* **EKS Auto Mode**: a node labelled ``eks.amazonaws.com/compute-type: auto`` names its NodeClass
  (``eks.amazonaws.com/nodeclass``); the NodeClass's ``spec.snatPolicy`` is ``Random`` (the
  default: node SNAT) or ``Disabled`` (pod IPs reach the NAT Gateway).
* **Cilium**: the ``kube-system/cilium-config`` ConfigMap; with IPv4 masquerade on, traffic to
  destinations outside ``ipv4-native-routing-cidr`` leaves as the node's IP. Chained to the VPC CNI
  (``cni-chaining-mode: aws-cni``), the VPC CNI decides instead.
* **Calico CNI**: IPPools (``crd.projectcalico.org/v1``) or the operator's ``Installation``
  pools with ``natOutgoing`` masquerade pod traffic leaving the pool; with
  ``spec.cni.type: AmazonVPC`` Calico only enforces policy and the VPC CNI decides.
* **VPC CNI**: the ``kube-system/aws-node`` DaemonSet's ``AWS_VPC_K8S_CNI_EXTERNALSNAT``;
  ``ENABLE_IPv6=true`` (an IPv6 cluster) always sends IPv4 egress as the node's IPv4 address.

An Auto Mode node is decided by its NodeClass only (Auto Mode runs no other CNI); any other node by
Cilium, else Calico, else aws-node; with none of them the decision is unknown.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from natflow.cluster.objects import AUTO_MODE_LABEL, ObjectError, SnatSetting, describe, member
from natflow.timeutil import parse_time

SOURCE_AWS_NODE = "aws-node"
SOURCE_NODECLASS = "NodeClass"
SOURCE_CILIUM = "Cilium"
SOURCE_CALICO = "Calico"
SOURCE_UNKNOWN = "unknown"

CILIUM_CONFIG = ("kube-system", "cilium-config")
NODECLASS_GROUP = "eks.amazonaws.com"
CALICO_GROUP = "crd.projectcalico.org"
TIGERA_GROUP = "operator.tigera.io"

AWS_NODE_FIX = "kubectl set env daemonset -n kube-system aws-node AWS_VPC_K8S_CNI_EXTERNALSNAT=true"
AWS_NODE_ADDON_FIX = (
    "aws eks update-addon --cluster-name CLUSTER --addon-name vpc-cni --resolve-conflicts PRESERVE "
    """--configuration-values '{"env":{"AWS_VPC_K8S_CNI_EXTERNALSNAT":"true"}}'"""
)
PRIVATE_SUBNET_PRECONDITION = (
    "only when the nodes are in private subnets whose route tables send 0.0.0.0/0 to a NAT Gateway "
    "(without node SNAT, pods in public subnets lose internet access)"
)
CILIUM_FIX = (
    "kubectl -n kube-system patch configmap cilium-config --type merge "
    """-p '{"data":{"enable-ipv4-masquerade":"false"}}' && kubectl -n kube-system rollout restart daemonset/cilium"""
)
CILIUM_OVERLAY_FIX = (
    "run Cilium in ENI mode with native routing (ipam: eni, routing-mode: native) or chained to the VPC CNI "
    "(cni-chaining-mode: aws-cni), so that pods get VPC addresses"
)
CALICO_FIX = (
    "run Calico for network policy only, on the VPC CNI (Installation spec.cni.type: AmazonVPC), "
    "so that pods get VPC addresses"
)
LOOKED_FOR = (
    "the aws-node DaemonSet in kube-system, the cilium-config ConfigMap in kube-system, Calico IPPools "
    "(crd.projectcalico.org) and Installations (operator.tigera.io), and for EKS Auto Mode the node label "
    f"{AUTO_MODE_LABEL}=auto with its NodeClass"
)


COMMAND_PREFIXES = ("kubectl ", "aws ")


def nodeclass_fix(name: str) -> str:
    return f"""kubectl patch nodeclass {name} --type merge -p '{{"spec":{{"snatPolicy":"Disabled"}}}}'"""


@dataclass(frozen=True, slots=True)
class SnatDecision:
    """Whether a node's pod traffic reaches the NAT Gateway as the node's IP, and why natflow thinks so."""

    source: str  # SOURCE_*
    origin: str  # the object read, e.g. "NodeClass batch"
    node_snat: bool | None  # None: unknown
    setting: str  # what the object says, e.g. "snatPolicy=Random"
    fix: str | None = None  # the command (or change) that makes pod IPs reach the NAT Gateway; None: none
    fix_note: str = ""  # alternatives and preconditions of the fix
    note: str = ""  # what else a person must know (IPv6, overlay addresses, ...)
    kept_cidrs: tuple[str, ...] = ()  # destinations that pods reach with their own IP despite node SNAT
    branch_eni_kept: bool = False  # security-group (branch ENI) pods keep their own IP

    def describe(self) -> str:
        return f"{self.origin} ({self.setting})" if self.setting else self.origin

    def fix_text(self) -> str:
        """The fix as a sentence: commands in backticks, then alternatives and preconditions."""
        if self.fix is None:
            return ""
        fix = f"`{self.fix}`" if self.fix.startswith(COMMAND_PREFIXES) else self.fix
        return f"{fix} {self.fix_note}" if self.fix_note else fix


# -- the sources, one pure function each ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeClassSnat:
    name: str
    policy: str  # Random, Disabled, or whatever else the object says (then unknown)


def nodeclass_snat(obj: Mapping[str, Any]) -> NodeClassSnat:
    """A NodeClass's SNAT policy; absent means Random (the documented default)."""
    name = member(obj, "metadata").get("name")
    if not isinstance(name, str) or not name:
        raise ObjectError(f"{describe(obj)}: no metadata.name")
    policy = member(obj, "spec").get("snatPolicy")
    if policy is None:
        policy = "Random"
    if not isinstance(policy, str):
        raise ObjectError(f"{describe(obj)}: spec.snatPolicy is not a string: {policy!r}")
    return NodeClassSnat(name, policy)


@dataclass(frozen=True, slots=True)
class CiliumConfig:
    masquerade: bool  # enable-ipv4-masquerade
    bpf_masquerade: bool
    native_routing_cidr: str | None
    ipam: str
    routing_mode: str
    ip_masq_agent: bool
    chained_to_aws_cni: bool


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key)
    if value is None:
        return default
    return str(value).strip().lower() == "true"


def cilium_config(obj: Mapping[str, Any]) -> CiliumConfig:
    """The keys of the cilium-config ConfigMap that decide masquerading. An absent
    enable-ipv4-masquerade is the agent's flag default, true."""
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        raise ObjectError(f"{describe(obj)}: data is not a map")
    cidr = str(data.get("ipv4-native-routing-cidr") or "").strip() or None
    if cidr is not None:
        try:
            cidr = str(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ObjectError(f"{describe(obj)}: ipv4-native-routing-cidr is not a CIDR: {cidr!r}") from None
    ipam = str(data.get("ipam") or "cluster-pool").strip()
    routing = str(data.get("routing-mode") or ("native" if ipam == "eni" else "tunnel")).strip()
    return CiliumConfig(
        masquerade=_flag(data, "enable-ipv4-masquerade", True),
        bpf_masquerade=_flag(data, "enable-bpf-masquerade", False),
        native_routing_cidr=cidr,
        ipam=ipam,
        routing_mode=routing,
        ip_masq_agent=_flag(data, "enable-ip-masq-agent", False),
        chained_to_aws_cni=str(data.get("cni-chaining-mode") or "").strip() == "aws-cni",
    )


@dataclass(frozen=True, slots=True, order=True)
class CalicoPool:
    origin: str  # "IPPool NAME" or "Installation NAME"
    cidr: str
    nat_outgoing: bool


def calico_pools(obj: Mapping[str, Any]) -> tuple[CalicoPool, ...]:
    """The enabled IPv4 pools of an IPPool or an operator Installation (none for a policy-only
    Installation on the VPC CNI)."""
    kind = obj.get("kind")
    name = member(obj, "metadata").get("name")
    spec = member(obj, "spec")
    if kind == "IPPool":
        if spec.get("disabled") is True:
            return ()
        entries: list[tuple[Mapping[str, Any], bool]] = [(spec, spec.get("natOutgoing") is True)]
    elif kind == "Installation":
        if str(member(spec, "cni").get("type") or "Calico") != "Calico":
            return ()
        pools = member(spec, "calicoNetwork").get("ipPools") or []
        if not isinstance(pools, list):
            raise ObjectError(f"{describe(obj)}: spec.calicoNetwork.ipPools is not a list")
        entries = [
            (pool, str(pool.get("natOutgoing") or "Enabled") == "Enabled") for pool in pools if isinstance(pool, dict)
        ]
    else:
        raise ObjectError(f"{describe(obj)}: not a Calico IPPool or Installation")
    found = []
    for pool, nat_outgoing in entries:
        cidr = pool.get("cidr")
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise ObjectError(f"{describe(obj)}: pool cidr is not a CIDR: {cidr!r}") from None
        if network.version == 4:
            found.append(CalicoPool(f"{kind} {name}", str(network), nat_outgoing))
    return tuple(found)


def source_kind(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(SNAT source kind, name) of an object natflow reads for SNAT besides aws-node, else None."""
    kind = obj.get("kind")
    group = str(obj.get("apiVersion") or "").split("/")[0]
    meta = member(obj, "metadata")
    name = str(meta.get("name") or "")
    if kind == "NodeClass" and group == NODECLASS_GROUP:
        return SOURCE_NODECLASS, name
    if kind == "ConfigMap" and (meta.get("namespace"), name) == CILIUM_CONFIG:
        return SOURCE_CILIUM, name
    if (kind, group) in (("IPPool", CALICO_GROUP), ("Installation", TIGERA_GROUP)):
        return SOURCE_CALICO, f"{kind}/{name}"
    return None


def changed_at(obj: Mapping[str, Any]) -> int | None:
    """When an object's spec (a ConfigMap's data) was last changed: the latest managedFields time
    of a manager that owns part of it, else its creation time; None when neither is readable."""
    meta = member(obj, "metadata")
    owned = "f:data" if obj.get("kind") == "ConfigMap" else "f:spec"
    times = []
    entries = meta.get("managedFields")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("time"), str):
            continue
        if owned in member(entry, "fieldsV1"):
            try:
                times.append(parse_time(entry["time"]))
            except ValueError:
                continue
    if times:
        return max(times)
    created = meta.get("creationTimestamp")
    try:
        return parse_time(created) if isinstance(created, str) else None
    except ValueError:
        return None


def essence(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What natflow keeps of a SNAT source object: its identity and its spec or data."""
    meta = member(obj, "metadata")
    kept: dict[str, Any] = {key: obj[key] for key in ("apiVersion", "kind", "spec", "data") if key in obj}
    kept["metadata"] = {key: meta[key] for key in ("name", "namespace") if key in meta}
    return kept


# -- the decision ---------------------------------------------------------------------------------
def _aws_node(setting: SnatSetting) -> SnatDecision:
    origin = "DaemonSet kube-system/aws-node"
    if setting.ipv6:
        return SnatDecision(
            SOURCE_AWS_NODE, origin, True, "ENABLE_IPv6=true",
            note="an IPv6 cluster: pods' IPv4 egress always leaves as the node's IPv4 address, whatever "
            "AWS_VPC_K8S_CNI_EXTERNALSNAT says; no setting shows pod IPv4 addresses to the NAT Gateway "
            "(pods' IPv6 egress keeps their own addresses)",
        )  # fmt: skip
    if setting.external_snat is None:
        return SnatDecision(SOURCE_AWS_NODE, origin, None, "AWS_VPC_K8S_CNI_EXTERNALSNAT from valueFrom (unreadable)")
    if setting.external_snat:
        return SnatDecision(SOURCE_AWS_NODE, origin, False, "AWS_VPC_K8S_CNI_EXTERNALSNAT=true")
    return SnatDecision(
        SOURCE_AWS_NODE, origin, True, "AWS_VPC_K8S_CNI_EXTERNALSNAT=false",
        fix=AWS_NODE_FIX, fix_note=f"or, for the EKS add-on, `{AWS_NODE_ADDON_FIX}`; {PRIVATE_SUBNET_PRECONDITION}",
        kept_cidrs=setting.exclude_cidrs, branch_eni_kept=setting.pod_sg_mode == "strict",
    )  # fmt: skip


def _nodeclass(name: str, found: NodeClassSnat | None) -> SnatDecision:
    origin = f"NodeClass {name}"
    if found is None:
        return SnatDecision(SOURCE_UNKNOWN, f"{origin} (not found)", None, "")
    setting = f"snatPolicy={found.policy}"
    if found.policy == "Disabled":
        return SnatDecision(SOURCE_NODECLASS, origin, False, setting)
    if found.policy == "Random":
        return SnatDecision(SOURCE_NODECLASS, origin, True, setting, fix=nodeclass_fix(name))
    return SnatDecision(SOURCE_NODECLASS, origin, None, f"{setting} (not Random or Disabled)")


def _cilium(config: CiliumConfig) -> SnatDecision:
    origin = "ConfigMap kube-system/cilium-config"
    routable = config.ipam == "eni" and config.routing_mode == "native"
    overlay = "" if routable else (
        f"pod IPs are not VPC addresses (ipam={config.ipam}, routing-mode={config.routing_mode}): only the "
        "node's IP can reach the NAT Gateway"
    )  # fmt: skip
    if not config.masquerade:
        return SnatDecision(SOURCE_CILIUM, origin, False, "enable-ipv4-masquerade=false", note=overlay)
    notes = [overlay] if overlay else []
    if config.ip_masq_agent:
        notes.append("enable-ip-masq-agent=true: the ip-masq-agent's nonMasqueradeCIDRs are not read")
    kept = (config.native_routing_cidr,) if config.native_routing_cidr else ()
    mode = "BPF" if config.bpf_masquerade else "iptables"
    return SnatDecision(
        SOURCE_CILIUM, origin, True, f"enable-ipv4-masquerade=true ({mode})",
        fix=CILIUM_FIX if routable else CILIUM_OVERLAY_FIX,
        note="; ".join(notes), kept_cidrs=kept,
    )  # fmt: skip


def _calico(pools: Sequence[CalicoPool]) -> SnatDecision:
    masquerading = [pool for pool in pools if pool.nat_outgoing]
    overlay = (
        "Calico's pod IPs (" + ", ".join(sorted({p.cidr for p in pools})) + ") are overlay addresses, not VPC "
        "addresses: the NAT Gateway can only ever see node IPs"
    )
    if not masquerading:
        origin = ", ".join(sorted({p.origin for p in pools}))
        return SnatDecision(SOURCE_CALICO, origin, False, "natOutgoing=false", note=overlay)
    origin = ", ".join(sorted({p.origin for p in masquerading}))
    return SnatDecision(SOURCE_CALICO, origin, True, "natOutgoing=true", fix=CALICO_FIX, note=overlay)


@dataclass(frozen=True, slots=True)
class SnatInputs:
    """Every source's configuration at one time (None: not seen)."""

    aws_node: SnatSetting | None
    nodeclasses: Mapping[str, NodeClassSnat | None]
    cilium: CiliumConfig | None
    calico: tuple[CalicoPool, ...]


def decide(nodeclass: str | None, inputs: SnatInputs) -> SnatDecision:
    """The SNAT decision for a node (`nodeclass`: the NodeClass of an Auto Mode node, else None)."""
    if nodeclass is not None:
        return _nodeclass(nodeclass, inputs.nodeclasses.get(nodeclass))
    if inputs.cilium is not None and not inputs.cilium.chained_to_aws_cni:
        return _cilium(inputs.cilium)
    if inputs.calico:
        return _calico(inputs.calico)
    if inputs.aws_node is not None:
        return _aws_node(inputs.aws_node)
    return SnatDecision(SOURCE_UNKNOWN, "no SNAT source", None, "", note=f"looked for {LOOKED_FOR}")

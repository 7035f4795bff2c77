"""Who translates pod addresses, per node and per time: the four sources, their precedence, their
history (watch events, the store, a dump's versions) and the address-holder question of `trace`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from natflow.cluster.dump import load_cluster
from natflow.cluster.objects import ObjectError, PodRecord, node_record, snat_setting
from natflow.cluster.snat import (
    SOURCE_AWS_NODE,
    SOURCE_CALICO,
    SOURCE_CILIUM,
    SOURCE_NODECLASS,
    SOURCE_UNKNOWN,
    SnatInputs,
    calico_pools,
    changed_at,
    cilium_config,
    decide,
    nodeclass_snat,
)
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.store import Store
from natflow.timeutil import parse_time


def aws_node(**env: str) -> dict[str, Any]:
    variables = [{"name": name, "value": value} for name, value in env.items()]
    return {"kind": "DaemonSet", "metadata": {"name": "aws-node", "namespace": "kube-system"},
            "spec": {"template": {"spec": {"containers": [{"name": "aws-node", "env": variables}]}}}}  # fmt: skip


def nodeclass(name: str, policy: str | None = None, **meta: Any) -> dict[str, Any]:
    spec = {"role": "AmazonEKSAutoNodeRole"} | ({"snatPolicy": policy} if policy else {})
    return {"apiVersion": "eks.amazonaws.com/v1", "kind": "NodeClass", "metadata": {"name": name, **meta}, "spec": spec}


def cilium(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"},
            "data": data}  # fmt: skip


def node(name: str, ip: str, **labels: str) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels,
                                         "creationTimestamp": "2026-11-20T08:00:00Z"},
            "spec": {"providerID": f"aws:///us-east-1a/i-{name}"},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}  # fmt: skip


AUTO = {"eks.amazonaws.com/compute-type": "auto"}
NOTHING = SnatInputs(None, {}, None, ())


def test_aws_node_decisions_and_the_ipv6_cluster() -> None:
    def decided(**env: str) -> Any:
        return decide(None, SnatInputs(snat_setting(aws_node(**env)), {}, None, ()))

    on = decided(AWS_VPC_K8S_CNI_EXTERNALSNAT="false", AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS="203.0.113.0/24")
    assert (on.source, on.node_snat, on.kept_cidrs, on.branch_eni_kept) == (
        SOURCE_AWS_NODE,
        True,
        ("203.0.113.0/24",),
        True,
    )
    assert on.fix is not None and "AWS_VPC_K8S_CNI_EXTERNALSNAT=true" in on.fix
    assert decided(AWS_VPC_K8S_CNI_EXTERNALSNAT="true").node_snat is False
    ipv6 = decided(AWS_VPC_K8S_CNI_EXTERNALSNAT="true", ENABLE_IPv6="true")
    assert ipv6.node_snat is True and ipv6.fix is None and "IPv6 cluster" in ipv6.note
    assert "EXTERNALSNAT" in ipv6.note and ipv6.setting == "ENABLE_IPv6=true"


def test_nodeclass_policies() -> None:
    assert nodeclass_snat(nodeclass("general")).policy == "Random"  # the documented default
    inputs = SnatInputs(snat_setting(aws_node(AWS_VPC_K8S_CNI_EXTERNALSNAT="true")), {
        "general": nodeclass_snat(nodeclass("general", "Random")), "batch": nodeclass_snat(nodeclass("batch", "Disabled")),
        "odd": nodeclass_snat(nodeclass("odd", "Sometimes")),
    }, None, ())  # fmt: skip
    random = decide("general", inputs)
    assert (random.source, random.origin, random.node_snat) == (SOURCE_NODECLASS, "NodeClass general", True)
    assert random.fix == """kubectl patch nodeclass general --type merge -p '{"spec":{"snatPolicy":"Disabled"}}'"""
    assert decide("batch", inputs).node_snat is False
    assert decide("odd", inputs).node_snat is None
    missing = decide("gpu", inputs)  # the node names a NodeClass natflow has not seen: not aws-node's rule
    assert (missing.source, missing.origin, missing.node_snat) == (SOURCE_UNKNOWN, "NodeClass gpu (not found)", None)
    assert decide(None, inputs).source == SOURCE_AWS_NODE  # a managed node group next to Auto Mode nodes
    with pytest.raises(ObjectError):
        nodeclass_snat(nodeclass("bad") | {"spec": {"snatPolicy": 3}})


def test_node_labels_name_the_nodeclass() -> None:
    assert node_record(node("n1", "10.0.1.1")).nodeclass is None
    assert node_record(node("n2", "10.0.1.2", **AUTO)).nodeclass == "default"
    labelled = node_record(node("n3", "10.0.1.3", **AUTO, **{"eks.amazonaws.com/nodeclass": "batch"}))
    assert labelled.nodeclass == "batch"


def test_cilium_masquerade_and_its_exceptions() -> None:
    eni = {"ipam": "eni", "routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/16"}
    on = decide(None, SnatInputs(None, {}, cilium_config(cilium(**eni, **{"enable-ipv4-masquerade": "true"})), ()))
    assert (on.source, on.node_snat, on.kept_cidrs) == (SOURCE_CILIUM, True, ("10.0.0.0/16",))
    assert on.fix is not None and "enable-ipv4-masquerade" in on.fix and not on.note
    off = decide(None, SnatInputs(None, {}, cilium_config(cilium(**eni, **{"enable-ipv4-masquerade": "false"})), ()))
    assert (off.source, off.node_snat) == (SOURCE_CILIUM, False)
    overlay = decide(None, SnatInputs(None, {}, cilium_config(cilium(ipam="cluster-pool")), ()))
    assert overlay.node_snat is True and "not VPC addresses" in overlay.note  # absent key: masquerade on
    chained = cilium_config(cilium(**{"cni-chaining-mode": "aws-cni"}))
    aws = snat_setting(aws_node(AWS_VPC_K8S_CNI_EXTERNALSNAT="true"))
    assert decide(None, SnatInputs(aws, {}, chained, ())).source == SOURCE_AWS_NODE
    assert decide("batch", SnatInputs(aws, {}, chained, ())).source == SOURCE_UNKNOWN  # Auto Mode runs no Cilium
    with pytest.raises(ObjectError):
        cilium_config(cilium(**{"ipv4-native-routing-cidr": "ten"}))


def test_calico_pools_from_ippools_and_installations() -> None:
    pool = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": "192.168.0.0/16", "natOutgoing": True, "vxlanMode": "Always"}}  # fmt: skip
    decision = decide(None, SnatInputs(None, {}, None, calico_pools(pool)))
    assert (decision.source, decision.node_snat, decision.origin) == (SOURCE_CALICO, True, "IPPool default-ipv4-ippool")
    assert "not VPC addresses" in decision.note and decision.fix is not None
    installation = {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
                    "spec": {"calicoNetwork": {"ipPools": [{"cidr": "172.16.0.0/16"},
                                                           {"cidr": "fd00::/64", "natOutgoing": "Enabled"}]}}}  # fmt: skip
    (found,) = calico_pools(installation)  # natOutgoing defaults to Enabled; the IPv6 pool is not NAT'd IPv4
    assert (found.cidr, found.nat_outgoing) == ("172.16.0.0/16", True)
    policy_only = installation | {"spec": {"cni": {"type": "AmazonVPC"}}}
    assert calico_pools(policy_only) == ()
    assert decide(None, NOTHING).source == SOURCE_UNKNOWN and "aws-node" in decide(None, NOTHING).note


def test_a_policy_change_splits_a_node_timeline_and_survives_the_store(tmp_path: Path) -> None:
    state = ClusterState()
    state.set_snat(0, aws_node(AWS_VPC_K8S_CNI_EXTERNALSNAT="false"))
    state.put_node(node_record(node("auto-1", "10.0.1.1", **AUTO, **{"eks.amazonaws.com/nodeclass": "batch"})))
    state.put_node(node_record(node("mng-1", "10.0.1.2")))
    assert state.observe_snat_source(1000, "NodeClass", "batch", nodeclass("batch", "Random")) == 0
    assert state.observe_snat_source(1500, "NodeClass", "batch", nodeclass("batch", "Random")) is None
    assert state.observe_snat_source(2000, "NodeClass", "batch", nodeclass("batch", "Disabled")) == 2000
    assert [(since, d.node_snat) for since, d in state.snat_timeline("auto-1")][-2:] == [(0, True), (2000, False)]
    assert state.snat_at("auto-1", 1999).node_snat is True and state.snat_at("auto-1", 2000).node_snat is False
    assert state.snat_at("mng-1", 2500).source == SOURCE_AWS_NODE  # the managed node group keeps aws-node's rule

    store = Store(str(tmp_path / "state.sqlite"))
    store.save_snat(0, state.snat.at(0))
    for since, value in [(0, "Random"), (2000, "Disabled")]:
        store.save_snat_source("NodeClass", "batch", since, nodeclass("batch", value))
    for name in ("auto-1", "mng-1"):
        store.save_node(state.nodes[name])
    reloaded = ClusterState()
    store.load(reloaded)
    store.close()
    assert reloaded.nodes["auto-1"].nodeclass == "batch"
    assert reloaded.snat_timeline("auto-1") == state.snat_timeline("auto-1")


def test_holder_at_says_who_held_an_address_and_whether_its_node_translates() -> None:
    t0 = parse_time("2026-11-20T09:00:00Z")  # the node exists from 08:00
    state = ClusterState()
    state.put_node(node_record(node("auto-1", "10.0.1.1", **AUTO, **{"eks.amazonaws.com/nodeclass": "batch"})))
    state.observe_snat_source(t0, "NodeClass", "batch", nodeclass("batch", "Random"))
    state.observe_snat_source(t0 + 2000, "NodeClass", "batch", nodeclass("batch", "Disabled"))
    pod = PodRecord("u1", "shop", "web-1", "auto-1", ("10.0.1.9",), False, t0 + 500, t0 + 3000, False, None, None,
                    False)  # fmt: skip
    state.put_pod(pod)
    held = state.holder_at("10.0.1.9", t0 + 1000)
    assert (held.kind, held.pod, held.node) == ("pod", pod, "auto-1")
    assert held.snat is not None and held.snat.node_snat is True  # its bytes reached the NAT as 10.0.1.1
    later = state.holder_at("10.0.1.9", t0 + 2500)
    assert later.snat is not None and later.snat.node_snat is False
    node_ip = state.holder_at("10.0.1.1", t0 + 1000)
    assert (node_ip.kind, node_ip.node, node_ip.node_ip) == ("node", "auto-1", True)
    assert state.holder_at("10.0.1.9", t0 + 4000).kind == "nobody"


def test_a_dump_with_nodeclass_versions_gives_their_history(tmp_path: Path) -> None:
    """`kubectl get nodeclasses -o json --watch --output-watch-events`: each later version holds from
    its managedFields time (when its spec last changed)."""
    changed = "2026-11-20T10:30:00Z"
    first = nodeclass("general", "Random", uid="nc-1", resourceVersion="100")
    second = nodeclass("general", "Disabled", uid="nc-1", resourceVersion="180", managedFields=[
        {"manager": "kubectl-patch", "operation": "Update", "time": changed, "fieldsV1": {"f:spec": {"f:snatPolicy": {}}}},
        {"manager": "eks", "operation": "Update", "time": "2026-11-20T11:00:00Z", "subresource": "status",
         "fieldsV1": {"f:status": {}}},
    ])  # fmt: skip
    assert changed_at(second) == parse_time(changed)
    objects = [node("auto-1", "10.0.1.1", **AUTO, **{"eks.amazonaws.com/nodeclass": "general"})]
    (tmp_path / "nodes.json").write_text(json.dumps({"kind": "List", "items": objects}))
    events = [{"type": "ADDED", "object": first}, {"type": "MODIFIED", "object": second}]
    (tmp_path / "nodeclasses-watch.json").write_text("\n".join(json.dumps(e) for e in events))
    diagnostics = Diagnostics()
    state, stats = load_cluster([str(tmp_path)], diagnostics)
    assert not diagnostics.items and stats.objects_used == 3
    assert state.snat_at("auto-1", parse_time(changed) - 1).node_snat is True
    assert state.snat_at("auto-1", parse_time(changed)).node_snat is False


@pytest.mark.parametrize(
    "damaged",
    [
        nodeclass("bad-policy") | {"spec": {"snatPolicy": ["Random"]}},
        {"apiVersion": "eks.amazonaws.com/v1", "kind": "NodeClass", "metadata": {"name": 7}, "spec": []},
        cilium() | {"data": ["enable-ipv4-masquerade"]},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p"},
         "spec": {"cidr": "not-a-cidr", "natOutgoing": True}},
        {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
         "spec": {"calicoNetwork": {"ipPools": "192.168.0.0/16"}}},
        nodeclass("general", "Disabled", uid="nc-1", resourceVersion="200", managedFields=7),
        nodeclass("general", "Disabled", uid="nc-1", resourceVersion="201",
                  managedFields=[{"time": 5}, {"time": "2026-11-20T10:30:00Z", "fieldsV1": 9}, "x"]),
    ],
    ids=["policy", "meta", "cilium-data", "cidr", "installation-pools", "managed-fields", "managed-entries"],
)  # fmt: skip
def test_damaged_snat_sources_in_a_dump_are_skipped_with_a_message(tmp_path: Path, damaged: dict[str, Any]) -> None:
    good = nodeclass("general", "Random", uid="nc-1", resourceVersion="100")
    objects = [node("auto-1", "10.0.1.1", **AUTO, **{"eks.amazonaws.com/nodeclass": "general"}), good, damaged]
    (tmp_path / "dump.json").write_text(json.dumps({"kind": "List", "items": objects}))
    diagnostics = Diagnostics()
    state, stats = load_cluster([str(tmp_path)], diagnostics)
    decision = state.snat_at("auto-1", parse_time("2026-11-20T12:00:00Z"))
    assert (decision.origin, decision.setting) == ("NodeClass general", "snatPolicy=Random")  # the good one survives
    assert stats.objects_skipped == 1 and [d.reason for d in diagnostics.items] == ["ClusterObjectSkipped"]
    assert damaged["kind"] in diagnostics.items[0].message  # the message names the object


def test_trace_follows_a_pod_behind_its_nodeclass_snat() -> None:
    """natflow trace asks the pod's own node: a Random NodeClass hides the pod behind the node's IP."""
    from natflow.trace.subject import pod_subject

    t0 = parse_time("2026-11-20T09:00:00Z")
    state = ClusterState()
    state.put_node(node_record(node("auto-1", "10.0.1.1", **AUTO, **{"eks.amazonaws.com/nodeclass": "general"})))
    state.put_node(node_record(node("auto-2", "10.0.2.1", **AUTO, **{"eks.amazonaws.com/nodeclass": "batch"})))
    state.observe_snat_source(t0, "NodeClass", "general", nodeclass("general", "Random"))
    state.observe_snat_source(t0, "NodeClass", "batch", nodeclass("batch", "Disabled"))
    for name, node_name, ip in (("web-1", "auto-1", "10.0.1.9"), ("job-1", "auto-2", "10.0.2.9")):
        state.put_pod(PodRecord(f"u-{name}", "shop", name, node_name, (ip,), False, t0, t0 + 3000, False, None, None,
                                False))  # fmt: skip
    hidden = pod_subject(state, "shop/web-1", (t0, t0 + 3600))
    assert hidden.addresses == ["10.0.1.9", "10.0.1.1"]
    [(_, message)] = [note for note in hidden.notes if note[0] == "NodeSnatHidesPod"]
    assert "NodeClass general" in message and "snatPolicy=Random" in message
    visible = pod_subject(state, "shop/job-1", (t0, t0 + 3600))
    assert visible.addresses == ["10.0.2.9"] and not visible.notes

"""The join: pod / hostNetwork / nodeSNAT / node / unattributed rules, exact splits, totals."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from natflow.attribution.engine import Attributor, allocate
from natflow.attribution.report import RunContext, build_document, derive_warnings
from natflow.aws.inventory import AddressOwner
from natflow.cluster.state import ClusterState, InterfaceAddresses
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.net import CidrSet
from natflow.timeutil import parse_time

NAT_ENI, NAT_IP = "eni-nat", "10.0.0.220"
T0 = parse_time("2026-11-21T10:20:00Z")


def pod(
    name: str, ip: str, start: str, *, host: bool = False, end: str | None = None, node: str = "n1"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "uid": name, "creationTimestamp": start}
    status: dict[str, Any] = {"podIP": ip, "startTime": start, "phase": "Running"}
    if end:
        status["phase"] = "Succeeded"
        status["containerStatuses"] = [{"name": "c", "state": {"terminated": {"finishedAt": end}}}]
    return {"kind": "Pod", "metadata": meta, "spec": {"nodeName": node, "hostNetwork": host}, "status": status}


def cluster(snat: str | None, exclude: str = "") -> ClusterState:
    state = ClusterState()
    state.apply(
        {
            "kind": "Node",
            "metadata": {"name": "n1", "uid": "n1", "creationTimestamp": "2026-11-21T00:00:00Z"},
            "spec": {"providerID": "aws:///us-east-1a/i-1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"}]},
        }
    )
    state.set_interfaces({"i-1": [InterfaceAddresses("eni-a", True, "10.0.0.10", ("10.0.0.11",), ("10.0.2.16/28",))]})
    state.apply(pod("api", "10.0.1.5", "2026-11-21T09:00:00Z", end="2026-11-21T10:20:30Z"))
    state.apply(pod("worker", "10.0.1.5", "2026-11-21T10:20:30Z"))
    state.apply(pod("agent", "10.0.0.10", "2026-11-21T09:00:00Z", host=True))
    state.apply(pod("app", "10.0.2.20", "2026-11-21T09:00:00Z"))
    if snat is not None:
        env = [{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "value": snat}]
        if exclude:
            env.append({"name": "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "value": exclude})
        state.set_snat(
            0,
            {
                "kind": "DaemonSet",
                "metadata": {"name": "aws-node", "namespace": "kube-system"},
                "spec": {"template": {"spec": {"containers": [{"name": "aws-node", "env": env}]}}},
            },
        )
    else:
        state.set_snat(0, None)
    return state


def reduce(records: list[tuple[str, str, str | None, int, int, int]]) -> Reduction:
    """records: (src, dst, peer, bytes, start, end) on the NAT ENI."""
    reduction = Reduction(NatTopology({NAT_ENI: "nat-1"}, {NAT_IP: NAT_ENI}, CidrSet(["10.0.0.0/16"])))
    for src, dst, peer, nbytes, start, end in records:
        pkt_src, pkt_dst = (peer, None) if dst != NAT_IP else (None, peer)
        reduction.add(NAT_ENI, src, dst, pkt_src, pkt_dst, None, None, 1, nbytes, start, end, "ACCEPT")
    return reduction


def document(state: ClusterState, reduction: Reduction) -> dict[str, Any]:
    owners = {"10.0.9.9": AddressOwner("eni-lambda", "AWS Lambda VPC ENI-fn", None, "lambda")}
    result = Attributor(state, {NAT_ENI: "nat-1"}, ["nat-1"], owners, "workload", 0.045).attribute(reduction)
    diagnostics = Diagnostics()
    derive_warnings(result, reduction, state, diagnostics)
    return build_document(result, reduction, (None, None), diagnostics, RunContext())


def rows(doc: dict[str, Any]) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {
        (r["workloadKind"], r["workloadName"], r["source"]): (r["bytesOut"], r["bytesIn"]) for r in doc["attributions"]
    }


def assert_totals_add_up(doc: dict[str, Any]) -> None:
    for gateway in doc["natGateways"]:
        mine = [r for r in doc["attributions"] if r["natGatewayId"] == gateway["natGatewayId"]]
        assert sum(r["bytesOut"] for r in mine) == gateway["bytesOut"]
        assert sum(r["bytesIn"] for r in mine) == gateway["bytesIn"]
        assert sum(r["packetsOut"] for r in mine) == gateway["packetsOut"]
        unattributed = sum(r["bytesOut"] + r["bytesIn"] for r in mine if r["source"] == "unattributed")
        assert gateway["attributedBytes"] == gateway["bytesOut"] + gateway["bytesIn"] - unattributed


def test_snat_on_node_ip_bytes_are_node_snat_and_warned() -> None:
    reduction = reduce(
        [
            ("10.0.0.10", NAT_IP, "52.1.1.1", 3000, T0, T0 + 59),
            (NAT_IP, "10.0.0.10", "52.1.1.1", 9000, T0, T0 + 59),
            ("10.0.2.20", NAT_IP, "52.1.1.1", 100, T0, T0 + 59),
        ]
    )
    doc = document(cluster("false"), reduction)
    assert rows(doc) == {("Node", "n1", "nodeSNAT"): (3000, 9000), ("Pod", "app", "pod"): (100, 0)}
    node_row = next(r for r in doc["attributions"] if r["source"] == "nodeSNAT")
    assert "shop/agent" in node_row["pods"] and "shop/app" in node_row["pods"]
    (warning,) = [w for w in doc["warnings"] if w["reason"] == "NodeSNATHidesPodIPs"]
    assert warning["bytes"] == 12000 and warning["nodes"] == [{"node": "n1", "bytes": 12000}]
    assert "kubectl set env daemonset -n kube-system aws-node AWS_VPC_K8S_CNI_EXTERNALSNAT=true" in warning["message"]
    assert "shop/app" in warning["pods"] and "shop/agent" not in warning["pods"]
    assert_totals_add_up(doc)


def test_snat_off_node_ip_is_host_network_and_excluded_cidrs_too() -> None:
    reduction = reduce([("10.0.0.10", NAT_IP, "52.1.1.1", 3000, T0, T0 + 59)])
    assert rows(document(cluster("true"), reduction)) == {("Node", "n1", "hostNetwork"): (3000, 0)}
    excluded = document(cluster("false", exclude="52.1.0.0/16"), reduction)
    assert rows(excluded) == {("Node", "n1", "hostNetwork"): (3000, 0)}
    assert not [w for w in excluded["warnings"] if w["reason"] == "NodeSNATHidesPodIPs"]


def test_unknown_cni_gives_node_rows_and_a_warning() -> None:
    doc = document(cluster(None), reduce([("10.0.0.10", NAT_IP, None, 10, T0, T0)]))
    assert rows(doc) == {("Node", "n1", "node"): (10, 0)}
    assert any(w["reason"] == "CNIUnknown" for w in doc["warnings"])


def test_ip_reuse_inside_one_row_is_split_by_overlap_exactly() -> None:
    # api held 10.0.1.5 until T0+30, worker from T0+30: a row spanning T0..T0+59 is split 30/30.
    doc = document(cluster("true"), reduce([("10.0.1.5", NAT_IP, "52.1.1.1", 1001, T0, T0 + 59)]))
    assert rows(doc) == {("Pod", "api", "pod"): (501, 0), ("Pod", "worker", "pod"): (500, 0)}
    assert any(w["reason"] == "RecordsSplitAcrossHolders" for w in doc["warnings"])
    assert doc["stats"]["splitRows"] == 1
    assert_totals_add_up(doc)


def test_secondary_addresses_go_to_the_node_and_strangers_are_unattributed() -> None:
    doc = document(
        cluster("true"),
        reduce(
            [
                ("10.0.0.11", NAT_IP, None, 10, T0, T0),
                ("10.0.2.30", NAT_IP, None, 20, T0, T0),
                ("10.0.9.9", NAT_IP, None, 30, T0, T0),
            ]
        ),
    )
    assert rows(doc) == {
        ("Node", "n1", "node"): (30, 0),
        ("IP", "10.0.9.9", "unattributed"): (30, 0),
    }
    stranger = next(r for r in doc["attributions"] if r["source"] == "unattributed")
    assert stranger["namespace"] == "" and stranger["addressOwner"]["interfaceType"] == "lambda"
    (gateway,) = doc["natGateways"]
    assert gateway["coverage"] == 0.5
    assert_totals_add_up(doc)


def test_top_destinations_and_cost() -> None:
    doc = document(
        cluster("true"),
        reduce(
            [
                ("10.0.2.20", NAT_IP, "52.1.1.1", 1 << 30, T0, T0),
                ("10.0.2.20", NAT_IP, "52.2.2.2", 5, T0, T0),
            ]
        ),
    )
    (row,) = doc["attributions"]
    assert row["topDestinations"] == [
        {"destination": "52.1.1.1", "bytes": 1 << 30},
        {"destination": "52.2.2.2", "bytes": 5},
    ]
    assert row["estimatedCostUSD"] == round((1 + 5 / (1 << 30)) * 0.045, 6)


def test_byte_counts_beyond_64_bits_stay_exact() -> None:
    """Sums that would overflow int64 are added as Python integers, split rows too."""
    huge = (1 << 63) + 7
    doc = document(
        cluster("true"),
        reduce(
            [
                ("10.0.2.20", NAT_IP, "52.1.1.1", huge, T0, T0),
                ("10.0.2.20", NAT_IP, "52.2.2.2", huge, T0 + 60, T0 + 60),
                ("10.0.1.5", NAT_IP, "52.1.1.1", huge, T0, T0 + 59),
            ]
        ),
    )
    assert rows(doc) == {
        ("Pod", "app", "pod"): (2 * huge, 0),
        ("Pod", "api", "pod"): (huge // 2 + 1, 0),
        ("Pod", "worker", "pod"): (huge // 2, 0),
    }
    app = next(r for r in doc["attributions"] if r["workloadName"] == "app")
    assert app["topDestinations"] == [
        {"destination": "52.1.1.1", "bytes": huge},
        {"destination": "52.2.2.2", "bytes": huge},
    ]
    assert doc["stats"]["splitBytes"] == huge
    assert_totals_add_up(doc)


def test_no_rows_give_gateways_with_nothing() -> None:
    doc = document(cluster("true"), reduce([]))
    assert doc["attributions"] == []
    (gateway,) = doc["natGateways"]
    assert gateway["bytesOut"] == gateway["bytesIn"] == gateway["attributedBytes"] == 0


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_allocate_always_sums_to_the_total(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total and all(p >= 0 for p in parts)

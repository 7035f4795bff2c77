"""End to end: ``natflow attribute`` on generated scenarios must give the generator's known answers.

The generator (tests/scenario/generator.py) decides who sent every byte and computes the answer
without natflow's code; these tests run the real command line on what it wrote.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from natflow.cli import main
from tests.scenario.generator import (
    BASE_TIME,
    Expected,
    FlowFormat,
    GroupBy,
    KeyLayout,
    RowKey,
    Scenario,
    SnatMode,
    Window,
    build_scenario,
)
from tests.scenario.generator import main as generate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MINUTE = 60
# Half an hour that cuts through the IP reuses, the deletions and the SKIPDATA/NODATA records.
WINDOW: Window = (BASE_TIME + 15 * MINUTE, BASE_TIME + 45 * MINUTE)


def attribute(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    assert main(args) == 0, capsys.readouterr().err
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def row_key(row: dict[str, Any]) -> RowKey:
    return (row["natGatewayId"], row["namespace"], row["workloadKind"], row["workloadName"], row["source"])


def assert_matches(document: dict[str, Any], expected: Expected) -> None:
    """Every number natflow reports against the ground truth, and natflow's own sums against each other."""
    gateways = {g["natGatewayId"]: g for g in document["natGateways"]}
    assert {gid: {k: g[k] for k in ("bytesOut", "bytesIn", "attributedBytes")} for gid, g in gateways.items()} == (
        expected.gateways
    )
    assert {gid: g["coverage"] for gid, g in gateways.items()} == {gid: expected.coverage(gid) for gid in gateways}

    rows = document["attributions"]
    assert {row_key(r): (r["bytesOut"], r["bytesIn"]) for r in rows} == expected.rows
    assert len(rows) == len(expected.rows), "a row key appears twice"
    for gid, gateway in gateways.items():
        own = [r for r in rows if r["natGatewayId"] == gid]
        assert sum(r["bytesOut"] for r in own) == gateway["bytesOut"]
        assert sum(r["bytesIn"] for r in own) == gateway["bytesIn"]
        attributed = sum(r["bytesOut"] + r["bytesIn"] for r in own if r["source"] != "unattributed")
        assert attributed == gateway["attributedBytes"]
    assert {row_key(r): set(r["pods"]) for r in rows if r["source"] == "pod"} == expected.pods

    assert {name: document["stats"][name] for name in expected.stats} == expected.stats
    reasons = [w["reason"] for w in document["warnings"]]
    assert set(reasons) == expected.warnings
    hiding = [w for w in document["warnings"] if w["reason"] == "NodeSNATHidesPodIPs"]
    if expected.snat_hidden_bytes:
        (warning,) = hiding
        assert warning["bytes"] == expected.snat_hidden_bytes
        assert {n["node"]: n["bytes"] for n in warning["nodes"]} == expected.snat_hidden_by_node
        # natflow lists every pod that ran on those nodes: the ones that sent must be among them.
        assert expected.snat_hidden_pods <= set(warning["pods"])
    else:
        assert not hiding


def scenario_in(tmp_path: Path, **options: Any) -> Scenario:
    return build_scenario(tmp_path / "scenario", **options)


@pytest.mark.parametrize(
    ("seed", "snat", "flow_format", "layout", "group_by"),
    [
        (11, "off", "text", "default", "workload"),
        (12, "on", "text", "hive", "workload"),
        (13, "on-exclude", "cloudwatch", "default", "workload"),
        (14, "absent", "parquet", "hive", "workload"),
        (15, "off", "parquet", "default", "pod"),
        (16, "on", "cloudwatch", "default", "namespace"),
        (17, "absent", "text", "default", "pod"),
        (18, "on-exclude", "parquet", "hive", "pod"),
        (61, "auto", "text", "default", "workload"),
        (62, "cilium", "parquet", "hive", "pod"),
        (63, "ipv6", "cloudwatch", "default", "namespace"),
    ],
)
def test_attribution_matches_ground_truth(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    seed: int,
    snat: SnatMode,
    flow_format: FlowFormat,
    layout: KeyLayout,
    group_by: GroupBy,
) -> None:
    scenario = scenario_in(tmp_path, seed=seed, snat=snat, flow_format=flow_format, layout=layout)
    assert_matches(attribute(capsys, scenario.cli_args(group_by=group_by)), scenario.expected(group_by=group_by))


@pytest.fixture(scope="module")
def reuse_scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build_scenario(tmp_path_factory.mktemp("windowed"), seed=21, snat="off")


@pytest.mark.parametrize(
    "window", [None, WINDOW, (WINDOW[0], None), (None, WINDOW[1])], ids=["hour", "window", "start", "end"]
)
@pytest.mark.parametrize("group_by", ["workload", "pod", "namespace"])
def test_window_and_grouping(
    reuse_scenario: Scenario, capsys: pytest.CaptureFixture[str], window: Window | None, group_by: GroupBy
) -> None:
    expected = reuse_scenario.expected(window=window, group_by=group_by)
    assert_matches(attribute(capsys, reuse_scenario.cli_args(window, group_by)), expected)


def test_window_sees_each_holder_of_a_reused_ip(reuse_scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    """10.0.17.41 went from web to checkout at 10:20; 10.0.21.17 from the Job pod to web at 10:21."""
    document = attribute(capsys, reuse_scenario.cli_args(WINDOW, "pod"))
    pods = reuse_scenario.cluster.pods
    holders = {(row["workloadName"], row["source"]) for row in document["attributions"]}
    for role in ("web-a", "checkout-d", "web-c", "checkout-e"):
        assert (pods[role].name, "pod") in holders
    assert (pods["export"].name, "pod") not in holders  # finished at 10:15, before the window's first record


def test_unattributed_rows_name_the_eni_that_owns_the_address(
    reuse_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    document = attribute(capsys, reuse_scenario.cli_args())
    owners = {r["workloadName"]: r.get("addressOwner") for r in document["attributions"] if r["workloadKind"] == "IP"}
    lambda_eni, outsider = reuse_scenario.vpc.lambda_eni, reuse_scenario.vpc.outsider_eni
    assert set(owners) == {lambda_eni.primary_ip, outsider.primary_ip}
    owner = owners[lambda_eni.primary_ip]
    assert (owner["interfaceId"], owner["interfaceType"]) == (lambda_eni.id, "lambda")
    assert owners[outsider.primary_ip] is None  # describe-network-interfaces does not list it


def test_text_parquet_and_cloudwatch_give_identical_attributions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = {}
    for flow_format in ("text", "parquet", "cloudwatch"):
        scenario = build_scenario(tmp_path / flow_format, seed=31, snat="on-exclude", flow_format=flow_format)
        documents[flow_format] = attribute(capsys, scenario.cli_args())
        assert_matches(documents[flow_format], scenario.expected())
    text = documents["text"]
    for flow_format in ("parquet", "cloudwatch"):
        assert documents[flow_format]["attributions"] == text["attributions"], flow_format
        assert documents[flow_format]["natGateways"] == text["natGateways"], flow_format


def test_snat_moves_bytes_between_rows_but_not_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    totals = {}
    for snat in ("off", "on", "absent"):
        scenario = build_scenario(tmp_path / snat, seed=41, snat=snat)
        document = attribute(capsys, scenario.cli_args())
        assert_matches(document, scenario.expected())
        totals[snat] = [(g["natGatewayId"], g["bytesOut"], g["bytesIn"]) for g in document["natGateways"]]
        sources = {row["source"] for row in document["attributions"]}
        if snat == "on":
            assert "nodeSNAT" in sources and "hostNetwork" not in sources
        else:
            assert "nodeSNAT" not in sources
            assert ("hostNetwork" in sources) == (snat == "off")
    assert totals["off"] == totals["on"] == totals["absent"]


def snat_sources(document: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The SNAT warning's bytes per origin (the object that decided) and node."""
    hiding = [w for w in document["warnings"] if w["reason"] == "NodeSNATHidesPodIPs"]
    return {s["origin"]: {n["node"]: n["bytes"] for n in s["nodes"]} for w in hiding for s in w["sources"]}


def test_auto_mode_nodeclasses_next_to_managed_nodes_and_a_fix_mid_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """a1/b2 are managed (aws-node, EXTERNALSNAT=false); a2 is NodeClass general (Random until its
    patch to Disabled at 10:30); b1 is NodeClass batch (Disabled). A window across 10:30 splits a2's
    node-IP bytes into nodeSNAT before and hostNetwork after; after 10:30 only aws-node hides pods."""
    scenario = scenario_in(tmp_path, seed=64, snat="auto")
    nodes = {key: node.name for key, node in scenario.vpc.nodes.items()}
    for window, general_hidden in ((WINDOW, True), ((BASE_TIME + 30 * MINUTE, None), False)):
        expected = scenario.expected(window=window)
        document = attribute(capsys, scenario.cli_args(window))
        assert_matches(document, expected)
        sources = snat_sources(document)
        by_node = expected.snat_hidden_by_node
        assert sources["DaemonSet kube-system/aws-node"] == {nodes["a1"]: by_node[nodes["a1"]],
                                                            nodes["b2"]: by_node[nodes["b2"]]}  # fmt: skip
        assert ("NodeClass general" in sources) == general_hidden
        if general_hidden:
            assert sources["NodeClass general"] == {nodes["a2"]: by_node[nodes["a2"]]}
            (warning,) = [w for w in document["warnings"] if w["reason"] == "NodeSNATHidesPodIPs"]
            assert """kubectl patch nodeclass general --type merge -p '{"spec":{"snatPolicy":"Disabled"}}'""" in (
                warning["message"]
            )
        assert nodes["b1"] not in by_node and "NodeClass batch" not in sources
        a2 = {r["source"] for r in document["attributions"] if r["workloadName"] == nodes["a2"]} - {"node"}
        assert a2 == ({"nodeSNAT", "hostNetwork"} if general_hidden else {"hostNetwork"})


def test_cilium_and_ipv6_clusters_name_their_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for snat, origin, words in (
        ("cilium", "ConfigMap kube-system/cilium-config", "enable-ipv4-masquerade"),
        ("ipv6", "DaemonSet kube-system/aws-node", "IPv6 cluster: pods' IPv4 egress always leaves as the node's IPv4"),
    ):
        scenario = build_scenario(tmp_path / snat, seed=65, snat=snat)
        document = attribute(capsys, scenario.cli_args())
        expected = scenario.expected()
        assert_matches(document, expected)
        assert snat_sources(document) == {origin: expected.snat_hidden_by_node}
        (warning,) = [w for w in document["warnings"] if w["reason"] == "NodeSNATHidesPodIPs"]
        assert words in warning["message"]


def test_every_snat_mode_moves_bytes_between_rows_but_never_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    totals = set()
    for snat in ("off", "on", "on-exclude", "absent", "auto", "cilium", "ipv6"):
        scenario = build_scenario(tmp_path / snat, seed=66, snat=snat)
        document = attribute(capsys, scenario.cli_args())
        assert_matches(document, scenario.expected())
        totals.add(tuple((g["natGatewayId"], g["bytesOut"], g["bytesIn"]) for g in document["natGateways"]))
    assert len(totals) == 1


def test_bytes_spanning_an_ip_release_are_split_by_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = scenario_in(tmp_path, seed=51, snat="off", straddle=True)
    expected = scenario.expected()
    document = attribute(capsys, scenario.cli_args())
    assert_matches(document, expected)
    assert expected.stats["splitRows"] == 2
    node = scenario.cluster.pods["checkout-e"].node.name
    split = {(r["workloadName"], r["source"]): r.get("splitBytes", 0) for r in document["attributions"]}
    # 40,000 bytes out and 1,200,000 in over 60 s: the pod held the address for the first 30 s.
    assert split[("checkout", "pod")] == split[(node, "node")] == 620_000


def test_window_applies_to_nodata_and_skipdata_records(
    reuse_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report for 10:15-10:45 counts only the SKIPDATA/NODATA records that start in it, and warns
    that its totals are a lower bound only for those."""
    expected = reuse_scenario.expected(window=WINDOW)
    document = attribute(capsys, reuse_scenario.cli_args(WINDOW))
    stats = document["stats"]
    assert (stats["skipDataRecords"], stats["noDataRecords"]) == (1, 3)
    assert (stats["skipDataRecords"], stats["noDataRecords"]) == (
        expected.stats["skipDataRecords"],
        expected.stats["noDataRecords"],
    )


# -- the shipped demo -------------------------------------------------------------------------------
def _committed_answer() -> dict[str, Any]:
    answer: dict[str, Any] = json.loads((EXAMPLES / "expected.json").read_text())
    return answer


def _contents(root: Path) -> dict[str, bytes]:
    """Every input file under root, gzip members decompressed (compressed bytes vary with zlib)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.parent != root:
            data = path.read_bytes()
            found[str(path.relative_to(root))] = gzip.decompress(data) if path.suffix == ".gz" else data
    return found


def test_examples_give_their_committed_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    committed = _committed_answer()
    scenario = build_scenario(tmp_path, **{
        "seed": committed["generator"]["seed"], "snat": committed["generator"]["snat"],
        "flow_format": committed["generator"]["flowFormat"], "layout": committed["generator"]["layout"],
        "density": committed["generator"]["density"], "straddle": committed["generator"]["straddle"],
    })  # fmt: skip
    expected = scenario.expected()
    assert expected.to_json() == committed["expected"]
    args = ["attribute", "--cluster", str(EXAMPLES / "cluster"), "--aws", str(EXAMPLES / "aws"),
            "--flow-logs", str(EXAMPLES / "flowlogs"), "-o", "json"]  # fmt: skip
    assert_matches(attribute(capsys, args), expected)


def test_examples_regenerate_byte_for_byte(tmp_path: Path) -> None:
    """The README's command recreates examples/ exactly (so the demo can be regenerated, not hand-edited)."""
    parameters = _committed_answer()["generator"]
    argv = ["--out", str(tmp_path), "--seed", str(parameters["seed"]), "--snat", parameters["snat"],
            "--format", parameters["flowFormat"], "--layout", parameters["layout"],
            "--density", str(parameters["density"])]  # fmt: skip
    if parameters["straddle"]:
        argv.append("--straddle")
    assert generate(argv) == 0
    assert (tmp_path / "expected.json").read_text() == (EXAMPLES / "expected.json").read_text()
    assert _contents(tmp_path) == _contents(EXAMPLES)

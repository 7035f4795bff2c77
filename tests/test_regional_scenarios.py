"""End to end: ``natflow attribute`` with a regional NAT Gateway (tests/scenario/regional.py) must give
the generator's known answer: exact bytes per workload, the internet side tallied apart, the records
that fit neither counted and named, and every total adding up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.scenario.generator import BASE_TIME, GroupBy, Scenario, SnatMode, Window
from tests.scenario.regional import REGIONAL_FIELDS, RegionalFormat, build_regional_scenario
from tests.test_scenarios import assert_matches, attribute

MINUTE = 60
WINDOW: Window = (BASE_TIME + 15 * MINUTE, BASE_TIME + 45 * MINUTE)


def regional_gateway(scenario: Scenario) -> str:
    return scenario.vpc.gateways[1].id


@pytest.mark.parametrize(
    ("seed", "snat", "flow_format", "group_by", "window"),
    [
        (61, "off", "text", "workload", None),
        (62, "on", "parquet", "pod", None),
        (63, "on-exclude", "text", "namespace", WINDOW),
        (64, "absent", "parquet", "workload", WINDOW),
    ],
)
def test_regional_gateway_matches_ground_truth(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    seed: int,
    snat: SnatMode,
    flow_format: RegionalFormat,
    group_by: GroupBy,
    window: Window | None,
) -> None:
    scenario = build_regional_scenario(tmp_path, seed=seed, snat=snat, flow_format=flow_format)
    assert_matches(attribute(capsys, scenario.cli_args(window, group_by)), scenario.expected(window, group_by))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build_regional_scenario(tmp_path_factory.mktemp("regional"), seed=65, snat="off")


def test_inside_bytes_are_attributed_plus_unattributed_and_the_internet_side_is_apart(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    document = attribute(capsys, scenario.cli_args())
    gateway_id = regional_gateway(scenario)
    gateway = next(g for g in document["natGateways"] if g["natGatewayId"] == gateway_id)
    rows = [r for r in document["attributions"] if r["natGatewayId"] == gateway_id]
    inside = gateway["bytesOut"] + gateway["bytesIn"]
    attributed = sum(r["bytesOut"] + r["bytesIn"] for r in rows if r["source"] != "unattributed")
    unattributed = sum(r["bytesOut"] + r["bytesIn"] for r in rows if r["source"] == "unattributed")
    assert inside == attributed + unattributed and attributed == gateway["attributedBytes"]
    assert {r["workloadName"] for r in rows if r["source"] == "unattributed"} == {scenario.vpc.lambda_eni.primary_ip}
    # Each connection's bytes cross the gateway twice in its records: the internet side carries them
    # again, and is tallied apart, never added to the gateway.
    mine = [r for r in scenario.records if r.gateway == gateway_id]
    internet = sum(r.number("bytes") for r in mine if r.role == "internet")
    assert internet == inside
    zonal_internet = sum(r.number("bytes") for r in scenario.records if r.role == "internet" and r not in mine)
    assert document["stats"]["internetLegBytes"] == internet + zonal_internet
    # Pods and nodes of AZ b send through the regional gateway, found by resource-id (interface-id '-').
    assert {r["source"] for r in rows} >= {"pod", "hostNetwork", "unattributed"}


def test_records_that_fit_neither_are_counted_and_name_the_gateway(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    document = attribute(capsys, scenario.cli_args())
    gateway_id = regional_gateway(scenario)
    unfit = [r for r in scenario.records if r.role == "unclassified"]
    (warning,) = [w for w in document["warnings"] if w["reason"] == "UnclassifiedNatRecords"]
    assert warning["gateways"] == [
        {"natGatewayId": gateway_id, "records": len(unfit), "bytes": sum(r.number("bytes") for r in unfit)}
    ]
    assert f"{gateway_id} (regional)" in warning["message"]


def test_reference_and_fast_readers_agree_on_a_version_11_flow_log(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "next-hop-az-id" in REGIONAL_FIELDS and "asg-tag-2" in REGIONAL_FIELDS
    fast = attribute(capsys, scenario.cli_args())
    reference = attribute(capsys, [*scenario.cli_args(), "--reader", "reference"])
    assert reference == fast


def test_a_regional_gateway_alone_is_enough(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """describe-nat-gateways with only the regional gateway: no ENI matches, records by resource-id."""
    scenario = build_regional_scenario(tmp_path, seed=66)
    path = scenario.aws_dir / "describe-nat-gateways.json"
    gateways = json.loads(path.read_text())
    gateways["NatGateways"] = [g for g in gateways["NatGateways"] if g.get("AvailabilityMode") == "regional"]
    path.write_text(json.dumps(gateways))
    document: dict[str, Any] = attribute(capsys, scenario.cli_args())
    expected = scenario.expected().gateways[regional_gateway(scenario)]
    (gateway,) = document["natGateways"]
    assert {k: gateway[k] for k in expected} == expected

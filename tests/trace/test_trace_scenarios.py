"""`natflow trace` on generated scenarios with known answers: the legs written are the legs shown."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from natflow.cli import main
from tests.scenario.generator import FlowFormat, build_scenario
from tests.trace.world import (
    FIELDS_WITH_REASON,
    REGIONAL_FIELDS,
    REGIONAL_ID,
    REGIONAL_PUBLIC,
    REMOTE,
    Connection,
    add_connection,
    add_regional_connection,
    add_regional_gateway,
    build_world,
    set_flow_logs,
    write_flow_logs,
)

LEG_KEYS = {
    "interfaceId",
    "interfaceKind",
    "role",
    "direction",
    "srcaddr",
    "dstaddr",
    "pktSrcaddr",
    "pktDstaddr",
    "srcport",
    "dstport",
    "protocol",
    "bytes",
    "packets",
    "start",
    "end",
    "action",
    "rejectReason",
}
CONVERSATION_KEYS = {
    "inside",
    "remote",
    "remotePort",
    "protocol",
    "holder",
    "out",
    "back",
    "translations",
    "legs",
    "findings",
}
REASONS = {"AsymmetricReturnPath", "CrossZoneNAT", "Rejected", "NoReturnTraffic", "MissingLeg", "BytesDiffer"}


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(args) == 0, capsys.readouterr().err
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    check_contract(document)
    return document


def check_contract(document: dict[str, Any]) -> None:
    """issue 13's JSON shape, key set by key set."""
    assert set(document) == {"window", "subject", "conversations", "warnings", "stats"}
    assert set(document["window"]) == {"start", "end"}
    assert set(document["subject"]) == {"kind", "name", "addresses"}
    assert document["subject"]["kind"] in ("pod", "workload", "address")
    assert isinstance(document["subject"]["addresses"], list)
    assert isinstance(document["stats"], dict)
    for warning in document["warnings"]:
        assert {"reason", "message"} <= set(warning)
    for conversation in document["conversations"]:
        assert set(conversation) == CONVERSATION_KEYS
        assert set(conversation["holder"]) == {"kind", "name", "namespace"}
        assert conversation["holder"]["kind"] in ("pod", "node", "unattributed")
        for direction in ("out", "back"):
            assert set(conversation[direction]) == {"natGatewayIds", "bytes", "packets"}
        for translation in conversation["translations"]:
            assert set(translation) == {"where", "from", "to"}
            assert translation["where"] in ("node", "natGateway")
        for leg in conversation["legs"]:
            assert set(leg) == LEG_KEYS
            assert leg["interfaceKind"] in ("pod-eni", "node-eni", "nat-gateway", "regional-nat-gateway", "other")
            assert leg["role"] in ("source-eni", "nat-inside", "nat-internet", "destination-eni")
            assert leg["direction"] in ("out", "back")
        for finding in conversation["findings"]:
            assert {"reason", "message"} <= set(finding)
            assert finding["reason"] in REASONS


def reasons(conversation: dict[str, Any]) -> set[str]:
    return {finding["reason"] for finding in conversation["findings"]}


def legs_by(conversation: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for leg in conversation["legs"]:
        found[(leg["role"], leg["direction"])].append(leg)
    return found


def test_a_symmetric_flow_through_one_zonal_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    for minute, (out, back) in enumerate(((12_000, 900_000), (30_000, 4_000_000))):
        add_connection(
            world, maker, Connection(minute + 5, out, back, client_port=40_001 + minute, nat_port=20_001 + minute)
        )
    write_flow_logs(world, maker.records)
    document = run([*world.args, "--pod", world.pod.key], capsys)
    pod, gateway = world.pod, world.pod.node.gateway
    assert document["subject"] == {"kind": "pod", "name": pod.key, "addresses": [pod.ip]}
    [conversation] = document["conversations"]
    assert (conversation["inside"], conversation["remote"], conversation["remotePort"], conversation["protocol"]) == (
        pod.ip,
        REMOTE,
        443,
        6,
    )
    assert conversation["holder"] == {"kind": "pod", "name": pod.name, "namespace": pod.namespace}
    assert conversation["out"] == {"natGatewayIds": [gateway.id], "bytes": 42_000, "packets": 12 + 27}
    assert conversation["back"]["natGatewayIds"] == [gateway.id]
    assert conversation["back"]["bytes"] == 4_900_000
    assert conversation["findings"] == []
    assert conversation["translations"] == [
        {"where": "natGateway", "from": gateway.private_ips[0], "to": gateway.public_ips[0]}
    ]
    legs = legs_by(conversation)
    assert {key: len(value) for key, value in legs.items()} == {
        ("source-eni", "out"): 2,
        ("nat-inside", "out"): 2,
        ("nat-internet", "out"): 2,
        ("nat-internet", "back"): 2,
        ("nat-inside", "back"): 2,
        ("destination-eni", "back"): 2,
    }
    assert {leg["interfaceKind"] for leg in legs[("source-eni", "out")]} == {"node-eni"}
    assert {leg["interfaceId"] for leg in legs[("nat-inside", "out")]} == {gateway.eni}
    # each internet leg is its own connection's: the same bytes as the inside leg beside it
    assert sorted(leg["bytes"] for leg in legs[("nat-internet", "out")]) == [12_000, 30_000]
    assert len(conversation["legs"]) == len(world.records)
    assert document["stats"]["filesReadAgain"] == 0  # the internet legs were in the same object


def test_replies_through_another_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    other = next(g for g in world.vpc.gateways if g is not world.pod.node.gateway)
    add_connection(world, maker, Connection(5, back_gateway=other))
    write_flow_logs(world, maker.records)
    [conversation] = run([*world.args, "--pod", world.pod.key], capsys)["conversations"]
    assert conversation["out"]["natGatewayIds"] == [world.pod.node.gateway.id]
    assert conversation["back"]["natGatewayIds"] == [other.id]
    assert reasons(conversation) == {"AsymmetricReturnPath", "CrossZoneNAT"}
    cross = next(f for f in conversation["findings"] if f["reason"] == "CrossZoneNAT")
    assert (cross["insideZone"], cross["natGatewayZone"], cross["natGatewayId"]) == ("use1-az1", "use1-az2", other.id)
    assert len(legs_by(conversation)[("nat-internet", "back")]) == 1  # matched on the other gateway


def test_a_reject_on_the_pods_eni(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5, reject_on_pod_eni=True))
    write_flow_logs(world, maker.records)
    [conversation] = run([*world.args, "--pod", world.pod.key], capsys)["conversations"]
    assert reasons(conversation) == {"Rejected"}
    [rejected] = conversation["findings"]
    assert rejected["interfaceId"] == world.pod.node.interfaces[0].id
    assert rejected["direction"] == "back"
    assert "security group or network ACL" in rejected["message"]
    [leg] = [leg for leg in conversation["legs"] if leg["action"] == "REJECT"]
    assert (leg["role"], leg["rejectReason"]) == ("destination-eni", None)


def test_requests_with_no_replies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5, reply=False))
    add_connection(world, maker, Connection(9, reply=False, client_port=40_002, nat_port=20_002))
    write_flow_logs(world, maker.records)
    [conversation] = run([*world.args, "--pod", world.pod.key], capsys)["conversations"]
    assert reasons(conversation) == {"NoReturnTraffic"}
    assert conversation["back"] == {"natGatewayIds": [], "bytes": 0, "packets": 0}
    assert {leg["direction"] for leg in conversation["legs"]} == {"out"}


def test_node_enis_not_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5, node_eni_logged=False))
    write_flow_logs(world, maker.records)
    set_flow_logs(world, [(g.eni, "NetworkInterface") for g in world.vpc.gateways])
    [conversation] = run([*world.args, "--pod", world.pod.key], capsys)["conversations"]
    assert reasons(conversation) == {"MissingLeg"}
    [missing] = conversation["findings"]
    eni = world.pod.node.interfaces[0].id
    assert missing["interfaceId"] == eni
    assert missing["command"].startswith(
        f"aws ec2 create-flow-logs --resource-type NetworkInterface --resource-ids {eni} "
    )
    assert {leg["role"] for leg in conversation["legs"]} == {"nat-inside", "nat-internet"}


@pytest.mark.parametrize("snat", ["off", "on"])
def test_node_snat_on_and_off(tmp_path: Path, capsys: pytest.CaptureFixture[str], snat: str) -> None:
    world, maker = build_world(tmp_path, snat=snat)
    add_connection(world, maker, Connection(5))
    write_flow_logs(world, maker.records)
    document = run([*world.args, "--pod", world.pod.key], capsys)
    pod, node, gateway = world.pod, world.pod.node, world.pod.node.gateway
    [conversation] = document["conversations"]
    nat = {"where": "natGateway", "from": gateway.private_ips[0], "to": gateway.public_ips[0]}
    warnings = {w["reason"] for w in document["warnings"]}
    if snat == "on":
        assert document["subject"]["addresses"] == [pod.ip, node.primary_ip]
        assert conversation["inside"] == node.primary_ip
        assert conversation["holder"] == {"kind": "node", "name": node.name, "namespace": None}
        assert conversation["translations"] == [{"where": "node", "from": pod.ip, "to": node.primary_ip}, nat]
        assert "NodeSnatHidesPod" in warnings
        source = legs_by(conversation)[("source-eni", "out")][0]
        assert (source["srcaddr"], source["pktSrcaddr"]) == (node.primary_ip, node.primary_ip)
    else:
        assert document["subject"]["addresses"] == [pod.ip]
        assert conversation["inside"] == pod.ip
        assert conversation["translations"] == [nat]
        assert "NodeSnatHidesPod" not in warnings
    assert conversation["findings"] == []


@pytest.mark.parametrize(("zone", "expected"), [("us-east-1a", set()), ("us-east-1b", {"CrossZoneNAT"})])
def test_a_regional_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str], zone: str, expected: set[str]) -> None:
    world, maker = build_world(tmp_path)  # kafka-1 runs on a node in us-east-1a
    add_regional_gateway(world)
    add_regional_connection(world, maker, 7, 25_000, 3_000_000, zone)
    write_flow_logs(world, maker.records, REGIONAL_FIELDS)
    set_flow_logs(world, [(world.vpc.id, "VPC"), (REGIONAL_ID, "RegionalNatGateway")])
    [conversation] = run([*world.args, "--pod", world.pod.key], capsys)["conversations"]
    assert conversation["out"] == {"natGatewayIds": [REGIONAL_ID], "bytes": 25_000, "packets": 25_000 // 1200 + 2}
    assert conversation["back"]["natGatewayIds"] == [REGIONAL_ID]
    assert conversation["back"]["bytes"] == 3_000_000
    assert {(leg["interfaceId"], leg["interfaceKind"]) for leg in conversation["legs"]} == {
        (REGIONAL_ID, "regional-nat-gateway")
    }
    assert {leg["role"] for leg in conversation["legs"]} == {"nat-inside", "nat-internet"}
    assert conversation["translations"] == [
        {"where": "natGateway", "from": world.pod.ip, "to": REGIONAL_PUBLIC[zone][0]}
    ]
    assert reasons(conversation) == expected


def test_bytes_differ_beyond_headers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5, bytes_out=12_000, internet_bytes_out=12_000 + 5_000))
    write_flow_logs(world, maker.records, FIELDS_WITH_REASON)
    [conversation] = run([*world.args, "--pod", world.pod.key], capsys)["conversations"]
    [differ] = conversation["findings"]
    assert differ["reason"] == "BytesDiffer"
    assert (differ["insideBytes"], differ["internetBytes"], differ["allowanceBytes"]) == (12_000, 17_000, 60 * 12)


@pytest.mark.parametrize("flow_format", ["text", "parquet", "cloudwatch"])
def test_the_generated_hour_gives_each_conversation_its_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flow_format: FlowFormat
) -> None:
    """The generator's hour: kafka-0's conversations are its client legs, grouped by the generator's
    destinations, and every internet leg matched is one of its own connections' (the bytes agree)."""
    scenario = build_scenario(tmp_path, seed=11, flow_format=flow_format)
    pod = scenario.cluster.pods["kafka-0"]
    args = [
        "trace",
        "--cluster",
        str(scenario.cluster_dir),
        "--aws",
        str(scenario.aws_dir),
        "--flow-logs",
        str(scenario.flowlogs_dir),
        "--pod",
        pod.key,
        "-o",
        "json",
    ]
    document = run(args, capsys)
    expected: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for record in scenario.records:
        if record.role != "client" or record.damage is not None:
            continue
        if record.direction == "out" and record.values["srcaddr"] == pod.ip:
            key = (str(record.values["pkt-dstaddr"]), record.number("dstport"), record.number("protocol"))
            expected[key][0] += record.number("bytes")
        elif record.direction == "in" and record.values["dstaddr"] == pod.ip:
            key = (str(record.values["pkt-srcaddr"]), record.number("srcport"), record.number("protocol"))
            expected[key][1] += record.number("bytes")
    found = {
        (c["remote"], c["remotePort"], c["protocol"]): [c["out"]["bytes"], c["back"]["bytes"]]
        for c in document["conversations"]
    }
    assert found == expected
    for conversation in document["conversations"]:
        assert conversation["findings"] == []
        legs = legs_by(conversation)
        for direction in ("out", "back"):
            inside = sum(leg["bytes"] for leg in legs[("nat-inside", direction)])
            internet = sum(leg["bytes"] for leg in legs[("nat-internet", direction)])
            assert inside == internet
            assert len(legs[("nat-inside", direction)]) == len(legs[("nat-internet", direction)])


def test_the_table_has_a_verdict_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5, bytes_out=1_000_000, bytes_in=11_000_000))
    write_flow_logs(world, maker.records)
    args = [a for a in world.args if a not in ("-o", "json")]
    assert main([*args, "--pod", world.pod.key]) == 0
    out = capsys.readouterr().out
    gateway = world.pod.node.gateway
    assert f"  ok: out via {gateway.id} (us-east-1a), back via {gateway.id}, 11.4 MiB" in out
    assert "nat-internet" in out and "destination-eni" in out


def test_filters_window_and_subjects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5))
    write_flow_logs(world, maker.records)
    pod = world.pod
    assert (
        len(
            run([*world.args, "--pod", pod.key, "--remote", REMOTE, "--port", "443", "--protocol", "6"], capsys)[
                "conversations"
            ]
        )
        == 1
    )
    for narrowed in (
        ["--remote", "151.101.0.223"],
        ["--port", "80"],
        ["--protocol", "17"],
        ["--start", "2026-11-20T10:06:00Z", "--end", "2026-11-20T11:00:00Z"],
    ):
        assert run([*world.args, "--pod", pod.key, *narrowed], capsys)["conversations"] == []
    window = run(
        [*world.args, "--pod", pod.key, "--start", "2026-11-20T10:05:00Z", "--end", "2026-11-20T10:06:00Z"], capsys
    )
    assert window["window"] == {"start": "2026-11-20T10:05:00Z", "end": "2026-11-20T10:06:00Z"}
    assert len(window["conversations"]) == 1
    workload = run([*world.args, "--workload", "data/StatefulSet/kafka"], capsys)
    assert workload["subject"]["kind"] == "workload"
    assert set(workload["subject"]["addresses"]) == {"10.0.33.52", pod.ip}
    by_address = run([*world.args, "--address", pod.ip], capsys)
    assert by_address["subject"] == {"kind": "address", "name": pod.ip, "addresses": [pod.ip]}
    assert by_address["conversations"][0]["holder"] == {"kind": "pod", "name": pod.name, "namespace": pod.namespace}


def test_a_damaged_object_keeps_the_others_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5))
    path = write_flow_logs(world, maker.records)
    broken = path.with_name(path.name.replace("0001abcd", "0002abcd"))
    broken.write_bytes(path.read_bytes()[:-40])
    document = run([*world.args, "--pod", world.pod.key], capsys)
    assert {w["reason"] for w in document["warnings"]} >= {"DamagedFlowLog"}
    [conversation] = document["conversations"]
    assert conversation["out"]["bytes"] >= 12_000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pod", "data"], "expected NAMESPACE/NAME"),
        (["--pod", "data/nobody"], "no pod of that name"),
        (["--workload", "data/kafka"], "expected NAMESPACE/KIND/NAME"),
        (["--address", "not-an-ip"], "not an IP address"),
        (
            ["--pod", "data/kafka-1", "--start", "2026-11-20T11:00:00Z", "--end", "2026-11-20T10:00:00Z"],
            "must be after",
        ),
    ],
)
def test_usage_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    world, maker = build_world(tmp_path)
    add_connection(world, maker, Connection(5))
    write_flow_logs(world, maker.records)
    assert main([*world.args, *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_offline_needs_all_three_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--address", "10.0.0.1", "--cluster", "x"]) == 2
    assert "give all of --cluster, --aws and --flow-logs" in capsys.readouterr().err

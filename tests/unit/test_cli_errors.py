"""Bad input to `natflow attribute`: one line that names the file or option, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from natflow.cli import main

NAT = {
    "NatGateways": [
        {
            "NatGatewayId": "nat-1",
            "VpcId": "vpc-1",
            "NatGatewayAddresses": [{"NetworkInterfaceId": "eni-nat", "PrivateIp": "10.0.0.220"}],
        }
    ]
}
VPC = {"Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}]}
NODE = {
    "kind": "Node",
    "metadata": {"name": "node-1", "uid": "n1", "creationTimestamp": "2026-11-20T00:00:00Z"},
    "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.9"}]},
}
FLOW = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n"
FLOW += "2 1 eni-nat 10.0.1.5 10.0.0.220 1 443 6 1 100 1795256400 1795256459 ACCEPT OK\n"


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "aws").mkdir()
    (tmp_path / "aws" / "nat.json").write_text(json.dumps(NAT))
    (tmp_path / "aws" / "vpc.json").write_text(json.dumps(VPC))
    (tmp_path / "cluster.json").write_text(json.dumps({"kind": "List", "items": [NODE]}))
    (tmp_path / "flows.log").write_text(FLOW)
    return {"cluster": tmp_path / "cluster.json", "aws": tmp_path / "aws", "flows": tmp_path / "flows.log"}


def call(inputs: dict[str, Path], *extra: str) -> list[str]:
    return [
        "attribute",
        "--cluster",
        str(inputs["cluster"]),
        "--aws",
        str(inputs["aws"]),
        "--flow-logs",
        str(inputs["flows"]),
        *extra,
    ]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def test_a_good_run_prints_json(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(call(inputs, "-o", "json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["natGateways"][0]["bytesOut"] == 100
    assert set(doc) == {"window", "natGateways", "attributions", "warnings", "stats"}


def test_missing_path(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    inputs["flows"] = inputs["flows"].with_name("nope.log")
    assert main(call(inputs)) == 2
    assert one_error_line(capsys) == f"natflow: error: {inputs['flows']}: no such file or directory"


def test_a_missing_flow_log_path_is_told_after_the_settings_and_the_options(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs["flows"] = inputs["flows"].with_name("nope.log")
    assert main(call(inputs, "--start", "tomorrow")) == 2
    assert "--start/--end: not an ISO 8601 time: 'tomorrow'" in one_error_line(capsys)
    monkeypatch.setenv("NATFLOW_TIMER_SECONDS", "soon")
    assert main(call(inputs)) == 2
    assert "NATFLOW_TIMER_SECONDS='soon'" in one_error_line(capsys)


def test_bad_window_and_format(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(call(inputs, "--start", "tomorrow")) == 2
    assert "--start/--end: not an ISO 8601 time: 'tomorrow'" in one_error_line(capsys)
    assert main(call(inputs, "--start", "2026-11-21T10:00:00Z", "--end", "2026-11-21T09:00:00Z")) == 2
    assert "must be after" in one_error_line(capsys)
    assert main(call(inputs, "--log-format", "${a} ${a}")) == 2
    assert "--log-format: a field appears twice" in one_error_line(capsys)


def test_no_nat_gateways(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (inputs["aws"] / "nat.json").write_text(json.dumps({"NatGateways": []}))
    assert main(call(inputs)) == 2
    assert "no NAT Gateways found" in one_error_line(capsys)


def test_unreadable_inputs_are_warnings_naming_the_file(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = {"kind": "List", "items": [{"kind": "Pod", "metadata": {}}, NODE]}
    inputs["cluster"].write_text(json.dumps(broken) + " {broken")
    (inputs["aws"] / "junk.json").write_text("[1, 2]")
    assert main(call(inputs, "-o", "json")) == 0
    doc = json.loads(capsys.readouterr().out)
    messages = [w["message"] for w in doc["warnings"]]
    assert any(str(inputs["cluster"]) in m and "no metadata.name" in m for m in messages)
    assert any(str(inputs["cluster"]) in m and "not kubectl JSON" in m for m in messages)
    assert any("junk.json" in m and "no NatGateways" in m for m in messages)
    assert doc["natGateways"][0]["bytesOut"] == 100  # the good input still counts


def test_a_cluster_input_without_usable_objects_is_an_error(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inputs["cluster"].write_text(json.dumps({"kind": "List", "items": []}))
    assert main(call(inputs)) == 2
    assert one_error_line(capsys) == (
        "natflow: error: --cluster: no usable object (a Pod, Node, ReplicaSet, Job or the aws-node DaemonSet) "
        "in 1 file, 0 objects read"
    )


def test_deeply_nested_json_in_every_input_is_a_warning(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = "[" * 100_000 + "]" * 100_000
    (inputs["aws"] / "deep.json").write_text('{"NatGateways": [' + bomb + "]}")
    extra_cluster = inputs["cluster"].with_name("deep-cluster.json")
    extra_cluster.write_text(bomb)
    cloudwatch = inputs["flows"].with_name("events.json")
    cloudwatch.write_text('{"events": [' + bomb + "]}")
    argv = call(inputs, "-o", "json")
    argv[argv.index("--cluster") + 1 : argv.index("--cluster") + 2] = [str(inputs["cluster"]), str(extra_cluster)]
    argv.insert(argv.index("--flow-logs") + 2, str(cloudwatch))
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    deep = {w["reason"]: w["message"] for w in doc["warnings"] if "nested deeper than 512 levels" in w["message"]}
    assert set(deep) == {"AwsFileUnreadable", "ClusterFileUnreadable", "DamagedFlowLog"}
    assert doc["natGateways"][0]["bytesOut"] == 100

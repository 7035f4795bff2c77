"""The window pipeline that `natflow attribute` and the operator share: plan, read, join."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from natflow.attribution.report import RunContext, build_document
from natflow.aws.files import load_inventory
from natflow.aws.inventory import FlowLog, Inventory, NatGateway
from natflow.cli import main
from natflow.cluster.dump import load_cluster
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import parse_log_format
from natflow.flowlogs.reduce import Reduction
from natflow.flowlogs.sources import discover
from natflow.flowlogs.vectorised import read_all_parallel
from natflow.pipeline import (
    PRIVATE_RANGES,
    PlanError,
    WindowPlan,
    WindowSettings,
    bounds,
    flow_log_groups,
    format_choices,
    plan_window,
    run_window,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def gateway(eni: str | None = "eni-nat") -> NatGateway:
    address = {"PrivateIp": "10.0.0.220", **({"NetworkInterfaceId": eni} if eni else {})}
    return NatGateway.model_validate({"NatGatewayId": "nat-1", "VpcId": "vpc-1", "NatGatewayAddresses": [address]})


def test_a_plan_needs_nat_gateways_with_interfaces() -> None:
    with pytest.raises(PlanError) as none:
        plan_window(Inventory(), (None, None), None, Diagnostics())
    assert none.value.reason == "NoNatGateways"
    inventory = Inventory()
    inventory.add_nat_gateways([gateway(eni=None)])
    with pytest.raises(PlanError) as no_eni:
        plan_window(inventory, (None, None), None, Diagnostics())
    assert no_eni.value.reason == "NoNatInterfaces"


def test_without_the_vpcs_cidrs_inside_is_the_private_ranges_with_a_warning() -> None:
    inventory = Inventory()
    inventory.add_nat_gateways([gateway()])
    found = Diagnostics()
    plan = plan_window(inventory, (100, None), None, found)
    assert [d.reason for d in found.items] == ["VpcCidrsUnknown"]
    assert all(plan.topology.inside.__contains__(ip) for ip in ("10.9.9.9", "172.16.0.1", "100.64.0.1"))
    assert "8.8.8.8" not in plan.topology.inside
    assert plan.window == (100, 1 << 62) and bounds((None, None)) is None
    assert len(PRIVATE_RANGES) == 4


def test_format_choices_come_from_each_flow_logs_declared_format() -> None:
    s3 = FlowLog.model_validate({"FlowLogId": "fl-s3", "LogDestinationType": "s3",
                                 "LogFormat": "${interface-id} ${srcaddr} ${dstaddr} ${bytes}"})  # fmt: skip
    logs = FlowLog.model_validate({"FlowLogId": "fl-cw", "LogDestinationType": "cloud-watch-logs",
                                   "LogFormat": "${srcaddr} ${dstaddr} ${bytes}"})  # fmt: skip
    bare = FlowLog.model_validate({"FlowLogId": "fl-default", "LogDestinationType": "s3"})
    choices = format_choices([s3, logs, bare], None)
    assert set(choices.by_flow_log_id) == {"fl-s3", "fl-cw"}
    assert [f.fields for f in choices.s3] == [("interface-id", "srcaddr", "dstaddr", "bytes")]
    assert [f.fields for f in choices.cloudwatch] == [("srcaddr", "dstaddr", "bytes")]
    override = parse_log_format("${srcaddr} ${dstaddr}", "--log-format")
    assert format_choices([s3], override).override is override


def test_nat_enis_without_a_flow_log_are_warned_about_with_the_fix() -> None:
    inventory = Inventory()
    inventory.add_nat_gateways([gateway()])
    plan = plan_window(inventory, (None, None), None, Diagnostics())
    found = Diagnostics()
    groups = flow_log_groups(inventory, plan, [], found)
    assert (groups.groups, groups.missing) == ([], ["eni-nat"])
    (warning,) = found.items
    assert warning.reason == "FlowLogsMissing" and "aws ec2 create-flow-logs" in warning.message
    configured = FlowLog.model_validate({"FlowLogId": "configured", "LogDestinationType": "s3"})
    covered = flow_log_groups(inventory, plan, [configured], Diagnostics())
    assert covered.groups == [(configured, ["eni-nat"])] and covered.missing == []


class HeldLock:
    """A state guard that says whether it is held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entered = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            self.entered += 1
            yield


def test_run_window_reads_without_the_state_guard_and_joins_inside_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The examples' hour through the pipeline with a guard: the reader runs while the guard is free,
    the join once inside it, and the document is the one `natflow attribute` prints."""
    found = Diagnostics()
    state, _ = load_cluster([str(EXAMPLES / "cluster")], found)
    inventory, _ = load_inventory([str(EXAMPLES / "aws")], found)
    files, _ = discover([str(EXAMPLES / "flowlogs")], found)
    guard = HeldLock()
    reads = []

    def read(plan: WindowPlan, diagnostics: Diagnostics) -> Reduction:
        reads.append(guard.lock.locked())
        return read_all_parallel(files, plan.choices, plan.topology, plan.window, diagnostics, 2)

    settings = WindowSettings(region=inventory.region())
    done = run_window(inventory, state, read, (None, None), settings, found, guard())
    assert reads == [False] and guard.entered == 1 and not guard.lock.locked()
    assert done.price_source == "default price for us-east-1"
    document = build_document(done.result, done.reduction, (None, None), done.diagnostics,
                              RunContext(files_read=len(files), price_source=done.price_source))  # fmt: skip
    total = sum(g["bytesOut"] + g["bytesIn"] for g in document["natGateways"])
    assert total > 0 and total == sum(r["bytesOut"] + r["bytesIn"] for r in document["attributions"])

    argv = ["attribute", "--cluster", str(EXAMPLES / "cluster"), "--aws", str(EXAMPLES / "aws"),
            "--flow-logs", str(EXAMPLES / "flowlogs"), "-o", "json"]  # fmt: skip
    assert main(argv) == 0
    by_cli = json.loads(capsys.readouterr().out)
    for part in ("window", "natGateways", "attributions", "warnings"):
        assert by_cli[part] == document[part]

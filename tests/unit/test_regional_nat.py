"""Regional NAT Gateways: what DescribeNatGateways says, which flow logs cover them, the record rule
(`nat_record_role`, as `Reduction.add` counts), and the warnings when data contradicts an assumption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from natflow.attribution.engine import Attributor
from natflow.attribution.report import derive_warnings
from natflow.aws.discovery import covering_flow_logs, create_flow_logs_commands, log_stream_prefixes
from natflow.aws.inventory import FlowLog, Inventory, NatGateway, NetworkInterface, Vpc
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import RECOMMENDED_FORMAT
from natflow.flowlogs.readers import FormatChoices, read_all
from natflow.flowlogs.reduce import NatTopology, Reduction, nat_record_role
from natflow.flowlogs.sources import FileKind, describe
from natflow.net import CidrSet
from natflow.pipeline import WindowSettings, attribute_reduction, flow_log_groups, plan_window

REGIONAL, ZONAL = "nat-0regional00000001", "nat-0zonal0000000001"
T0 = 1_795_255_200

# DescribeNatGateways output as the EC2 API documents it for a regional gateway: no subnet, an
# address per AZ with its ENI, no private IP.
REGIONAL_JSON: dict[str, Any] = {
    "NatGatewayId": REGIONAL,
    "VpcId": "vpc-0a",
    "State": "available",
    "ConnectivityType": "public",
    "AvailabilityMode": "regional",
    "AutoProvisionZones": "enabled",
    "AutoScalingIps": "enabled",
    "RouteTableId": "rtb-0auto",
    "NatGatewayAddresses": [
        {
            "AllocationId": "eipalloc-0a",
            "NetworkInterfaceId": "eni-0rega",
            "PublicIp": "3.216.41.7",
            "AvailabilityZone": "us-east-1a",
            "AvailabilityZoneId": "use1-az1",
            "Status": "succeeded",
        },
        {
            "AllocationId": "eipalloc-0b",
            "NetworkInterfaceId": "eni-0regb",
            "PublicIp": "3.216.41.8",
            "AvailabilityZone": "us-east-1b",
            "AvailabilityZoneId": "use1-az2",
            "Status": "succeeded",
        },
    ],
}
ZONAL_JSON: dict[str, Any] = {
    "NatGatewayId": ZONAL,
    "VpcId": "vpc-0a",
    "SubnetId": "subnet-0pub",
    "State": "available",
    "NatGatewayAddresses": [{"NetworkInterfaceId": "eni-0zon", "PrivateIp": "10.0.0.77", "PublicIp": "3.5.5.5"}],
}


def inventory(*gateways: dict[str, Any], flow_logs: tuple[dict[str, Any], ...] = ()) -> Inventory:
    found = Inventory()
    found.add_nat_gateways(NatGateway.model_validate(g) for g in gateways)
    found.add_vpcs([Vpc(VpcId="vpc-0a", CidrBlock="10.0.0.0/16")])
    found.add_flow_logs(FlowLog.model_validate(f) for f in flow_logs)
    return found


def test_describe_output_of_a_regional_gateway() -> None:
    gateway = NatGateway.model_validate(REGIONAL_JSON)
    assert gateway.regional and gateway.SubnetId is None
    assert gateway.availability_zones() == [("us-east-1a", "use1-az1"), ("us-east-1b", "use1-az2")]
    assert [a.PrivateIp for a in gateway.NatGatewayAddresses] == [None, None]
    assert not NatGateway.model_validate(ZONAL_JSON).regional  # no AvailabilityMode: zonal
    assert not NatGateway.model_validate({**ZONAL_JSON, "AvailabilityMode": "zonal"}).regional


def test_topology_keys_regional_gateways_by_id_and_zonal_ones_by_eni() -> None:
    topology = inventory(REGIONAL_JSON, ZONAL_JSON).topology(CidrSet(["10.0.0.0/16"]))
    assert topology.regional == {REGIONAL}
    assert topology.natgw_by_eni == {"eni-0zon": ZONAL}  # a regional gateway's ENIs match no record
    assert topology.natgw_by_key == {"eni-0zon": ZONAL, REGIONAL: REGIONAL}
    assert topology.natgw_of(REGIONAL) == REGIONAL and topology.natgw_of("eni-0rega") is None


def test_flow_logs_cover_a_regional_gateway_by_its_id_only() -> None:
    on_gateway = {"FlowLogId": "fl-0reg", "ResourceId": REGIONAL, "TrafficType": "ALL", "FlowLogStatus": "ACTIVE"}
    on_vpc = {"FlowLogId": "fl-0vpc", "ResourceId": "vpc-0a", "TrafficType": "ALL"}
    rejects = {"FlowLogId": "fl-0rej", "ResourceId": REGIONAL, "TrafficType": "REJECT"}
    found = inventory(REGIONAL_JSON, ZONAL_JSON, flow_logs=(on_gateway, on_vpc, rejects))
    assert [f.FlowLogId for f in covering_flow_logs(found, REGIONAL)] == ["fl-0reg"]
    assert [f.FlowLogId for f in covering_flow_logs(found, "eni-0zon")] == ["fl-0vpc"]
    assert covering_flow_logs(inventory(REGIONAL_JSON, flow_logs=(on_vpc,)), REGIONAL) == []
    assert log_stream_prefixes(found, REGIONAL) == [REGIONAL, "eni-0rega", "eni-0regb"]
    assert log_stream_prefixes(found, "eni-0zon") == ["eni-0zon"]


def test_create_flow_logs_commands_name_the_resource_type() -> None:
    commands = create_flow_logs_commands(["eni-0zon", REGIONAL])
    assert commands[0].startswith("aws ec2 create-flow-logs --resource-type NetworkInterface --resource-ids eni-0zon ")
    assert commands[1].startswith(
        f"aws ec2 create-flow-logs --resource-type RegionalNatGateway --resource-ids {REGIONAL} "
    )
    assert all(f"--log-format '{RECOMMENDED_FORMAT}'" in c and "--traffic-type ALL" in c for c in commands)
    assert "${resource-id}" in RECOMMENDED_FORMAT and "${az-id}" in RECOMMENDED_FORMAT
    assert "${flow-direction}" in RECOMMENDED_FORMAT
    assert create_flow_logs_commands([REGIONAL])[0].count("create-flow-logs") == 1


def test_a_gateway_without_eni_or_private_ip_is_named_not_silently_zero() -> None:
    no_eni = {**ZONAL_JSON, "NatGatewayId": "nat-0noeni", "NatGatewayAddresses": [{"PublicIp": "3.5.5.6"}]}
    no_ip = {**ZONAL_JSON, "NatGatewayId": "nat-0noip", "NatGatewayAddresses": [{"NetworkInterfaceId": "eni-0x"}]}
    found = inventory(REGIONAL_JSON, ZONAL_JSON, no_eni, no_ip)
    diagnostics = Diagnostics()
    found.warn_unmatched_gateways(diagnostics)
    assert [(d.reason, d.details["natGatewayId"]) for d in diagnostics.items] == [
        ("NatGatewayUnmatched", "nat-0noeni"),
        ("NatGatewayUnmatched", "nat-0noip"),
    ]
    assert "list no NetworkInterfaceId" in diagnostics.items[0].message
    # The ENI's private IP from describe-network-interfaces is enough.
    found.add_interfaces([NetworkInterface(NetworkInterfaceId="eni-0x", PrivateIpAddress="10.0.0.90")])
    assert set(found.unmatched_gateways()) == {"nat-0noeni"}


TOPOLOGY = NatTopology({"eni-0zon": ZONAL}, {"10.0.0.77": "eni-0zon"}, CidrSet(["10.0.0.0/16"]), frozenset({REGIONAL}))


@pytest.mark.parametrize(
    ("eni", "resource", "src", "dst", "expected"),
    [
        # the contract: resource-id names the gateway whatever interface-id is; exactly one end inside counts
        ("-", REGIONAL, "10.0.32.5", "52.1.2.3", (REGIONAL, REGIONAL, "out", "10.0.32.5", "52.1.2.3")),
        ("eni-0zon", REGIONAL, "52.1.2.3", "10.0.32.5", (REGIONAL, REGIONAL, "in", "10.0.32.5", "52.1.2.3")),
        ("-", REGIONAL, "3.216.41.7", "52.1.2.3", (REGIONAL, REGIONAL, "internet", None, None)),
        ("-", REGIONAL, "10.0.32.5", "10.0.33.7", (REGIONAL, REGIONAL, "unclassified", None, None)),
        ("-", REGIONAL, "-", "52.1.2.3", (REGIONAL, REGIONAL, "unclassified", None, None)),
        # zonal: by the ENI, client legs by the NAT private IP
        ("eni-0zon", "eni-0zon", "10.0.32.5", "10.0.0.77", (ZONAL, "eni-0zon", "out", "10.0.32.5", None)),
        ("eni-0zon", "-", "10.0.0.77", "52.1.2.3", (ZONAL, "eni-0zon", "internet", None, None)),
        ("eni-0zon", "nat-0other", "10.0.32.5", "10.0.33.7", (ZONAL, "eni-0zon", "unclassified", None, None)),
        ("-", "-", "10.0.32.5", "52.1.2.3", None),
        ("eni-0node", ZONAL, "10.0.32.5", "52.1.2.3", None),  # a zonal gateway's id is not a key
    ],
)
def test_nat_record_role(eni: str, resource: str, src: str, dst: str, expected: tuple[Any, ...] | None) -> None:
    role = nat_record_role(TOPOLOGY, eni, None if resource == "-" else resource, src, dst)
    if expected is None:
        assert role is None
        return
    assert role is not None
    assert (role.nat_gateway_id, role.key, role.role, role.address, role.peer) == expected
    assert role.regional == (role.nat_gateway_id == REGIONAL)


def add(reduction: Reduction, src: str, dst: str, nbytes: int, resource: str | None = REGIONAL) -> None:
    reduction.add("-", src, dst, None, None, None, None, 1, nbytes, T0, T0 + 5, "ACCEPT", resource)


def test_regional_bytes_add_up_and_attribute_to_the_gateway() -> None:
    """Inside bytes = attributed + unattributed; the internet side and the unclassified are apart."""
    reduction = Reduction(TOPOLOGY)
    add(reduction, "10.0.32.5", "52.1.2.3", 1000)
    add(reduction, "52.1.2.3", "10.0.32.5", 7000)
    add(reduction, "3.216.41.7", "52.1.2.3", 1000)  # the same bytes on the internet side
    add(reduction, "10.0.32.5", "10.0.33.7", 300)
    stats = reduction.stats
    assert (stats.records_counted, stats.internet_leg_bytes, stats.unclassified_nat_bytes) == (2, 1000, 300)
    assert stats.unclassified_by_key == {REGIONAL: [1, 300]}
    attributor = Attributor(ClusterState(), TOPOLOGY.natgw_by_key, [ZONAL, REGIONAL], {}, "workload", 0.045)
    result = attributor.attribute(reduction)
    gateway = result.gateways[REGIONAL]
    assert (gateway.bytes_out, gateway.bytes_in, gateway.attributed_bytes) == (1000, 7000, 0)
    assert [(r.nat_gateway_id, r.workload_name, r.total_bytes) for r in result.rows] == [(REGIONAL, "10.0.32.5", 8000)]
    assert result.gateways[ZONAL].total_bytes == 0
    diagnostics = Diagnostics()
    derive_warnings(result, reduction, ClusterState(), diagnostics)
    unclassified = next(d for d in diagnostics.items if d.reason == "UnclassifiedNatRecords")
    assert REGIONAL in unclassified.message
    assert unclassified.details["gateways"] == [{"natGatewayId": REGIONAL, "records": 1, "bytes": 300}]


def test_a_regional_record_counted_for_the_gateways_own_address_is_warned() -> None:
    topology = NatTopology({}, {}, CidrSet(["10.0.0.0/16"]), frozenset({REGIONAL}), {"10.0.0.99": REGIONAL})
    reduction = Reduction(topology)
    add(reduction, "10.0.0.99", "52.1.2.3", 5000)  # as a zonal gateway's internet leg would look
    reduction.formats[("resource-id", "srcaddr", "dstaddr", "bytes")] = "test"
    attributor = Attributor(ClusterState(), topology.natgw_by_key, [REGIONAL], {}, "workload", 0.045)
    diagnostics = Diagnostics()
    derive_warnings(attributor.attribute(reduction), reduction, ClusterState(), diagnostics)
    own = next(d for d in diagnostics.items if d.reason == "RegionalNatOwnAddress")
    assert own.details == {"natGatewayId": REGIONAL, "bytes": 5000}


def test_a_format_without_resource_id_is_a_gap_only_with_a_regional_gateway() -> None:
    fields = ("interface-id", "srcaddr", "dstaddr", "packets", "bytes", "start", "action", "log-status")
    fields += ("pkt-srcaddr", "pkt-dstaddr")
    gaps = {}
    for regional in (frozenset(), frozenset({REGIONAL})):
        reduction = Reduction(NatTopology({}, {}, CidrSet(["10.0.0.0/16"]), regional))
        reduction.formats[fields] = "test format"
        attributor = Attributor(ClusterState(), reduction.topology.natgw_by_key, [], {}, "workload", 0.045)
        diagnostics = Diagnostics()
        derive_warnings(attributor.attribute(reduction), reduction, ClusterState(), diagnostics)
        gaps[bool(regional)] = [d.details.get("missing") for d in diagnostics.items if d.reason == "FormatLacksFields"]
    assert gaps == {False: [], True: [["resource-id"]]}


def test_a_flow_log_read_for_some_resources_counts_only_theirs() -> None:
    """A VPC flow log chosen for the zonal ENI may hold the regional gateway's records too: read for
    the ENI only, they are other interfaces there (and counted from the gateway's own flow log)."""
    vpc_only = TOPOLOGY.only(["eni-0zon"])
    assert (vpc_only.natgw_by_eni, vpc_only.regional, dict(vpc_only.eni_by_nat_ip)) == (
        {"eni-0zon": ZONAL},
        frozenset(),
        {"10.0.0.77": "eni-0zon"},
    )
    reduction = Reduction(vpc_only)
    add(reduction, "10.0.32.5", "52.1.2.3", 1000)
    assert (reduction.stats.other_interface_records, reduction.rows) == (1, {})
    regional_only = TOPOLOGY.only([REGIONAL])
    assert (regional_only.natgw_by_eni, regional_only.regional) == ({}, frozenset({REGIONAL}))


def test_a_regional_gateway_without_records_is_named() -> None:
    other = "nat-0regional00000002"
    topology = NatTopology({}, {}, CidrSet(["10.0.0.0/16"]), frozenset({REGIONAL, other}))
    reduction = Reduction(topology)
    add(reduction, "10.0.32.5", "52.1.2.3", 1000)
    reduction.formats[("resource-id", "srcaddr", "dstaddr", "bytes")] = "test"
    attributor = Attributor(ClusterState(), topology.natgw_by_key, [REGIONAL, other], {}, "workload", 0.045)
    diagnostics = Diagnostics()
    derive_warnings(attributor.attribute(reduction), reduction, ClusterState(), diagnostics)
    unseen = [d.details["natGatewayId"] for d in diagnostics.items if d.reason == "RegionalNatGatewayUnseen"]
    assert unseen == [other]


def test_a_regional_gateways_records_count_only_from_its_own_flow_log(tmp_path: Path) -> None:
    """The same record in a VPC flow log's object and in the regional gateway's own: counted once."""
    found = inventory(
        REGIONAL_JSON,
        ZONAL_JSON,
        flow_logs=(
            {"FlowLogId": "fl-0vpc", "ResourceId": "vpc-0a", "TrafficType": "ALL"},
            {"FlowLogId": "fl-0reg", "ResourceId": REGIONAL, "TrafficType": "ALL"},
        ),
    )
    topology = found.topology(CidrSet(["10.0.0.0/16"]))
    header = "version interface-id srcaddr dstaddr packets bytes start end action log-status resource-id"
    line = f"11 - 10.0.32.5 52.1.2.3 3 1500 {T0} {T0 + 9} ACCEPT OK {REGIONAL}"
    files = []
    for flow_log in ("fl-0vpc", "fl-0reg"):
        path = tmp_path / f"123456789012_vpcflowlogs_us-east-1_{flow_log}_20261121T1000Z_0001.log"
        path.write_text(f"{header}\n{line}\n")
        files.append(describe(str(path), FileKind.TEXT))
    groups = found.files_by_topology(topology, files)
    assert [(g.regional, [f.flow_log_id for f in group]) for g, group in groups] == [
        (frozenset(), ["fl-0vpc"]),
        (frozenset({REGIONAL}), ["fl-0reg"]),
    ]
    reduction = Reduction(topology)
    for group_topology, group in groups:
        part = Reduction(group_topology)
        read_all(group, FormatChoices(), part, Diagnostics())
        reduction.merge(part)
    assert (reduction.stats.records_counted, reduction.stats.other_interface_records) == (1, 1)
    without_own = inventory(REGIONAL_JSON, flow_logs=({"FlowLogId": "fl-0vpc", "ResourceId": "vpc-0a"},))
    assert without_own.files_by_topology(topology, files) == [(topology, files)]


def test_the_window_pipeline_plans_reads_and_joins_a_regional_gateway() -> None:
    """A VPC with a regional gateway only is planned (no zonal ENI needed), a gateway natflow cannot
    count is warned about, the regional gateway's own flow log is chosen for it (the fix named when it
    has none), and the join keys its rows by its id."""
    no_eni = {**ZONAL_JSON, "NatGatewayId": "nat-0noeni", "NatGatewayAddresses": [{"PublicIp": "3.5.5.6"}]}
    on_gateway = {"FlowLogId": "fl-0reg", "ResourceId": REGIONAL, "TrafficType": "ALL", "LogDestinationType": "s3"}
    found = inventory(REGIONAL_JSON, no_eni, flow_logs=(on_gateway,))
    diagnostics = Diagnostics()
    plan = plan_window(found, (None, None), None, diagnostics)
    assert plan.topology.natgw_by_key == {REGIONAL: REGIONAL}
    assert [(d.reason, d.details["natGatewayId"]) for d in diagnostics.items] == [("NatGatewayUnmatched", "nat-0noeni")]
    groups = flow_log_groups(found, plan, [], diagnostics)
    assert [(f.FlowLogId, keys) for f, keys in groups.groups] == [("fl-0reg", [REGIONAL])] and groups.missing == []
    missing = Diagnostics()
    flow_log_groups(inventory(REGIONAL_JSON), plan, [], missing)
    (warning,) = missing.items
    assert warning.reason == "FlowLogsMissing" and f"--resource-type RegionalNatGateway --resource-ids {REGIONAL} " in (
        warning.message
    )
    reduction = plan.new_reduction()
    add(reduction, "10.0.32.5", "52.1.2.3", 1000)
    done = attribute_reduction(plan, reduction, found, ClusterState(), WindowSettings(price_per_gb=0.045), diagnostics)
    assert [(r.nat_gateway_id, r.total_bytes) for r in done.result.rows] == [(REGIONAL, 1000)]

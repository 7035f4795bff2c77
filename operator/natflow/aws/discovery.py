"""Discover the VPC inventory live with boto3 (the same models as the offline `--aws` files)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from natflow.aws.inventory import FlowLog, Inventory, NatGateway, NetworkInterface, Vpc
from natflow.flowlogs.fields import RECOMMENDED_FORMAT


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
    paginator = client.get_paginator(operation)
    for page in paginator.paginate(**kwargs):
        yield from page.get(key, [])


def vpc_of_instances(ec2: Any, instance_ids: list[str]) -> str | None:
    """The VPC of the cluster's nodes, from their network interfaces."""
    if not instance_ids:
        return None
    filters = [{"Name": "attachment.instance-id", "Values": instance_ids[:200]}]
    for interface in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces", Filters=filters):
        if interface.get("VpcId"):
            return str(interface["VpcId"])
    return None


def describe_nat_gateways(ec2: Any, vpc_id: str, nat_gateway_ids: list[str] | None = None) -> list[NatGateway]:
    """The VPC's NAT Gateways that can carry traffic (all, or those named), zonal and regional, with
    each address's AZ (a regional gateway's set of AZs changes: describe it again each pass)."""
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    gateways = [
        NatGateway.model_validate(g)
        for g in _pages(ec2, "describe_nat_gateways", "NatGateways", Filter=vpc_filter)
        if g.get("State") in (None, "available", "pending", "deleting")
    ]
    if nat_gateway_ids:
        wanted = set(nat_gateway_ids)
        gateways = [g for g in gateways if g.NatGatewayId in wanted]
    return gateways


def discover_inventory(ec2: Any, vpc_id: str, nat_gateway_ids: list[str] | None = None) -> Inventory:
    """NAT Gateways (all of the VPC's, or those named), the VPC's CIDRs, its ENIs, its flow logs."""
    inventory = Inventory()
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    gateways = describe_nat_gateways(ec2, vpc_id, nat_gateway_ids)
    inventory.add_nat_gateways(gateways)
    inventory.add_vpcs(Vpc.model_validate(v) for v in ec2.describe_vpcs(VpcIds=[vpc_id]).get("Vpcs", []))
    inventory.add_interfaces(
        NetworkInterface.model_validate(i)
        for i in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces", Filters=vpc_filter)
    )
    nat_enis = [a.NetworkInterfaceId for g in gateways for a in g.NatGatewayAddresses if a.NetworkInterfaceId]
    subnets = sorted(
        {i.SubnetId for i in inventory.interfaces.values() if i.NetworkInterfaceId in nat_enis and i.SubnetId}
    )
    regional = [g.NatGatewayId for g in gateways if g.regional]  # a RegionalNatGateway flow log's ResourceId
    resources = [vpc_id, *subnets, *nat_enis, *regional]
    flow_logs = _pages(ec2, "describe_flow_logs", "FlowLogs", Filters=[{"Name": "resource-id", "Values": resources}])
    inventory.add_flow_logs(FlowLog.model_validate(f) for f in flow_logs)
    return inventory


def covering_flow_logs(inventory: Inventory, eni_id: str) -> list[FlowLog]:
    """Flow logs that capture an ENI: on the ENI itself, its subnet or its VPC, accepting all traffic.

    `eni_id` may also be a regional NAT Gateway's id: its flow logs are those whose ResourceId is the
    gateway (resource type RegionalNatGateway); it has no subnet."""
    gateway = inventory.nat_gateways.get(eni_id)
    if gateway is not None and gateway.regional:
        return [f for f in inventory.flow_logs.values() if f.ResourceId == eni_id and _captures(f)]
    interface = inventory.interfaces.get(eni_id)
    scopes = {eni_id}
    if interface is not None:
        scopes.update(s for s in (interface.SubnetId, interface.VpcId) if s)
    for gateway in inventory.nat_gateways.values():  # the NAT's ENI may not be listed (moto, permissions)
        if any(a.NetworkInterfaceId == eni_id for a in gateway.NatGatewayAddresses):
            scopes.update(s for s in (gateway.SubnetId, gateway.VpcId) if s)
    return [f for f in inventory.flow_logs.values() if f.ResourceId in scopes and _captures(f)]


def _captures(flow_log: FlowLog) -> bool:
    """Active, and logging the accepted traffic (what NAT Gateway bytes are)."""
    return (flow_log.TrafficType or "ALL") in ("ALL", "ACCEPT") and (flow_log.FlowLogStatus or "ACTIVE") == "ACTIVE"


def gateway_flow_logs(inventory: Inventory, gateway: NatGateway) -> list[FlowLog]:
    """Flow logs that capture a NAT Gateway: on the gateway itself (a regional gateway's flow log,
    resource type RegionalNatGateway) or covering any of its ENIs."""
    found = {
        f.FlowLogId: f for f in inventory.flow_logs.values() if f.ResourceId == gateway.NatGatewayId and _captures(f)
    }
    for address in gateway.NatGatewayAddresses:
        if address.NetworkInterfaceId:
            found.update((f.FlowLogId, f) for f in covering_flow_logs(inventory, address.NetworkInterfaceId))
    return list(found.values())


def log_stream_prefixes(inventory: Inventory, resource_id: str) -> list[str]:
    """CloudWatch Logs stream-name prefixes of a NAT ENI's, or a regional gateway's, records.

    A zonal ENI's stream is named after the ENI. How AWS names a RegionalNatGateway flow log's
    streams is not documented: natflow reads the streams named after the gateway and after each of
    its per-AZ ENIs (a stream holds one resource's records, so none is read twice)."""
    gateway = inventory.nat_gateways.get(resource_id)
    if gateway is None or not gateway.regional:
        return [resource_id]
    enis = (a.NetworkInterfaceId for a in gateway.NatGatewayAddresses if a.NetworkInterfaceId)
    return list(dict.fromkeys([resource_id, *enis]))


def create_flow_logs_commands(resource_ids: list[str], log_format: str = RECOMMENDED_FORMAT) -> list[str]:
    """The `aws ec2 create-flow-logs` commands that cover NAT ENIs (resource type NetworkInterface) and
    regional NAT Gateways (resource type RegionalNatGateway), with the format attribution needs."""
    common = (
        "--traffic-type ALL --log-destination-type s3 --log-destination arn:aws:s3:::BUCKET "
        f"--max-aggregation-interval 60 --log-format '{log_format}'"
    )
    enis = [r for r in resource_ids if not r.startswith("nat-")]
    gateways = [r for r in resource_ids if r.startswith("nat-")]
    return [
        f"aws ec2 create-flow-logs --resource-type {kind} --resource-ids {' '.join(ids)} {common}"
        for kind, ids in (("NetworkInterface", enis), ("RegionalNatGateway", gateways))
        if ids
    ]

"""Discover the VPC inventory live with boto3 (the same models as the offline `--aws` files)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from natflow.aws.inventory import FlowLog, Inventory, NatGateway, NetworkInterface, Vpc


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


def discover_inventory(ec2: Any, vpc_id: str, nat_gateway_ids: list[str] | None = None) -> Inventory:
    """NAT Gateways (all of the VPC's, or those named), the VPC's CIDRs, its ENIs, its flow logs."""
    inventory = Inventory()
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    gateways = [
        NatGateway.model_validate(g)
        for g in _pages(ec2, "describe_nat_gateways", "NatGateways", Filter=vpc_filter)
        if g.get("State") in (None, "available", "pending", "deleting")
    ]
    if nat_gateway_ids:
        wanted = set(nat_gateway_ids)
        gateways = [g for g in gateways if g.NatGatewayId in wanted]
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
    resources = [vpc_id, *subnets, *nat_enis, *(g.NatGatewayId for g in gateways)]  # regional: on the gateway
    flow_logs = _pages(ec2, "describe_flow_logs", "FlowLogs", Filters=[{"Name": "resource-id", "Values": resources}])
    inventory.add_flow_logs(FlowLog.model_validate(f) for f in flow_logs)
    return inventory


def covering_flow_logs(inventory: Inventory, eni_id: str) -> list[FlowLog]:
    """Flow logs that capture an ENI: on the ENI itself, its subnet or its VPC, accepting all traffic."""
    interface = inventory.interfaces.get(eni_id)
    scopes = {eni_id}
    if interface is not None:
        scopes.update(s for s in (interface.SubnetId, interface.VpcId) if s)
    for gateway in inventory.nat_gateways.values():  # the NAT's ENI may not be listed (moto, permissions)
        if any(a.NetworkInterfaceId == eni_id for a in gateway.NatGatewayAddresses):
            scopes.update(s for s in (gateway.SubnetId, gateway.VpcId) if s)
    return [f for f in inventory.flow_logs.values() if f.ResourceId in scopes and _active(f)]


def gateway_flow_logs(inventory: Inventory, gateway: NatGateway) -> list[FlowLog]:
    """Flow logs that capture a NAT Gateway: on the gateway itself (a regional gateway's flow log,
    resource type RegionalNatGateway) or covering any of its ENIs."""
    found = {
        f.FlowLogId: f for f in inventory.flow_logs.values() if f.ResourceId == gateway.NatGatewayId and _active(f)
    }
    for address in gateway.NatGatewayAddresses:
        if address.NetworkInterfaceId:
            found.update((f.FlowLogId, f) for f in covering_flow_logs(inventory, address.NetworkInterfaceId))
    return list(found.values())


def _active(flow_log: FlowLog) -> bool:
    return (flow_log.TrafficType or "ALL") in ("ALL", "ACCEPT") and (flow_log.FlowLogStatus or "ACTIVE") == "ACTIVE"


def create_flow_logs_command(resource_type: str, resource_ids: list[str], log_format: str) -> str:
    """The AWS CLI command that creates a flow log natflow can read, to S3."""
    return (
        f"aws ec2 create-flow-logs --resource-type {resource_type} --resource-ids {' '.join(resource_ids)} "
        "--traffic-type ALL --log-destination-type s3 --log-destination arn:aws:s3:::BUCKET "
        f"--max-aggregation-interval 60 --log-format '{log_format}'"
    )

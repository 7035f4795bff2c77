"""AWS describe-* outputs as pydantic models, and the inventory natflow builds from them.

The AWS CLI's JSON and boto3's response dictionaries use the same member names, so one set of
models reads both (the offline command's files and the operator's live calls). Unknown members
are ignored: AWS adds fields often.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from natflow.cluster.state import InterfaceAddresses
from natflow.diagnostics import Diagnostics
from natflow.flowlogs import fields
from natflow.flowlogs.fields import FormatError, parse_log_format
from natflow.flowlogs.reduce import NatTopology
from natflow.flowlogs.sources import FlowLogFile
from natflow.net import CidrSet

# A real flow log's id; a destination configured in a FlowReport has a placeholder id instead.
_FLOW_LOG_ID = re.compile(r"^fl-[0-9a-zA-Z]+$")
CONFIGURED_FLOW_LOG_ID = "configured"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class NatGatewayAddress(_Model):
    NetworkInterfaceId: str | None = None
    PrivateIp: str | None = None
    PublicIp: str | None = None
    IsPrimary: bool | None = None
    # A regional gateway's address: the AZ where this EIP handles outbound traffic (no PrivateIp).
    AvailabilityZone: str | None = None
    AvailabilityZoneId: str | None = None
    Status: str | None = None


class NatGateway(_Model):
    NatGatewayId: str
    VpcId: str | None = None
    SubnetId: str | None = None
    State: str | None = None
    ConnectivityType: str | None = None
    AvailabilityMode: str | None = None  # zonal (also when absent) | regional
    NatGatewayAddresses: list[NatGatewayAddress] = Field(default_factory=list)

    @property
    def regional(self) -> bool:
        """A regional NAT Gateway: found in flow logs by resource-id, not by ENI and private IP."""
        return (self.AvailabilityMode or "").lower() == "regional"

    def availability_zones(self) -> list[tuple[str | None, str | None]]:
        """The (AZ, AZ id) pairs its addresses serve, in order: a regional gateway's set changes over
        time (it expands and contracts with the subnets), so it is read from each describe."""
        zones = ((a.AvailabilityZone, a.AvailabilityZoneId) for a in self.NatGatewayAddresses)
        return list(dict.fromkeys(zone for zone in zones if zone != (None, None)))


class BlockState(_Model):
    State: str | None = None


class CidrBlockAssociation(_Model):
    CidrBlock: str | None = None
    CidrBlockState: BlockState | None = None


class Ipv6CidrBlockAssociation(_Model):
    Ipv6CidrBlock: str | None = None


class Vpc(_Model):
    VpcId: str
    CidrBlock: str | None = None
    CidrBlockAssociationSet: list[CidrBlockAssociation] = Field(default_factory=list)
    Ipv6CidrBlockAssociationSet: list[Ipv6CidrBlockAssociation] = Field(default_factory=list)

    def cidrs(self) -> list[str]:
        found = [self.CidrBlock] if self.CidrBlock else []
        for assoc in self.CidrBlockAssociationSet:
            state = assoc.CidrBlockState.State if assoc.CidrBlockState else None
            if assoc.CidrBlock and state not in ("disassociated", "failed"):
                found.append(assoc.CidrBlock)
        found.extend(a.Ipv6CidrBlock for a in self.Ipv6CidrBlockAssociationSet if a.Ipv6CidrBlock)
        return list(dict.fromkeys(found))


class PrivateIpEntry(_Model):
    PrivateIpAddress: str | None = None
    Primary: bool | None = None


class Ipv4Prefix(_Model):
    Ipv4Prefix: str | None = None


class Ipv6Prefix(_Model):
    Ipv6Prefix: str | None = None


class Ipv6Address(_Model):
    Ipv6Address: str | None = None


class InterfaceAttachment(_Model):
    InstanceId: str | None = None
    DeviceIndex: int | None = None
    NetworkCardIndex: int | None = None


class NetworkInterface(_Model):
    NetworkInterfaceId: str
    Description: str | None = None
    InterfaceType: str | None = None
    VpcId: str | None = None
    SubnetId: str | None = None
    AvailabilityZone: str | None = None
    PrivateIpAddress: str | None = None
    PrivateIpAddresses: list[PrivateIpEntry] = Field(default_factory=list)
    Ipv4Prefixes: list[Ipv4Prefix] = Field(default_factory=list)
    Ipv6Prefixes: list[Ipv6Prefix] = Field(default_factory=list)
    Ipv6Addresses: list[Ipv6Address] = Field(default_factory=list)
    Attachment: InterfaceAttachment | None = None
    RequesterId: str | None = None
    OwnerId: str | None = None

    def addresses(self) -> list[str]:
        found = [self.PrivateIpAddress] if self.PrivateIpAddress else []
        found += [p.PrivateIpAddress for p in self.PrivateIpAddresses if p.PrivateIpAddress]
        found += [a.Ipv6Address for a in self.Ipv6Addresses if a.Ipv6Address]
        return list(dict.fromkeys(found))

    def prefixes(self) -> list[str]:
        return [p.Ipv4Prefix for p in self.Ipv4Prefixes if p.Ipv4Prefix] + [
            p.Ipv6Prefix for p in self.Ipv6Prefixes if p.Ipv6Prefix
        ]


class FlowLogDestinationOptions(_Model):
    FileFormat: str | None = None
    HiveCompatiblePartitions: bool | None = None
    PerHourPartition: bool | None = None


class FlowLog(_Model):
    FlowLogId: str
    ResourceId: str | None = None
    LogFormat: str | None = None
    LogDestinationType: str | None = None
    LogDestination: str | None = None
    LogGroupName: str | None = None
    FlowLogStatus: str | None = None
    TrafficType: str | None = None
    MaxAggregationInterval: int | None = None
    DestinationOptions: FlowLogDestinationOptions | None = None

    def log_format(self) -> fields.LogFormat | None:
        if not self.LogFormat:
            return None
        try:
            return parse_log_format(self.LogFormat, f"flow log {self.FlowLogId} LogFormat")
        except FormatError:
            return None

    @property
    def names_objects(self) -> bool:
        """Whether delivered objects carry this flow log's id (false for a destination given in a spec)."""
        return _FLOW_LOG_ID.match(self.FlowLogId) is not None

    @property
    def destination_type(self) -> str:
        return (self.LogDestinationType or "cloud-watch-logs").lower()


@dataclass(frozen=True, slots=True)
class AddressOwner:
    """What AWS says about the ENI that owns an address (for unattributed rows)."""

    interface_id: str
    description: str | None
    instance_id: str | None
    interface_type: str | None

    def as_dict(self) -> dict[str, str]:
        found = {"interfaceId": self.interface_id}
        if self.description:
            found["description"] = self.description
        if self.instance_id:
            found["instanceId"] = self.instance_id
        if self.interface_type:
            found["interfaceType"] = self.interface_type
        return found


@dataclass
class Inventory:
    """The VPC as natflow needs it."""

    nat_gateways: dict[str, NatGateway] = field(default_factory=dict)
    vpcs: dict[str, Vpc] = field(default_factory=dict)
    interfaces: dict[str, NetworkInterface] = field(default_factory=dict)
    flow_logs: dict[str, FlowLog] = field(default_factory=dict)

    def add_nat_gateways(self, items: Iterable[NatGateway]) -> None:
        for item in items:
            self.nat_gateways[item.NatGatewayId] = item

    def add_vpcs(self, items: Iterable[Vpc]) -> None:
        for item in items:
            self.vpcs[item.VpcId] = item

    def add_interfaces(self, items: Iterable[NetworkInterface]) -> None:
        for item in items:
            self.interfaces[item.NetworkInterfaceId] = item

    def add_flow_logs(self, items: Iterable[FlowLog]) -> None:
        for item in items:
            self.flow_logs[item.FlowLogId] = item

    def vpc_cidrs(self) -> list[str]:
        """CIDRs of the NAT Gateways' VPCs (all VPCs described when the NAT's VPC is unknown)."""
        nat_vpcs = {n.VpcId for n in self.nat_gateways.values() if n.VpcId}
        chosen = [v for v in self.vpcs.values() if not nat_vpcs or v.VpcId in nat_vpcs]
        return [cidr for vpc in chosen for cidr in vpc.cidrs()]

    def topology(self, inside: CidrSet) -> NatTopology:
        natgw_by_eni: dict[str, str] = {}
        eni_by_ip: dict[str, str] = {}
        regional = frozenset(g.NatGatewayId for g in self.nat_gateways.values() if g.regional)
        for gateway in self.nat_gateways.values():
            if gateway.regional:  # found by resource-id: its ENIs and addresses match no record
                continue
            for address in gateway.NatGatewayAddresses:
                if address.NetworkInterfaceId:
                    natgw_by_eni[address.NetworkInterfaceId] = gateway.NatGatewayId
                    if address.PrivateIp:
                        eni_by_ip[address.PrivateIp] = address.NetworkInterfaceId
        # A NAT ENI's other private IPs (from describe-network-interfaces) are NAT IPs too.
        for eni_id in list(natgw_by_eni):
            interface = self.interfaces.get(eni_id)
            if interface is not None:
                for private_ip in interface.addresses():
                    eni_by_ip.setdefault(private_ip, eni_id)
        return NatTopology(
            natgw_by_eni=natgw_by_eni,
            eni_by_nat_ip=eni_by_ip,
            inside=inside,
            regional=regional,
            regional_nat_ips=self.regional_private_ips(),
        )

    def files_by_topology(
        self, topology: NatTopology, files: Iterable[FlowLogFile]
    ) -> list[tuple[NatTopology, list[FlowLogFile]]]:
        """Files with the topology to read them with, so that a regional gateway's records are counted
        only from its own flow log (resource type RegionalNatGateway) when it has one: another flow log
        (a VPC's) might hold them too. One group, the whole topology, when no regional gateway has one."""
        own = {f.FlowLogId: f.ResourceId for f in self.flow_logs.values() if f.ResourceId in topology.regional}
        if not own:
            return [(topology, list(files))]
        others = topology.only([*topology.natgw_by_eni, *(topology.regional - set(own.values()))])
        groups: dict[str | None, list[FlowLogFile]] = {}
        for file in files:
            groups.setdefault(file.flow_log_id if file.flow_log_id in own else None, []).append(file)
        return [
            (others if flow_log is None else topology.only([str(own[flow_log])]), group)
            for flow_log, group in groups.items()
        ]

    def regional_private_ips(self) -> dict[str, str]:
        """Private IPs of regional gateways' ENIs (when AWS lists any) -> the gateway: an inside address
        that is one of them contradicts the assumption that a regional record's ends are the client
        and the final destination."""
        found: dict[str, str] = {}
        for gateway in self.nat_gateways.values():
            if not gateway.regional:
                continue
            for address in gateway.NatGatewayAddresses:
                if address.PrivateIp:
                    found.setdefault(address.PrivateIp, gateway.NatGatewayId)
                interface = self.interfaces.get(address.NetworkInterfaceId or "")
                for private_ip in interface.addresses() if interface is not None else ():
                    found.setdefault(private_ip, gateway.NatGatewayId)
        return found

    def unmatched_gateways(self) -> dict[str, str]:
        """Gateways whose records natflow cannot find or classify -> why (they would show 0 bytes).

        A zonal gateway is found by its ENIs and its client legs are told by its private IPs; a
        regional gateway needs neither (its records are found by resource-id)."""
        problems: dict[str, str] = {}
        for gateway in self.nat_gateways.values():
            if gateway.regional:
                continue
            enis = [a.NetworkInterfaceId for a in gateway.NatGatewayAddresses if a.NetworkInterfaceId]
            if not enis:
                problems[gateway.NatGatewayId] = "its NatGatewayAddresses list no NetworkInterfaceId"
                continue
            private_ips = [a.PrivateIp for a in gateway.NatGatewayAddresses if a.PrivateIp]
            private_ips += [ip for eni in enis if (i := self.interfaces.get(eni)) is not None for ip in i.addresses()]
            if not private_ips:
                problems[gateway.NatGatewayId] = (
                    "neither its NatGatewayAddresses nor describe-network-interfaces give a private IP of "
                    f"its ENI(s) {', '.join(enis)}, so its client legs cannot be told from its internet legs"
                )
        return problems

    def warn_unmatched_gateways(self, diagnostics: Diagnostics) -> None:
        """A `NatGatewayUnmatched` warning for each gateway natflow cannot count (never a silent 0)."""
        for gateway_id, why in sorted(self.unmatched_gateways().items()):
            diagnostics.warn(
                "NatGatewayUnmatched",
                f"NAT Gateway {gateway_id}: {why}; its bytes cannot be counted and it shows 0 (describe it "
                "again with ec2:DescribeNatGateways and ec2:DescribeNetworkInterfaces permissions)",
                natGatewayId=gateway_id,
            )

    def instance_interfaces(self) -> dict[str, list[InterfaceAddresses]]:
        """ENIs attached to instances, by instance id, for the nodes' address ownership."""
        by_instance: dict[str, list[InterfaceAddresses]] = {}
        for interface in self.interfaces.values():
            attachment = interface.Attachment
            if attachment is None or not attachment.InstanceId:
                continue
            primary_ip = interface.PrivateIpAddress
            secondary = tuple(a for a in interface.addresses() if a != primary_ip)
            by_instance.setdefault(attachment.InstanceId, []).append(
                InterfaceAddresses(
                    interface_id=interface.NetworkInterfaceId,
                    primary_interface=(attachment.DeviceIndex or 0) == 0 and not attachment.NetworkCardIndex,
                    primary_ip=primary_ip,
                    secondary_ips=secondary,
                    prefixes=tuple(interface.prefixes()),
                )
            )
        return by_instance

    def address_owners(self) -> dict[str, AddressOwner]:
        owners: dict[str, AddressOwner] = {}
        for interface in self.interfaces.values():
            owner = AddressOwner(
                interface_id=interface.NetworkInterfaceId,
                description=interface.Description,
                instance_id=interface.Attachment.InstanceId if interface.Attachment else None,
                interface_type=interface.InterfaceType,
            )
            for address in interface.addresses():
                owners[address] = owner
        return owners

    def region(self) -> str | None:
        for interface in self.interfaces.values():
            if interface.AvailabilityZone:
                return interface.AvailabilityZone.rstrip("abcdefghijklmnopqrstuvwxyz") or None
        return None

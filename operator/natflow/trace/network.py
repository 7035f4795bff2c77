"""The VPC as trace needs it: what each interface is, which NAT gateway it belongs to, its zone,
which flow logs cover it, and who owns each inside address (from the natflow inventory)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from natflow.aws.discovery import covering_flow_logs
from natflow.aws.inventory import Inventory, NatGateway
from natflow.flowlogs.fields import RECOMMENDED_FORMAT
from natflow.net import CidrSet

POD_ENI = "pod-eni"
NODE_ENI = "node-eni"
NAT_GATEWAY = "nat-gateway"
REGIONAL_NAT_GATEWAY = "regional-nat-gateway"
OTHER = "other"
MAX_REMEMBERED = 1 << 20
# What a regional gateway's flow log should carry beyond the recommended format (issue 12).
TRACE_FORMAT = f"{RECOMMENDED_FORMAT} ${{tcp-flags}} ${{az-id}} ${{reject-reason}} ${{resource-id}}"


def regional_gateway(gateway: NatGateway) -> bool:
    """A regional NAT Gateway (issue 12): by its AvailabilityMode, or, in output written before that
    member existed, by having no subnet and no private IP on any address."""
    if gateway.AvailabilityMode:
        return gateway.regional
    addresses = gateway.NatGatewayAddresses
    return not gateway.SubnetId and bool(addresses) and not any(a.PrivateIp for a in addresses)


@dataclass(frozen=True)
class Gateway:
    id: str
    regional: bool
    enis: tuple[str, ...]
    public_of_private: Mapping[str, str]  # zonal: private IP -> public IP
    public_ips: frozenset[str]
    zone: str | None  # zonal: its zone's name
    zone_id: str | None
    public_zone_ids: Mapping[str, str]  # regional: public IP -> az-id


@dataclass(frozen=True)
class Interface:
    id: str
    kind: str
    zone: str | None
    gateway_id: str | None


@dataclass
class Network:
    inside: CidrSet
    interfaces: dict[str, Interface] = field(default_factory=dict)
    gateways: dict[str, Gateway] = field(default_factory=dict)
    nat_ips: dict[str, str] = field(default_factory=dict)  # NAT private IP -> its ENI
    address_eni: dict[str, str | None] = field(default_factory=dict)  # address -> the ENI that owns it
    prefix_eni: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(default_factory=list)
    zone_ids: dict[str, str] = field(default_factory=dict)  # zone name -> az-id, where known
    inventory: Inventory = field(default_factory=Inventory)

    def interface(self, interface_id: str) -> Interface:
        return self.interfaces.get(interface_id) or Interface(interface_id, OTHER, None, None)

    def eni_of_address(self, address: str) -> str | None:
        if address in self.address_eni:
            return self.address_eni[address]
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return None
        found = next((eni for network, eni in self.prefix_eni if parsed in network), None)
        if len(self.address_eni) < MAX_REMEMBERED:  # remembered: the same few addresses recur in every record
            self.address_eni[address] = found
        return found

    def nat_addresses(self) -> list[str]:
        """The gateways' own addresses: zonal private IPs and regional public IPs (their internet legs' ends)."""
        regional = [ip for g in self.gateways.values() if g.regional for ip in g.public_ips]
        return [*self.nat_ips, *regional]

    def is_inside(self, address: str | None) -> bool:
        return address is not None and address in self.inside

    def zone_id(self, zone: str | None) -> str | None:
        return self.zone_ids.get(zone) if zone else None

    @property
    def flow_logs_known(self) -> bool:
        return bool(self.inventory.flow_logs)

    def covered(self, resource: str) -> bool:
        """Whether a flow log captures an ENI (or, for a regional gateway, the gateway)."""
        if resource in self.gateways and self.gateways[resource].regional:
            return any(f.ResourceId == resource for f in self.inventory.flow_logs.values())
        return bool(covering_flow_logs(self.inventory, resource))

    def create_command(self, resource: str) -> str:
        """The `aws ec2 create-flow-logs` command that would log a resource, with the destination of
        an existing flow log of the VPC where there is one."""
        regional = resource in self.gateways and self.gateways[resource].regional
        kind = "RegionalNatGateway" if regional else "NetworkInterface"
        destination = "--log-destination-type s3 --log-destination arn:aws:s3:::BUCKET"
        for flow_log in self.inventory.flow_logs.values():
            if flow_log.destination_type == "s3" and flow_log.LogDestination:
                destination = f"--log-destination-type s3 --log-destination {flow_log.LogDestination}"
                break
            if flow_log.LogGroupName:
                destination = (
                    f"--log-destination-type cloud-watch-logs --log-group-name {flow_log.LogGroupName} "
                    "--deliver-logs-permission-arn ROLE_ARN"
                )
                break
        return (
            f"aws ec2 create-flow-logs --resource-type {kind} --resource-ids {resource} --traffic-type ALL "
            f"{destination} --max-aggregation-interval 60 --log-format '{TRACE_FORMAT}'"
        )


def build_network(inventory: Inventory, inside: CidrSet, node_instances: Iterable[str]) -> Network:
    """The network from the inventory; interfaces of `node_instances` are node ENIs, branch ENIs pod
    ENIs, any other one `other`."""
    network = Network(inside=inside, inventory=inventory)
    nodes = set(node_instances)
    for nat in inventory.nat_gateways.values():
        regional = regional_gateway(nat)
        addresses = nat.NatGatewayAddresses
        enis = tuple(dict.fromkeys(a.NetworkInterfaceId for a in nat.NatGatewayAddresses if a.NetworkInterfaceId))
        zone = next((inventory.interfaces[e].AvailabilityZone for e in enis if e in inventory.interfaces), None)
        zone_id = None
        for address in addresses:
            if address.AvailabilityZone and address.AvailabilityZoneId:
                network.zone_ids[address.AvailabilityZone] = address.AvailabilityZoneId
                if not regional:
                    zone, zone_id = address.AvailabilityZone, address.AvailabilityZoneId
        network.gateways[nat.NatGatewayId] = Gateway(
            id=nat.NatGatewayId,
            regional=regional,
            enis=enis,
            public_of_private={a.PrivateIp: a.PublicIp for a in nat.NatGatewayAddresses if a.PrivateIp and a.PublicIp},
            public_ips=frozenset(a.PublicIp for a in nat.NatGatewayAddresses if a.PublicIp),
            zone=None if regional else zone,
            zone_id=None if regional else zone_id,
            public_zone_ids={
                a.PublicIp: a.AvailabilityZoneId for a in addresses if a.PublicIp and a.AvailabilityZoneId
            },
        )
        kind = REGIONAL_NAT_GATEWAY if regional else NAT_GATEWAY
        for eni in enis:
            eni_zone = inventory.interfaces[eni].AvailabilityZone if eni in inventory.interfaces else zone
            network.interfaces[eni] = Interface(eni, kind, eni_zone, nat.NatGatewayId)
        for entry in nat.NatGatewayAddresses:
            if entry.PrivateIp and entry.NetworkInterfaceId:
                network.nat_ips[entry.PrivateIp] = entry.NetworkInterfaceId
    for eni in list(network.interfaces):  # a NAT ENI's other private IPs are NAT IPs too
        described = inventory.interfaces.get(eni)
        if described is not None:
            for private_ip in described.addresses():
                network.nat_ips.setdefault(private_ip, eni)
    for described in inventory.interfaces.values():
        eni = described.NetworkInterfaceId
        if eni not in network.interfaces:
            instance = described.Attachment.InstanceId if described.Attachment else None
            interface_type = (described.InterfaceType or "").lower()
            if interface_type == "branch" or (described.Description or "").startswith("aws-k8s-branch-eni"):
                kind = POD_ENI
            elif instance and instance in nodes:
                kind = NODE_ENI
            else:
                kind = OTHER
            network.interfaces[eni] = Interface(eni, kind, described.AvailabilityZone, None)
        for owned in described.addresses():
            network.address_eni.setdefault(owned, eni)
        for prefix in described.prefixes():
            try:
                network.prefix_eni.append((ipaddress.ip_network(prefix, strict=False), eni))
            except ValueError:
                continue
    return network

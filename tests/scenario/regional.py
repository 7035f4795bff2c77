"""The generator's hour with a regional NAT Gateway in place of the zonal gateway of AZ b.

Built on `tests.scenario.generator` (same VPC, cluster and talkers), and, like it, without natflow's
code. The zonal gateway of AZ a stays as it is. The regional gateway (``AvailabilityMode`` regional,
an address per AZ with its ENI and no private IP, no subnet) has its own flow log, of resource type
RegionalNatGateway, in a version 11 format. Its records follow the contract natflow is tested
against (issue 12): ``interface-id`` is ``-`` and ``resource-id`` is the gateway's id; a connection
is one record inside -> destination and one destination -> inside (the client side, counted for
the inside address) plus one record each way between the gateway's public IP of the sender's AZ
and the destination (the internet side: both ends outside the VPC, tallied only). Some records of
the gateway have both ends inside the VPC, or no source address: they fit neither and are counted
apart. The gateway also has REJECTs and a SKIPDATA record.

    scenario = build_regional_scenario(tmp_path, seed=7, snat="off", flow_format="text")
    scenario.expected()
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Literal

from tests.scenario.generator import (
    BASE_TIME,
    BUCKET,
    CDN,
    DAY_SECONDS,
    S3_FIELDS,
    AcceptedFields,
    FlowDraw,
    FlowRecord,
    Gateway,
    Ids,
    RecordMaker,
    Scenario,
    SnatMode,
    Subnet,
    Talker,
    Vpc,
    aws_time,
    build_cluster,
    build_talkers,
    build_vpc,
    draw_flow,
    log_format,
    write_aws,
    write_cluster,
    write_s3,
)

RegionalFormat = Literal["text", "parquet"]

# The regional gateway's flow log: the S3 flow log's fields and those of versions 9 to 11.
V9_TO_V11 = (
    "resource-id", "encryption-status", "interface-type", "next-hop-interface-id", "next-hop-subnet-id",
    "next-hop-az-id", "next-hop-vpc-id", "next-hop-interface-type", "instance-tag", "instance-tag-2",
    "interface-tag", "interface-tag-2", "asg-tag", "asg-tag-2",
)  # fmt: skip
REGIONAL_FIELDS = (*S3_FIELDS, *V9_TO_V11)
INT32_FIELDS = frozenset(
    {"version", "srcport", "dstport", "protocol", "tcp-flags", "traffic-path", "encryption-status"}
)
INT64_FIELDS = frozenset({"packets", "bytes", "start", "end"})
# Percent-encoded tag values, as AWS writes them ("team=shop" -> "team%3Dshop").
TAGS = {"interface-tag": "team%3Dplatform", "asg-tag": "eks%3Anodegroup%2Dname%3Dprod%2Db"}


@dataclasses.dataclass(frozen=True)
class RegionalGateway:
    gateway: Gateway  # its id and public IPs (no private IP, no subnet of its own)
    enis: dict[str, str]  # AZ id -> the ENI of its address there
    public_ip: dict[str, str]  # AZ id -> the address's public IP
    flow_log: str


def _regional_gateway(vpc: Vpc, ids: Ids) -> RegionalGateway:
    zones = {subnet.az_id: subnet for subnet in vpc.subnets.values()}
    public = {"use1-az1": "3.216.50.11", "use1-az2": "44.198.60.21"}
    gateway_id = ids.aws("nat")
    enis = {zone: ids.aws("eni") for zone in sorted(zones)}
    gateway = Gateway(gateway_id, "prod-nat-regional", enis["use1-az2"], vpc.subnets["public-b"], (),
                      tuple(public[z] for z in sorted(zones)))  # fmt: skip
    return RegionalGateway(gateway, enis, public, ids.aws("fl"))


class RegionalRecords:
    """The contract's records of a regional gateway, added to a RecordMaker."""

    def __init__(self, maker: RecordMaker, regional: RegionalGateway) -> None:
        self.maker, self.regional = maker, regional

    def _add(self, role: Any, subnet: Subnet, start: int, end: int, **fields: Any) -> FlowRecord:
        gateway = self.regional.gateway
        record = self.maker._add(
            role, "-", subnet, None, start, end, gateway.id, resource_id=gateway.id, version=11,
            encryption_status=0, interface_type="regional_nat_gateway", **fields,
        )  # fmt: skip
        record.values.update({name: record.values.get(name) for name in V9_TO_V11 if name not in record.values})
        record.values.update(TAGS)
        record.values["vpc-id"], record.values["subnet-id"] = self.maker.vpc.id, None  # no subnet of its own
        return record

    def connection(self, talker: Talker, draw: FlowDraw) -> None:
        """Client side (counted) and internet side (tallied), two records each, and the sender's own two."""
        dest = draw.destination
        inside, interface, sender = talker.seen_as(dest, self.maker.snat, draw.start)
        zone = interface.subnet.az_id
        public_ip = self.regional.public_ip[zone]
        tcp = dest.protocol == 6
        packets_out, packets_in = draw.bytes_out // 1200 + 2, draw.bytes_in // 1400 + 2
        common = AcceptedFields(type="IPv4", protocol=dest.protocol, action="ACCEPT")
        start, end, lag = draw.start, draw.end, draw.internet_lag
        next_hop = {"next_hop_az_id": zone, "next_hop_vpc_id": self.maker.vpc.id}
        out = self._add(
            "client", interface.subnet, start, end, srcaddr=inside, dstaddr=dest.address, srcport=draw.client_port,
            dstport=dest.port, packets=packets_out, bytes=draw.bytes_out, tcp_flags=3 if tcp else 0,
            pkt_srcaddr=inside, pkt_dstaddr=dest.address, pkt_dst_aws_service=dest.service, flow_direction="ingress",
            az_id=zone, next_hop_interface_id=interface.id, next_hop_interface_type="interface", **next_hop, **common,
        )  # fmt: skip
        out.direction, out.shares = "out", ((sender, 1),)
        for src, dst, sport, dport, packets, nbytes, direction in (
            (public_ip, dest.address, draw.nat_port, dest.port, packets_out, draw.bytes_out, "egress"),
            (dest.address, public_ip, dest.port, draw.nat_port, packets_in, draw.bytes_in, "ingress"),
        ):
            self._add(
                "internet", interface.subnet, start + lag, end + lag, srcaddr=src, dstaddr=dst, srcport=sport,
                dstport=dport, packets=packets, bytes=nbytes, tcp_flags=19 if tcp else 0, pkt_srcaddr=src,
                pkt_dstaddr=dst, flow_direction=direction, az_id=zone, traffic_path=8, **common,
            )  # fmt: skip
        back = self._add(
            "client", interface.subnet, start + lag, end + lag, srcaddr=dest.address, dstaddr=inside,
            srcport=dest.port, dstport=draw.client_port, packets=packets_in, bytes=draw.bytes_in,
            tcp_flags=19 if tcp else 0, pkt_srcaddr=dest.address, pkt_dstaddr=inside,
            pkt_src_aws_service=dest.service, flow_direction="egress", az_id=zone,
            next_hop_interface_id=interface.id, next_hop_interface_type="interface", **next_hop, **common,
        )  # fmt: skip
        back.direction, back.shares = "in", ((sender, 1),)
        own, instance = interface.subnet, talker.instance_id
        for src, dst, nbytes, packets, direction in (
            (inside, dest.address, draw.bytes_out, packets_out, "egress"),
            (dest.address, inside, draw.bytes_in, packets_in, "ingress"),
        ):
            self.maker._add(
                "other", interface.id, own, instance, start, end, srcaddr=src, dstaddr=dst, srcport=draw.client_port,
                dstport=dest.port, packets=packets, bytes=nbytes, pkt_srcaddr=src, pkt_dstaddr=dst,
                flow_direction=direction, **common,
            )  # fmt: skip

    def unfit(self, subnet: Subnet, source: str | None, destination: str, nbytes: int, start: int) -> None:
        """A record of the gateway that fits neither side (both ends inside, or no source)."""
        self._add(
            "unclassified", subnet, start, start + 3, srcaddr=source, dstaddr=destination, srcport=41_000,
            dstport=443, protocol=6, packets=nbytes // 1000 + 1, bytes=nbytes, action="ACCEPT", type="IPv4",
            az_id=subnet.az_id,
        )  # fmt: skip


def build_regional_records(vpc: Vpc, talkers: list[Talker], regional: RegionalGateway, snat: SnatMode,
                           rng: random.Random) -> list[FlowRecord]:  # fmt: skip
    maker = RecordMaker(vpc, snat)
    nat_a, nat_b = vpc.gateways
    records = RegionalRecords(maker, regional)
    for talker in talkers:
        rate = talker.flows_per_minute
        for minute in talker.minutes:
            count = int(rate) + (1 if rng.random() < rate - int(rate) else 0)
            for _ in range(count):
                draw = draw_flow(rng, talker, minute)  # the zonal gateway's draw: the same random stream
                if talker.gateway is nat_b:
                    records.connection(dataclasses.replace(talker, gateway=regional.gateway), draw)
                else:
                    maker.connection(talker, draw)
    private_b = vpc.subnets["private-b"]
    for minute in range(0, 60, 7):  # both ends inside (node to Lambda ENI), or no source: fit neither
        start = BASE_TIME + minute * 60 + rng.randint(0, 50)
        records.unfit(private_b, vpc.nodes["b1"].primary_ip, vpc.lambda_eni.primary_ip, rng.randint(500, 90_000), start)
    records.unfit(private_b, None, CDN.address, 4_321, BASE_TIME + 33 * 60 + 5)
    for minute in range(60):  # internet scanners: REJECT, on both gateways
        if rng.random() < 0.2:
            source = f"{rng.choice((45, 80, 185))}.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            start = BASE_TIME + minute * 60 + rng.randint(0, 50)
            maker.reject(nat_a, source, nat_a.private_ips[0], 22, rng.randint(1, 3), start)
            records._add("reject", private_b, start, start + 2, srcaddr=source, dstaddr=regional.public_ip["use1-az2"],
                         srcport=40_022, dstport=22, protocol=6, packets=1, bytes=44, action="REJECT", type="IPv4")  # fmt: skip
    for minute in (12, 48):
        maker.status_only("SKIPDATA", nat_a.eni, nat_a.subnet, None, nat_a.id, minute)
    records._add("skipdata", private_b, BASE_TIME + 20 * 60, BASE_TIME + 20 * 60 + 59, log_status="SKIPDATA")
    return maker.records


def _regional_json(regional: RegionalGateway, vpc: Vpc, ids: Ids) -> dict[str, Any]:
    """DescribeNatGateways' entry for the regional gateway (EC2 API NatGateway, AvailabilityMode regional)."""
    zones = {subnet.az_id: subnet.az for subnet in vpc.subnets.values()}
    return {
        "CreateTime": aws_time(BASE_TIME - 30 * DAY_SECONDS), "NatGatewayId": regional.gateway.id,
        "State": "available", "VpcId": vpc.id, "ConnectivityType": "public", "AvailabilityMode": "regional",
        "AutoProvisionZones": "enabled", "AutoScalingIps": "enabled", "RouteTableId": ids.aws("rtb"),
        "Tags": [{"Key": "Name", "Value": regional.gateway.name}],
        "NatGatewayAddresses": [{
            "AllocationId": ids.aws("eipalloc"), "AssociationId": ids.aws("eipassoc"), "IsPrimary": index == 0,
            "NetworkInterfaceId": regional.enis[zone], "PublicIp": regional.public_ip[zone],
            "AvailabilityZone": zones[zone], "AvailabilityZoneId": zone, "Status": "succeeded",
        } for index, zone in enumerate(sorted(regional.enis))],
    }  # fmt: skip


def write_regional_aws(directory: Path, vpc: Vpc, regional: RegionalGateway, flow_format: RegionalFormat,
                       ids: Ids) -> None:  # fmt: skip
    """The generator's AWS files, with AZ b's zonal gateway (and its ENI) replaced by the regional one
    and its RegionalNatGateway flow log added."""
    write_aws(directory, vpc, flow_format, "default", ids)
    nat_b = vpc.gateways[1]
    gateways = json.loads((directory / "describe-nat-gateways.json").read_text())
    gateways["NatGateways"] = [g for g in gateways["NatGateways"] if g["NatGatewayId"] != nat_b.id]
    gateways["NatGateways"].append(_regional_json(regional, vpc, ids))
    (directory / "describe-nat-gateways.json").write_text(json.dumps(gateways, indent=4) + "\n")
    interfaces = json.loads((directory / "describe-network-interfaces.json").read_text())
    interfaces["NetworkInterfaces"] = [
        i for i in interfaces["NetworkInterfaces"] if i["NetworkInterfaceId"] != nat_b.eni
    ]
    (directory / "describe-network-interfaces.json").write_text(json.dumps(interfaces, indent=4) + "\n")
    flow_logs = json.loads((directory / "describe-flow-logs.json").read_text())
    flow_logs["FlowLogs"].append({
        "CreationTime": aws_time(BASE_TIME - 30 * DAY_SECONDS), "DeliverLogsStatus": "SUCCESS",
        "FlowLogId": regional.flow_log, "FlowLogStatus": "ACTIVE", "ResourceId": regional.gateway.id,
        "TrafficType": "ALL", "LogDestinationType": "s3", "LogDestination": f"arn:aws:s3:::{BUCKET}",
        "LogFormat": log_format(REGIONAL_FIELDS), "Tags": [], "MaxAggregationInterval": 60,
        "DestinationOptions": {"FileFormat": "parquet" if flow_format == "parquet" else "plain-text",
                               "HiveCompatiblePartitions": False, "PerHourPartition": False},
    })  # fmt: skip
    (directory / "describe-flow-logs.json").write_text(json.dumps(flow_logs, indent=4) + "\n")


def build_regional_scenario(out_dir: Path, *, seed: int, snat: SnatMode = "off",
                            flow_format: RegionalFormat = "text") -> Scenario:  # fmt: skip
    """Write cluster/, aws/ and flowlogs/ under `out_dir`; the scenario's gateways are AZ a's zonal one
    and the regional one, and `expected()` is its answer."""
    cluster_dir, aws_dir, flowlogs_dir = out_dir / "cluster", out_dir / "aws", out_dir / "flowlogs"
    ids = Ids(random.Random(f"natflow-regional-{seed}-ids"))
    vpc = build_vpc(ids)
    cluster = build_cluster(vpc, ids)
    talkers = build_talkers(vpc, cluster)
    regional = _regional_gateway(vpc, ids)
    records = build_regional_records(vpc, talkers, regional, snat, random.Random(f"natflow-regional-{seed}-flows"))
    write_cluster(cluster_dir, vpc, cluster, snat)
    write_regional_aws(aws_dir, vpc, regional, flow_format, ids)
    files_rng = random.Random(f"natflow-regional-{seed}-files")
    on_gateway = [r for r in records if r.gateway == regional.gateway.id]
    elsewhere = [r for r in records if r.gateway != regional.gateway.id]
    files = write_s3(flowlogs_dir, vpc, elsewhere, flow_format, "default", files_rng)
    files += write_s3(
        flowlogs_dir, vpc, on_gateway, flow_format, "default", files_rng, REGIONAL_FIELDS, regional.flow_log
    )
    answered = dataclasses.replace(vpc, gateways=(vpc.gateways[0], regional.gateway))
    return Scenario(out_dir, cluster_dir, aws_dir, flowlogs_dir, seed, snat, flow_format, "default", 1.0, False,
                    answered, cluster, records, files)  # fmt: skip

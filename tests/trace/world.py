"""Small trace scenarios with known answers, built on the scenario generator's VPC and cluster.

The generator writes the VPC (two zonal NAT gateways, four nodes), the cluster and the AWS CLI
outputs; here each scenario adds the records of a few connections of one pod, with the twist the
scenario is about (replies through the other gateway, a REJECT on the pod's ENI, no replies, node
ENIs without a flow log, node SNAT, a regional gateway). The expected legs are the records written.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.scenario.generator import (
    ACCOUNT,
    BASE_TIME,
    REGION,
    S3_FIELDS,
    FlowRecord,
    Gateway,
    Ids,
    Pod,
    RecordMaker,
    Vpc,
    build_cluster,
    build_vpc,
    log_format,
    write_aws,
    write_cluster,
)

REMOTE = "140.82.112.4"  # GitHub
REGIONAL_ID = "nat-0regional000000001"
REGIONAL_PUBLIC = {"us-east-1a": ("35.170.0.10", "use1-az1"), "us-east-1b": ("35.170.0.20", "use1-az2")}
# The regional gateway's flow log adds what it needs to the generator's format (issue 12).
REGIONAL_FIELDS = (*S3_FIELDS, "reject-reason", "resource-id")
FIELDS_WITH_REASON = (*S3_FIELDS, "reject-reason")


@dataclass
class Connection:
    """One connection of the pod to REMOTE:443 and how its records should look."""

    minute: int
    bytes_out: int = 12_000
    bytes_in: int = 900_000
    client_port: int = 40_001
    nat_port: int = 20_001
    back_gateway: Gateway | None = None  # replies through another gateway
    reply: bool = True
    reject_on_pod_eni: bool = False  # the pod's security group drops the replies
    node_eni_logged: bool = True
    internet_bytes_out: int | None = None  # a different count on the internet leg (BytesDiffer)


@dataclass
class TraceWorld:
    root: Path
    vpc: Vpc
    pod: Pod
    snat: str
    records: list[FlowRecord] = field(default_factory=list)

    @property
    def args(self) -> list[str]:
        return [
            "trace",
            "--cluster",
            str(self.root / "cluster"),
            "--aws",
            str(self.root / "aws"),
            "--flow-logs",
            str(self.root / "flowlogs"),
            "-o",
            "json",
        ]


def build_world(root: Path, seed: int = 3, snat: str = "off", pod: str = "kafka-1") -> tuple[TraceWorld, RecordMaker]:
    ids = Ids(random.Random(f"trace-{seed}"))
    vpc = build_vpc(ids)
    cluster = build_cluster(vpc, ids)
    write_cluster(root / "cluster", vpc, cluster, snat)  # type: ignore[arg-type]
    write_aws(root / "aws", vpc, "text", "default", ids)
    return TraceWorld(root, vpc, cluster.pods[pod], snat), RecordMaker(vpc, snat)  # type: ignore[arg-type]


def add_connection(world: TraceWorld, maker: RecordMaker, connection: Connection) -> None:
    """The six records of AWS's NAT example, changed as `connection` says."""
    pod = world.pod
    node = pod.node
    inside = node.primary_ip if world.snat == "on" else pod.ip
    out_gateway = node.gateway
    back_gateway = connection.back_gateway or out_gateway
    start = BASE_TIME + connection.minute * 60 + 5
    packets_out, packets_in = connection.bytes_out // 1200 + 2, connection.bytes_in // 1400 + 2
    out_ip, back_ip = out_gateway.private_ips[0], back_gateway.private_ips[0]
    client, nat, eni = connection.client_port, connection.nat_port, node.interfaces[0]
    internet_out = connection.internet_bytes_out or connection.bytes_out
    reply_action = "REJECT" if connection.reject_on_pod_eni else "ACCEPT"
    # (logged on: None = the node's ENI, else the gateway; role; src, dst, ports, packets, bytes, flags,
    #  pkt-src, pkt-dst, flow-direction, action)
    out: list[tuple[Any, ...]] = [
        (None, "other", inside, REMOTE, client, 443, packets_out, connection.bytes_out, 2, inside, REMOTE, "egress",
         "ACCEPT"),
        (out_gateway, "client", inside, out_ip, client, 443, packets_out, connection.bytes_out, 2, inside, REMOTE,
         "ingress", "ACCEPT"),
        (out_gateway, "internet", out_ip, REMOTE, nat, 443, packets_out, internet_out, 2, out_ip, REMOTE, "egress",
         "ACCEPT"),
    ]  # fmt: skip
    back: list[tuple[Any, ...]] = [
        (back_gateway, "internet", REMOTE, back_ip, 443, nat, packets_in, connection.bytes_in, 18, REMOTE, back_ip,
         "ingress", "ACCEPT"),
        (back_gateway, "client", back_ip, inside, 443, client, packets_in, connection.bytes_in, 18, REMOTE, inside,
         "egress", "ACCEPT"),
        (None, "other", REMOTE, inside, 443, client, packets_in, connection.bytes_in, 18, REMOTE, inside, "ingress",
         reply_action),
    ]  # fmt: skip
    for gateway, role, src, dst, sport, dport, packets, nbytes, flags, pkt_src, pkt_dst, direction, action in (
        out + back if connection.reply else out
    ):
        if gateway is None and not connection.node_eni_logged:
            continue
        interface, subnet = (eni.id, node.subnet) if gateway is None else (gateway.eni, gateway.subnet)
        maker._add(role, interface, subnet, node.instance_id if gateway is None else None, start, start + 30,
                   gateway.id if gateway else None, srcaddr=src, dstaddr=dst, srcport=sport, dstport=dport,
                   packets=packets, bytes=nbytes, tcp_flags=flags, pkt_srcaddr=pkt_src, pkt_dstaddr=pkt_dst,
                   flow_direction=direction, type="IPv4", protocol=6, action=action)  # fmt: skip


def add_regional_connection(
    world: TraceWorld, maker: RecordMaker, minute: int, bytes_out: int, bytes_in: int, zone: str
) -> None:
    """A connection through the regional gateway: resource-id names it, interface-id is '-', its inside
    legs go from the pod straight to the remote, its internet legs from its public IP of `zone`."""
    pod = world.pod
    public, zone_id = REGIONAL_PUBLIC[zone]
    start = BASE_TIME + minute * 60 + 7
    end = start + 20
    packets_out, packets_in = bytes_out // 1200 + 2, bytes_in // 1400 + 2
    subnet = world.vpc.subnets["public-a"]

    def leg(src: str, dst: str, sport: int, dport: int, packets: int, nbytes: int) -> None:
        record = maker._add(
            "client",
            "-",
            subnet,
            None,
            start,
            end,
            REGIONAL_ID,
            srcaddr=src,
            dstaddr=dst,
            srcport=sport,
            dstport=dport,
            packets=packets,
            bytes=nbytes,
            type="IPv4",
            protocol=6,
            action="ACCEPT",
            pkt_srcaddr=src,
            pkt_dstaddr=dst,
            resource_id=REGIONAL_ID,
        )
        record.values["az-id"] = zone_id

    leg(pod.ip, REMOTE, 41_000 + minute, 443, packets_out, bytes_out)
    leg(public, REMOTE, 30_000 + minute, 443, packets_out, bytes_out)
    leg(REMOTE, public, 443, 30_000 + minute, packets_in, bytes_in)
    leg(REMOTE, pod.ip, 443, 41_000 + minute, packets_in, bytes_in)


def write_flow_logs(
    world: TraceWorld, records: Sequence[FlowRecord], fields: Sequence[str] = FIELDS_WITH_REASON, name: str = "0001"
) -> Path:
    """One S3 text object with its header, named by its records' first end time, as AWS delivers it
    (a test's records lie within one object's five minutes)."""
    directory = world.root / "flowlogs" / "AWSLogs" / ACCOUNT / "vpcflowlogs" / REGION / "2026" / "11" / "20"
    directory.mkdir(parents=True, exist_ok=True)
    first_end = min(record.end for record in records)
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(first_end - first_end % 300))
    path = directory / f"{ACCOUNT}_vpcflowlogs_{REGION}_fl-0trace{name}_{stamp}_{name}abcd.log.gz"
    for record in records:  # fields the generator's records do not carry: '-'
        for name in fields:
            record.values.setdefault(name, None)
    lines = [" ".join(fields), *(record.line(fields) for record in sorted(records, key=lambda r: r.start))]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    world.records.extend(records)
    return path


def set_flow_logs(world: TraceWorld, resources: Sequence[tuple[str, str]]) -> None:
    """describe-flow-logs with one S3 flow log per (resource id, resource type) instead of the VPC's."""
    path = world.root / "aws" / "describe-flow-logs.json"
    flow_logs = [
        {
            "FlowLogId": f"fl-0trace{index:04d}",
            "FlowLogStatus": "ACTIVE",
            "ResourceId": resource,
            "TrafficType": "ALL",
            "LogDestinationType": "s3",
            "LogDestination": "arn:aws:s3:::acme-flow-logs",
            "LogFormat": log_format(REGIONAL_FIELDS if kind == "RegionalNatGateway" else FIELDS_WITH_REASON),
        }
        for index, (resource, kind) in enumerate(resources)
    ]
    path.write_text(json.dumps({"FlowLogs": flow_logs}))


def add_regional_gateway(world: TraceWorld) -> None:
    """A regional gateway in describe-nat-gateways: AvailabilityMode, no subnet, no private IPs."""
    path = world.root / "aws" / "describe-nat-gateways.json"
    document = json.loads(path.read_text())
    document["NatGateways"].append(
        {
            "NatGatewayId": REGIONAL_ID,
            "VpcId": world.vpc.id,
            "State": "available",
            "AvailabilityMode": "regional",
            "ConnectivityType": "public",
            "NatGatewayAddresses": [
                {
                    "AllocationId": f"eipalloc-0r{index}",
                    "NetworkInterfaceId": f"eni-0regional{index:08d}",
                    "PublicIp": ip,
                    "AvailabilityZone": zone,
                    "AvailabilityZoneId": zone_id,
                    "Status": "succeeded",
                }
                for index, (zone, (ip, zone_id)) in enumerate(REGIONAL_PUBLIC.items())
            ],
        }
    )
    path.write_text(json.dumps(document))

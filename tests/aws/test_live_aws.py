"""Discovery and window reads through real boto3 calls against moto (in process; no network).

Aspects: the inventory from describe-* calls equals what the offline files give; only the NAT
Gateway's flow logs are found; S3 prefixes per layout; a window reads only its objects; CloudWatch
events of the NAT ENI streams are reduced like a file.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from natflow.aws.discovery import covering_flow_logs, discover_inventory
from natflow.aws.flowsource import read_cloudwatch_window, read_s3_objects, s3_prefixes, window_objects
from natflow.aws.inventory import FlowLog
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.reduce import Reduction
from natflow.net import CidrSet
from natflow.timeutil import parse_time

REGION, ACCOUNT = "us-east-1", "123456789012"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="100.64.0.0/16")
        public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=allocation)["NatGateway"]["NatGatewayId"]
        other_vpc = ec2.create_vpc(CidrBlock="192.168.0.0/16")["Vpc"]["VpcId"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="flows")
        s3.create_bucket(Bucket="other")
        ec2.create_flow_logs(
            ResourceIds=[vpc],
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="s3",
            LogDestination="arn:aws:s3:::flows",
        )  # moto reads a prefix as part of the bucket
        ec2.create_flow_logs(
            ResourceIds=[other_vpc],
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="s3",
            LogDestination="arn:aws:s3:::other",
        )
        yield {"ec2": ec2, "s3": s3, "vpc": vpc, "nat": nat, "logs": boto3.client("logs", region_name=REGION)}


def test_discovery_finds_the_nat_gateway_cidrs_and_flow_log(aws: dict[str, Any]) -> None:
    inventory = discover_inventory(aws["ec2"], aws["vpc"])
    assert list(inventory.nat_gateways) == [aws["nat"]]
    assert inventory.vpc_cidrs() == ["10.0.0.0/16", "100.64.0.0/16"]
    topology = inventory.topology(CidrSet(inventory.vpc_cidrs()))
    (eni,) = topology.natgw_by_eni
    (flow_log,) = covering_flow_logs(inventory, eni)
    assert flow_log.LogDestination == "arn:aws:s3:::flows"
    assert discover_inventory(aws["ec2"], aws["vpc"], ["nat-0000000000000000f"]).nat_gateways == {}


def test_s3_prefixes_follow_the_layout() -> None:
    start, end = parse_time("2026-11-21T23:30:00Z"), parse_time("2026-11-21T23:45:00Z")
    plain = FlowLog(FlowLogId="fl-1", LogDestination="arn:aws:s3:::b/p")
    assert list(s3_prefixes(plain, ACCOUNT, REGION, start, end)) == [
        f"p/AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/2026/11/21/",
        f"p/AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/2026/11/22/",  # objects named after midnight
    ]
    hive = FlowLog.model_validate(
        {
            "FlowLogId": "fl-1",
            "LogDestination": "arn:aws:s3:::b",
            "DestinationOptions": {"HiveCompatiblePartitions": True, "PerHourPartition": True},
        }
    )
    assert next(s3_prefixes(hive, ACCOUNT, REGION, start, end)) == (
        f"AWSLogs/aws-account-id={ACCOUNT}/aws-service=vpcflowlogs/aws-region={REGION}/year=2026/month=11/day=21/hour=23/"
    )


def test_a_window_reads_only_its_objects(aws: dict[str, Any]) -> None:
    inventory = discover_inventory(aws["ec2"], aws["vpc"])
    topology = inventory.topology(CidrSet(inventory.vpc_cidrs()))
    (eni,) = topology.natgw_by_eni
    (nat_ip,) = topology.eni_by_nat_ip
    (flow_log,) = covering_flow_logs(inventory, eni)
    header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"

    def put(stamp: str, start: int, nbytes: int) -> None:
        record = f"2 {ACCOUNT} {eni} 10.0.1.5 {nat_ip} 1 443 6 1 {nbytes} {start} {start + 59} ACCEPT OK"
        body = gzip.compress(f"{header}\n{record}\n".encode())
        day = f"{stamp[:4]}/{stamp[4:6]}/{stamp[6:8]}"
        key = f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{day}/{ACCOUNT}_vpcflowlogs_{REGION}_{flow_log.FlowLogId}_{stamp}_ab.log.gz"
        aws["s3"].put_object(Bucket="flows", Key=key, Body=body)

    window = (parse_time("2026-11-21T10:00:00Z"), parse_time("2026-11-21T10:15:00Z"))
    put("20261121T1005Z", window[0] + 60, 100)  # in the window
    put("20261121T1015Z", window[0] + 600, 20)  # delivered later, still starts in the window
    put("20261121T0900Z", window[0] - 3600, 7)  # an hour before: not fetched
    put("20261120T1005Z", window[0] - 86400, 5)  # the day before: not listed
    reduction = Reduction(topology, window)
    objects = window_objects(aws["s3"], flow_log, ACCOUNT, REGION, window)
    assert read_s3_objects(aws["s3"], flow_log, objects, FormatChoices(), reduction, Diagnostics()) == 2
    assert sum(v[0] for v in reduction.rows.values()) == 120


def test_cloudwatch_events_of_the_nat_eni_streams(aws: dict[str, Any]) -> None:
    inventory = discover_inventory(aws["ec2"], aws["vpc"])
    topology = inventory.topology(CidrSet(inventory.vpc_cidrs()))
    (eni,) = topology.natgw_by_eni
    (nat_ip,) = topology.eni_by_nat_ip
    logs = aws["logs"]
    logs.create_log_group(logGroupName="flows")
    logs.create_log_stream(logGroupName="flows", logStreamName=f"{eni}-all")
    # CloudWatch Logs (and moto) refuse events older than 14 days: a quarter hour that began an hour ago.
    start = (int(time.time()) // 900 - 4) * 900
    message = f"2 {ACCOUNT} {eni} 10.0.1.5 {nat_ip} 1 443 6 1 300 {start} {start + 59} ACCEPT OK"
    logs.put_log_events(
        logGroupName="flows", logStreamName=f"{eni}-all", logEvents=[{"timestamp": start * 1000, "message": message}]
    )
    reduction = Reduction(topology)
    count = read_cloudwatch_window(logs, "flows", [eni], (start, start + 900), FormatChoices(), reduction)
    assert count == 1 and sum(v[0] for v in reduction.rows.values()) == 300

"""`natflow trace` live: the cluster from a real API server (kubeconfig), the VPC and the flow logs
from moto (boto3), the objects of the window fetched from S3 by their key prefixes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from natflow.timeutil import format_time
from tests.harness.kubeapi import KubeAPI
from tests.harness.motoserver import MotoServer
from tests.integration.world import ACCOUNT, FLOW_FIELDS, REGION, prepared_world

pytestmark = pytest.mark.integration
NATFLOW = str(Path(sys.executable).with_name("natflow"))
POD, REMOTE = "10.0.1.5", "140.82.112.4"


def put_object(world: dict[str, Any], start: int, lines: list[str]) -> None:
    """One S3 object of the flow log, named and placed as AWS delivers it."""
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(start))
    day = time.strftime("%Y/%m/%d", time.gmtime(start))
    key = (
        f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{day}/{ACCOUNT}_vpcflowlogs_{REGION}_{world['flow_log']}_"
        f"{stamp}_5e6f7a8b.log.gz"
    )
    world["s3"].put_object(
        Bucket="flows", Key=key, Body=gzip.compress(("\n".join([FLOW_FIELDS, *lines]) + "\n").encode())
    )


@pytest.fixture(scope="module")
def world(kubeapi: KubeAPI, moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    with prepared_world(kubeapi, moto_server, "trace", "ip-node-trace") as (_, aws):
        now = int(time.time())
        start = now - 600
        eni, nat = aws["eni"], aws["nat_ip"]

        def line(src: str, dst: str, sport: int, dport: int, nbytes: int, pkt_src: str, pkt_dst: str) -> str:
            return (
                f"2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} 6 {nbytes // 1000 + 1} {nbytes} {start} "
                f"{start + 30} ACCEPT OK {pkt_src} {pkt_dst}"
            )

        aws["lines"] = lines = [
            line(POD, nat, 40001, 443, 2_000, POD, REMOTE),  # the pod's inside leg out
            line(nat, REMOTE, 20001, 443, 2_000, nat, REMOTE),  # the gateway's internet leg out
            line(REMOTE, nat, 443, 20001, 90_000, REMOTE, nat),  # and back
            line(nat, POD, 443, 40001, 90_000, REMOTE, POD),  # to the pod
            line("10.0.9.9", nat, 40002, 443, 777, "10.0.9.9", REMOTE),  # someone else's
        ]
        put_object(aws, start, lines)
        aws["window"] = (start - 60, now + 60)
        aws["start"] = start
        yield aws


def trace(kubeapi: KubeAPI, moto: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **moto.env(), "KUBECONFIG": str(kubeapi.kubeconfig)}
    return subprocess.run([NATFLOW, "trace", *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_pod_traced_live(kubeapi: KubeAPI, moto_server: MotoServer, world: dict[str, Any]) -> None:
    start, end = world["window"]
    done = trace(
        kubeapi,
        moto_server,
        "--pod",
        "trace/web-7d9f-abcde",
        "--start",
        format_time(start),
        "--end",
        format_time(end),
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert document["subject"] == {"kind": "pod", "name": "trace/web-7d9f-abcde", "addresses": [POD]}
    [conversation] = document["conversations"]
    assert (conversation["inside"], conversation["remote"], conversation["remotePort"]) == (POD, REMOTE, 443)
    assert conversation["holder"] == {"kind": "pod", "name": "web-7d9f-abcde", "namespace": "trace"}
    assert conversation["out"] == {"natGatewayIds": [world["nat"]], "bytes": 2_000, "packets": 3}
    assert conversation["back"] == {"natGatewayIds": [world["nat"]], "bytes": 90_000, "packets": 91}
    assert [(leg["role"], leg["direction"]) for leg in conversation["legs"]] == [
        ("nat-inside", "out"),
        ("nat-internet", "out"),
        ("nat-internet", "back"),
        ("nat-inside", "back"),
    ]
    public = world["ec2"].describe_nat_gateways(NatGatewayIds=[world["nat"]])["NatGateways"][0]
    assert conversation["translations"] == [
        {"where": "natGateway", "from": world["nat_ip"], "to": public["NatGatewayAddresses"][0]["PublicIp"]}
    ]
    assert conversation["findings"] == []  # the VPC's flow log covers the node's and the gateway's ENIs
    assert document["stats"]["filesRead"] == 1


def test_an_address_nobody_holds_and_a_pod_that_does_not_exist(
    kubeapi: KubeAPI, moto_server: MotoServer, world: dict[str, Any]
) -> None:
    start, end = world["window"]
    window = ["--start", format_time(start), "--end", format_time(end)]
    done = trace(kubeapi, moto_server, "--address", "10.0.9.9", *window, "-o", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    [conversation] = json.loads(done.stdout)["conversations"]
    assert conversation["holder"]["kind"] == "unattributed"
    assert conversation["out"]["bytes"] == 777
    assert {f["reason"] for f in conversation["findings"]} == {"NoReturnTraffic"}
    missing = trace(kubeapi, moto_server, "--pod", "trace/nobody", *window)
    assert missing.returncode == 2
    assert "no pod of that name" in missing.stderr


def test_the_same_flow_log_in_cloudwatch_logs(kubeapi: KubeAPI, moto_server: MotoServer, world: dict[str, Any]) -> None:
    """Delivered to CloudWatch Logs instead (the S3 flow log deleted): the NAT ENI's stream of the
    window, the format from describe-flow-logs, the same conversation."""
    ec2, logs = world["ec2"], world["logs"]
    ec2.delete_flow_logs(FlowLogIds=[world["flow_log"]])
    logs.create_log_group(logGroupName="trace-cw")
    ec2.create_flow_logs(
        ResourceIds=[world["vpc"]], ResourceType="VPC", TrafficType="ALL", LogDestinationType="cloud-watch-logs",
        LogGroupName="trace-cw", DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT}:role/flow-logs",
        LogFormat=" ".join(f"${{{field}}}" for field in FLOW_FIELDS.split()),
    )  # fmt: skip
    stream = f"{world['eni']}-all"
    logs.create_log_stream(logGroupName="trace-cw", logStreamName=stream)
    events = [{"timestamp": world["start"] * 1000, "message": line} for line in world["lines"]]
    logs.put_log_events(logGroupName="trace-cw", logStreamName=stream, logEvents=events)
    start, end = world["window"]
    done = trace(kubeapi, moto_server, "--pod", "trace/web-7d9f-abcde", "--start", format_time(start),
                 "--end", format_time(end), "-o", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [conversation] = json.loads(done.stdout)["conversations"]
    assert conversation["out"]["bytes"] == 2_000 and conversation["back"]["bytes"] == 90_000
    assert len(conversation["legs"]) == 4

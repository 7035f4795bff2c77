"""The real `natflow run --once` process against a real kube-apiserver and moto in server mode.

Aspects: CRDs apply and FlowAttributions come out per workload/node/address with the exact bytes
of the flow logs placed in moto's S3; the operator runs as user `natflow` bound only to the
ClusterRole in manifests/rbac.yaml (so the RBAC is enough); running the same window again counts
nothing twice; deleting the FlowReport garbage-collects its FlowAttributions; a bad spec is reported
in status, not crashed on. (kube-apiserver 1.20 ignores CEL rules and drops status.hostIPs; natflow
does not rely on either.)
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import kubernetes
import pytest

from natflow.aws.athena import FlowLogTable, reduction_sql
from natflow.aws.discovery import covering_flow_logs, discover_inventory
from natflow.net import CidrSet
from natflow.timeutil import format_time
from tests.harness.athena_engine import athena_engine, canned, duckdb_rows, post
from tests.harness.faultproxy import FaultProxy
from tests.harness.kubeapi import KubeAPI
from tests.harness.motoserver import MotoServer
from tests.integration.world import (
    ACCOUNT,
    FLOW_FIELDS,
    GROUP,
    REGION,
    VERSION,
    create_job_and_reuse,
    create_report,
    flow_report,
    prepared_world,
    put_flow_logs,
    put_log_events,
)

pytestmark = pytest.mark.integration

NATFLOW = str(Path(sys.executable).with_name("natflow"))
# What the flow logs of `world` give, by (workload kind, name, source): (bytesOut, bytesIn).
EXPECTED = {
    ("Deployment", "web", "pod"): (1000, 5000),
    ("Node", "ip-node-1", "hostNetwork"): (300, 0),
    ("IP", "10.0.9.9", "unattributed"): (70, 0),
    ("CronJob", "report", "pod"): (111, 0),
    ("Pod", "debug", "pod"): (222, 0),
}


@pytest.fixture(scope="module")
def world(kubeapi: KubeAPI, moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    """One cluster and one AWS account for the module, and a window around now.

    The API server stamps the Node's creationTimestamp now and natflow counts a node's addresses
    from its creation, so the window must come after it (with --once any window may be given).
    """
    with prepared_world(kubeapi, moto_server, "shop", "ip-node-1") as (api, aws):
        now = int(time.time()) + 1
        window = (now - 60, now + 840)
        create_job_and_reuse(api, "shop", "ip-node-1", window)
        aws["window"] = window
        nat_ip = aws["nat_ip"]
        aws["records"] = [
            ("10.0.1.5", nat_ip, "52.1.1.1", 1000, 60),
            (nat_ip, "10.0.1.5", "52.1.1.1", 5000, 60),  # the pod
            (nat_ip, "52.1.1.1", "52.1.1.1", 6000, 60),
            ("52.1.1.1", nat_ip, "52.1.1.1", 6000, 60),  # internet legs
            (aws["node_ip"], nat_ip, "54.2.2.2", 300, 60),  # the node itself
            ("10.0.9.9", nat_ip, "54.3.3.3", 70, 60),  # nobody we know
            ("10.0.1.7", nat_ip, "54.4.4.4", 111, 0),  # the Job pod, before it finished
            ("10.0.1.7", nat_ip, "54.4.4.4", 222, 240),  # the next holder of its IP
        ]
        put_flow_logs(aws, window, aws["records"])
        yield aws


def run_once(
    kubeapi: KubeAPI, moto: MotoServer, window: tuple[int, int], store: Path, endpoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`natflow run --once` over `window`, as the natflow user; it must exit 0."""
    env = {
        **os.environ,
        **moto.env(),
        "KUBECONFIG": str(kubeapi.user_kubeconfig()),
        "NATFLOW_NAMESPACE": "natflow-system",
        "NATFLOW_STORE": str(store),
        "NATFLOW_AWS_MAX_ATTEMPTS": "2",
        **({"AWS_ENDPOINT_URL": endpoint} if endpoint else {}),
    }
    done = subprocess.run(
        [NATFLOW, "run", "--once", "--window", f"{format_time(window[0])}/{format_time(window[1])}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def attributions(
    api: kubernetes.client.ApiClient, report: str = "default"
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """The report's FlowAttributions, by (workload kind, name, source): (bytesOut, bytesIn)."""
    custom = kubernetes.client.CustomObjectsApi(api)
    items = custom.list_cluster_custom_object(
        GROUP, VERSION, "flowattributions", label_selector=f"natflow.io/report={report}"
    )["items"]
    return {
        (i["spec"]["workload"]["kind"], i["spec"]["workload"]["name"], i["spec"]["source"]): (
            i["spec"]["bytesOut"],
            i["spec"]["bytesIn"],
        )
        for i in items
    }


def test_once_writes_attributions_idempotently_and_they_are_garbage_collected(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    create_report(custom, "default", {})

    run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
    expected = EXPECTED
    assert attributions(kube_client) == expected
    report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "default")
    (gateway,) = report["status"]["natGateways"]
    assert (gateway["natGatewayId"], gateway["bytesOut"], gateway["bytesIn"]) == (world["nat"], 1703, 5000)
    ready = {c["type"]: c["status"] for c in report["status"]["conditions"]}
    assert ready["Ready"] == "True" and ready["SNATHidesPodIPs"] == "False"
    in_shop = custom.list_namespaced_custom_object(GROUP, VERSION, "shop", "flowattributions")["items"]
    web = next(i for i in in_shop if i["spec"]["workload"]["name"] == "web")
    assert {i["spec"]["workload"]["name"] for i in in_shop} == {"web", "report", "debug"}  # teams read their own
    assert web["spec"]["topDestinations"] == [{"destination": "52.1.1.1", "bytes": 6000}]

    run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
    assert attributions(kube_client) == expected  # the same window twice counts once

    custom.delete_cluster_custom_object(GROUP, VERSION, "flowreports", "default")
    for _ in range(100):
        if not attributions(kube_client):
            break
        time.sleep(0.3)
    assert attributions(kube_client) == {}


def test_bad_spec_is_reported_in_status(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    with flow_report(custom, "bad", {"logFormat": "${srcaddr} ${srcaddr}"}):
        run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
        report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "bad")
        conditions = {c["type"]: c for c in report["status"]["conditions"]}
        assert conditions["InvalidSpec"]["status"] == "True"
        assert "a field appears twice" in conditions["InvalidSpec"]["message"]
        assert conditions["Ready"]["status"] == "False"


@pytest.mark.parametrize(
    ("action", "code", "reason"),
    [
        ("DescribeNetworkInterfaces", "UnauthorizedOperation", "AWSAccessDenied"),
        ("DescribeNatGateways", "RequestLimitExceeded", "AWSError"),
    ],
)
def test_aws_errors_become_conditions_and_the_window_is_retried(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
    action: str,
    code: str,
    reason: str,
) -> None:
    """Access denied and throttling (after the SDK's retries) are reported, not crashed on; the
    next pass with AWS answering again writes the window."""
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    name = f"errors-{reason.lower()}"
    with flow_report(custom, name, {}):
        with FaultProxy(moto_server.endpoint_url) as proxy:
            proxy.fail(action, code)
            done = run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite", proxy.endpoint_url)
            assert proxy.failed[action] >= 1
            report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", name)
            conditions = {c["type"]: c for c in report["status"]["conditions"]}
            assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == reason
            assert code in conditions["Ready"]["message"]
            assert conditions["AWSAccessDenied"]["status"] == ("True" if reason == "AWSAccessDenied" else "False")
            events = kubernetes.client.CoreV1Api(kube_client).list_namespaced_event(
                "default", field_selector=f"involvedObject.name={name}"
            )
            assert reason in {e.reason for e in events.items}, done.stderr[-2000:]
            owned = [
                i
                for i in custom.list_cluster_custom_object(GROUP, VERSION, "flowattributions")["items"]
                if i["spec"]["report"] == name
            ]
            assert owned == []

            proxy.clear()
            done = run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite", proxy.endpoint_url)
        report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", name)
        assert {c["type"]: c["status"] for c in report["status"]["conditions"]}["Ready"] == "True"
        owned = [
            i
            for i in custom.list_cluster_custom_object(GROUP, VERSION, "flowattributions")["items"]
            if i["spec"]["report"] == name
        ]
        assert owned, done.stdout[-3000:]


def test_above_the_threshold_athena_reduces_the_window(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    """spec.athena with a 0-byte threshold: the window goes through Athena (moto, answering with what the
    report's SQL gives on DuckDB over the same objects) and the attributions equal the S3 path's."""
    inventory = discover_inventory(world["ec2"], world["vpc"])
    topology = inventory.topology(CidrSet(inventory.vpc_cidrs()))
    (flow_log,) = covering_flow_logs(inventory, world["eni"])
    account = next(i.OwnerId for i in inventory.interfaces.values() if i.OwnerId)
    table = FlowLogTable(flow_log, "natflow", account, "us-east-1")
    files = []
    for entry in world["s3"].list_objects_v2(Bucket="flows")["Contents"]:
        local = tmp_path / "objects" / entry["Key"]
        local.parent.mkdir(parents=True, exist_ok=True)
        world["s3"].download_file("flows", entry["Key"], str(local))
        files.append(local)
    rows = duckdb_rows(athena_engine(table, files), reduction_sql(table, topology, world["window"]))
    assert rows, "the SQL finds the window's rows on DuckDB"
    # moto hands canned results out in the order queries start: CREATE DATABASE, CREATE TABLE, the query.
    results = [canned([]), canned([]), canned(rows)]
    post(moto_server, "/moto-api/static/athena/query-results", {"results": results})

    custom = kubernetes.client.CustomObjectsApi(kube_client)
    athena = {"thresholdBytes": 0, "database": "natflow", "outputLocation": "s3://athena-results/natflow/"}
    with flow_report(custom, "athena", {"athena": athena}):
        run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
        report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "athena")
        assert report["status"]["athena"]["lastQueryId"] and not report["status"]["athena"].get("error")
        assert {c["type"]: c["status"] for c in report["status"]["conditions"]}["AthenaFailed"] == "False"
        assert attributions(kube_client, "athena") == EXPECTED


def test_a_nat_gateway_without_flow_logs_is_a_condition_with_the_fix(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    ec2 = world["ec2"]
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"])
    nat_id, eni = nat["NatGateway"]["NatGatewayId"], nat["NatGateway"]["NatGatewayAddresses"][0]["NetworkInterfaceId"]
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    with flow_report(custom, "unlogged", {"natGatewayIds": [nat_id]}):
        run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
        report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "unlogged")
        missing = {c["type"]: c for c in report["status"]["conditions"]}["FlowLogsMissing"]
        assert missing["status"] == "True"
        assert f"aws ec2 create-flow-logs --resource-type NetworkInterface --resource-ids {eni}" in missing["message"]
        events = (
            kubernetes.client.CoreV1Api(kube_client)
            .list_namespaced_event("default", field_selector="involvedObject.name=unlogged")
            .items
        )
        assert "FlowLogsMissing" in {e.reason for e in events}


def test_cloudwatch_logs_source(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The same records delivered to CloudWatch Logs give the same attributions (filter_log_events on the
    NAT ENI's stream, the format from spec.logFormat since the messages have no header)."""
    put_log_events(world, "flows-cw", world["window"], world["records"])
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    log_format = " ".join(f"${{{field}}}" for field in FLOW_FIELDS.split())
    source = {"source": "cloudwatch", "cloudwatch": {"logGroupName": "flows-cw"}}
    with flow_report(custom, "cloudwatch", {"flowLogs": source, "logFormat": log_format}):
        run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
        assert attributions(kube_client, "cloudwatch") == EXPECTED


# -- a regional NAT Gateway ------------------------------------------------------------------------------
def as_regional(gateway_id: str, zone: str, zone_id: str) -> Callable[[bytes], bytes]:
    """A DescribeNatGateways answer rewritten as AWS describes a regional gateway (moto has no
    AvailabilityMode): no subnet, AvailabilityMode regional, each address with its AZ and no private IP."""

    def change(body: bytes) -> bytes:
        root = ElementTree.fromstring(body)
        tag = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""  # the EC2 API's namespace
        ElementTree.register_namespace("", tag[1:-1])
        for item in root.iter(f"{tag}item"):
            if item.findtext(f"{tag}natGatewayId") != gateway_id:
                continue
            for subnet in item.findall(f"{tag}subnetId"):
                item.remove(subnet)
            ElementTree.SubElement(item, f"{tag}availabilityMode").text = "regional"
            for address in item.iterfind(f"{tag}natGatewayAddressSet/{tag}item"):
                for private_ip in address.findall(f"{tag}privateIp"):
                    address.remove(private_ip)
                ElementTree.SubElement(address, f"{tag}availabilityZone").text = zone
                ElementTree.SubElement(address, f"{tag}availabilityZoneId").text = zone_id
        return bytes(ElementTree.tostring(root, encoding="utf-8"))

    return change


def create_nat_gateway(world: dict[str, Any]) -> dict[str, Any]:
    """Another NAT Gateway in the world's VPC (made regional by `as_regional` in a proxy)."""
    ec2 = world["ec2"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [world["vpc"]]}])["Subnets"][0]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    gateway: dict[str, Any] = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], AllocationId=allocation)["NatGateway"]
    return gateway


@contextmanager
def regional_report(
    kubeapi: KubeAPI,
    moto: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
    kube_client: kubernetes.client.ApiClient,
    name: str,
    gateway_id: str,
) -> Iterator[tuple[dict[str, Any], subprocess.CompletedProcess[str]]]:
    """A FlowReport of the gateway, one `natflow run --once` with the gateway made regional in a proxy;
    yields the report and the run. The gateway is deleted afterwards: the module's other reports see one."""
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    try:
        with flow_report(custom, name, {"natGatewayIds": [gateway_id]}), FaultProxy(moto.endpoint_url) as proxy:
            proxy.rewrite("DescribeNatGateways", as_regional(gateway_id, f"{REGION}a", "use1-az1"))
            done = run_once(kubeapi, moto, world["window"], tmp_path / "state.sqlite", proxy.endpoint_url)
            yield custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", name), done
    finally:
        world["ec2"].delete_nat_gateway(NatGatewayId=gateway_id)


REGIONAL_FIELDS = "version interface-id srcaddr dstaddr packets bytes start end action log-status az-id resource-id"


def test_a_regional_nat_gateway_through_the_operator(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    """A regional gateway (moto's NAT Gateway, its DescribeNatGateways answer rewritten in a proxy) with
    a flow log of resource type RegionalNatGateway (moto takes it): found by the gateway's id, its
    records (interface-id '-', resource-id the gateway) counted by the contract, and written as
    FlowAttributions and status like a zonal gateway's."""
    ec2, s3 = world["ec2"], world["s3"]
    gateway = create_nat_gateway(world)
    gateway_id, public_ip = gateway["NatGatewayId"], gateway["NatGatewayAddresses"][0]["PublicIp"]
    flow_log = ec2.create_flow_logs(
        ResourceIds=[gateway_id], ResourceType="RegionalNatGateway", TrafficType="ALL", LogDestinationType="s3",
        LogDestination="arn:aws:s3:::flows", LogFormat=" ".join(f"${{{f}}}" for f in REGIONAL_FIELDS.split()),
    )["FlowLogIds"][0]  # fmt: skip
    start = world["window"][0] + 120
    records = [
        ("10.0.1.5", "52.9.9.9", 4000),  # the web pod, out
        ("52.9.9.9", "10.0.1.5", 9000),  # and in
        (world["node_ip"], "54.9.9.9", 300),  # the node itself
        (public_ip, "52.9.9.9", 4000),  # the internet side: tallied, not counted
        ("52.9.9.9", public_ip, 9000),
        ("10.0.1.5", "10.0.9.9", 77),  # both ends inside: fits neither
    ]
    lines = [f"11 - {src} {dst} 3 {n} {start} {start + 30} ACCEPT OK use1-az1 {gateway_id}" for src, dst, n in records]
    day, stamp = time.strftime("%Y/%m/%d", time.gmtime(start)), time.strftime("%Y%m%dT%H%MZ", time.gmtime(start))
    key = f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{day}/{ACCOUNT}_vpcflowlogs_{REGION}_{flow_log}_{stamp}_0r.log.gz"
    s3.put_object(Bucket="flows", Key=key, Body=gzip.compress("\n".join([REGIONAL_FIELDS, *lines, ""]).encode()))
    with regional_report(kubeapi, moto_server, world, tmp_path, kube_client, "regional", gateway_id) as (report, done):
        assert attributions(kube_client, "regional") == {
            ("Deployment", "web", "pod"): (4000, 9000),
            ("Node", "ip-node-1", "hostNetwork"): (300, 0),
        }, done.stderr[-3000:]
        (status,) = report["status"]["natGateways"]
        assert (status["natGatewayId"], status["bytesOut"], status["bytesIn"]) == (gateway_id, 4300, 9000)
        conditions = {c["type"]: c for c in report["status"]["conditions"]}
        assert conditions["FlowLogsMissing"]["status"] == "False"
        assert conditions["FormatLacksFields"]["status"] == "False"
        assert "UnclassifiedNatRecords" in done.stdout + done.stderr


def test_a_regional_nat_gateway_without_a_flow_log_gets_the_regional_command(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    world: dict[str, Any],
    tmp_path: Path,
) -> None:
    gateway_id = create_nat_gateway(world)["NatGatewayId"]
    with regional_report(kubeapi, moto_server, world, tmp_path, kube_client, "unlogged-regional", gateway_id) as (
        report,
        _,
    ):
        missing = {c["type"]: c for c in report["status"]["conditions"]}["FlowLogsMissing"]
        assert missing["status"] == "True"
        command = f"aws ec2 create-flow-logs --resource-type RegionalNatGateway --resource-ids {gateway_id} "
        assert command in missing["message"] and "${resource-id}" in missing["message"]

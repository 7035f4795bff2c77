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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import kubernetes
import pytest
import yaml

from natflow.timeutil import format_time
from tests.harness.kubeapi import KubeAPI
from tests.harness.motoserver import MotoServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "us-east-1", "123456789012"
GROUP, VERSION = "natflow.io", "v1alpha1"
NATFLOW = str(Path(sys.executable).with_name("natflow"))


def apply_crds(api: kubernetes.client.ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    for path in sorted((ROOT / "crds").glob("flow*.yaml")):
        body = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(body)
        except kubernetes.client.exceptions.ApiException as error:
            if error.status != 409:
                raise
        name = body["metadata"]["name"]
        for _ in range(100):
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            time.sleep(0.1)


def apply_rbac(api: kubernetes.client.ApiClient) -> None:
    """natflow's ClusterRole from manifests/, bound to the test user `natflow`."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    for doc in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()):
        if doc and doc["kind"] == "ClusterRole":
            try:
                rbac.create_cluster_role(doc)
            except kubernetes.client.exceptions.ApiException as error:
                if error.status != 409:
                    raise
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "natflow-test-user"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "natflow"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "natflow"}],
    }
    try:
        rbac.create_cluster_role_binding(binding)
    except kubernetes.client.exceptions.ApiException as error:
        if error.status != 409:
            raise


def ensure_namespace(core: kubernetes.client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace({"metadata": {"name": name}})
    except kubernetes.client.exceptions.ApiException as error:
        if error.status != 409:
            raise


def aws_world(moto: MotoServer) -> dict[str, Any]:
    """A VPC with a NAT Gateway, one node instance and an S3 flow log, in moto."""
    moto.reset()
    kwargs = {
        "region_name": REGION,
        "endpoint_url": moto.endpoint_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ec2, s3 = boto3.client("ec2", **kwargs), boto3.client("s3", **kwargs)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)["NatGateway"]
    address = nat["NatGatewayAddresses"][0]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    s3.create_bucket(Bucket="flows")
    flow_log = ec2.create_flow_logs(
        ResourceIds=[vpc],
        ResourceType="VPC",
        TrafficType="ALL",
        LogDestinationType="s3",
        LogDestination="arn:aws:s3:::flows",
    )["FlowLogIds"][0]
    return {
        "s3": s3,
        "nat": nat["NatGatewayId"],
        "eni": address["NetworkInterfaceId"],
        "nat_ip": address["PrivateIp"],
        "instance": instance["InstanceId"],
        "node_ip": instance["PrivateIpAddress"],
        "flow_log": flow_log,
    }


def put_flow_logs(world: dict[str, Any], window: tuple[int, int], records: list[tuple[str, str, str, int]]) -> None:
    """records: (srcaddr, dstaddr, peer, bytes) on the NAT ENI, starting a minute into the window."""
    header = (
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
        "action log-status pkt-srcaddr pkt-dstaddr"
    )
    start = window[0] + 60
    lines = [header]
    for src, dst, peer, nbytes in records:
        pkt_src, pkt_dst = (src, peer) if dst == world["nat_ip"] else (peer, dst)
        lines.append(
            f"2 {ACCOUNT} {world['eni']} {src} {dst} 1 443 6 3 {nbytes} {start} {start + 59} ACCEPT OK {pkt_src} {pkt_dst}"
        )
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(start))
    day = time.strftime("%Y/%m/%d", time.gmtime(start))
    key = f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{day}/{ACCOUNT}_vpcflowlogs_{REGION}_{world['flow_log']}_{stamp}_0a1b2c3d.log.gz"
    world["s3"].put_object(Bucket="flows", Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))


def create_cluster_objects(api: kubernetes.client.ApiClient, world: dict[str, Any], since: int) -> None:
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
    ensure_namespace(core, "shop")
    ensure_namespace(core, "natflow-system")
    core.create_node(
        {"metadata": {"name": "ip-node-1"}, "spec": {"providerID": f"aws:///{REGION}a/{world['instance']}"}}
    )
    core.patch_node_status(
        "ip-node-1", {"status": {"addresses": [{"type": "InternalIP", "address": world["node_ip"]}]}}
    )
    container = [{"name": "c", "image": "busybox"}]
    deployment = apps.create_namespaced_deployment(
        "shop",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": container}},
            },
        },
    )
    replicaset = apps.create_namespaced_replica_set(
        "shop",
        {
            "metadata": {
                "name": "web-7d9f",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                        "uid": deployment.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": container}},
            },
        },
    )
    pod = core.create_namespaced_pod(
        "shop",
        {
            "metadata": {
                "name": "web-7d9f-abcde",
                "labels": {"app": "web", "pod-template-hash": "7d9f"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": "web-7d9f",
                        "uid": replicaset.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {"nodeName": "ip-node-1", "containers": container},
        },
    )
    started = format_time(since)
    core.patch_namespaced_pod_status(
        pod.metadata.name,
        "shop",
        {
            "status": {
                "phase": "Running",
                "podIP": "10.0.1.5",
                "podIPs": [{"ip": "10.0.1.5"}],
                "hostIP": world["node_ip"],
                "startTime": started,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
            }
        },
    )
    apps.create_namespaced_daemon_set(
        "kube-system",
        {
            "metadata": {"name": "aws-node"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "aws-node"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "aws-node"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "aws-node",
                                "image": "amazon-k8s-cni",
                                "env": [{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "value": "true"}],
                            }
                        ]
                    },
                },
            },
        },
    )


@pytest.fixture(scope="module")
def world(kubeapi: KubeAPI, moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    """One cluster and one AWS account for the module, and a window around now.

    The API server stamps the Node's creationTimestamp now and natflow counts a node's addresses
    from its creation, so the window must come after it (with --once any window may be given).
    """
    with kubernetes.config.new_client_from_config(config_file=str(kubeapi.kubeconfig)) as api:  # type: ignore[no-untyped-call]
        apply_crds(api)
        apply_rbac(api)
        aws = aws_world(moto_server)
        create_cluster_objects(api, aws, int(time.time()) - 3600)
        now = int(time.time()) + 1
        window = (now - 60, now + 840)
        aws["window"] = window
        yield aws


def run_once(
    kubeapi: KubeAPI, moto: MotoServer, window: tuple[int, int], store: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **moto.env(),
        "KUBECONFIG": str(kubeapi.user_kubeconfig()),
        "NATFLOW_NAMESPACE": "natflow-system",
        "NATFLOW_STORE": str(store),
    }
    return subprocess.run(
        [NATFLOW, "run", "--once", "--window", f"{format_time(window[0])}/{format_time(window[1])}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def attributions(api: kubernetes.client.ApiClient) -> dict[tuple[str, str, str], tuple[int, int]]:
    custom = kubernetes.client.CustomObjectsApi(api)
    items = custom.list_cluster_custom_object(GROUP, VERSION, "flowattributions")["items"]
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
    nat_ip = world["nat_ip"]
    put_flow_logs(
        world,
        world["window"],
        [
            ("10.0.1.5", nat_ip, "52.1.1.1", 1000),
            (nat_ip, "10.0.1.5", "52.1.1.1", 5000),  # the pod
            (nat_ip, "52.1.1.1", "52.1.1.1", 6000),
            ("52.1.1.1", nat_ip, "52.1.1.1", 6000),  # internet legs
            (world["node_ip"], nat_ip, "54.2.2.2", 300),  # the node itself
            ("10.0.9.9", nat_ip, "54.3.3.3", 70),  # nobody we know
        ],
    )
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "flowreports",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowReport", "metadata": {"name": "default"}, "spec": {}},
    )

    done = run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {
        ("Deployment", "web", "pod"): (1000, 5000),
        ("Node", "ip-node-1", "hostNetwork"): (300, 0),
        ("IP", "10.0.9.9", "unattributed"): (70, 0),
    }
    assert attributions(kube_client) == expected
    report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "default")
    (gateway,) = report["status"]["natGateways"]
    assert (gateway["natGatewayId"], gateway["bytesOut"], gateway["bytesIn"]) == (world["nat"], 1370, 5000)
    ready = {c["type"]: c["status"] for c in report["status"]["conditions"]}
    assert ready["Ready"] == "True" and ready["SNATHidesPodIPs"] == "False"
    web = next(i for i in custom.list_namespaced_custom_object(GROUP, VERSION, "shop", "flowattributions")["items"])
    assert web["spec"]["topDestinations"] == [{"destination": "52.1.1.1", "bytes": 6000}]

    again = run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
    assert again.returncode == 0, again.stderr[-3000:]
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
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "flowreports",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FlowReport",
            "metadata": {"name": "bad"},
            "spec": {"logFormat": "${srcaddr} ${srcaddr}"},
        },
    )
    try:
        done = run_once(kubeapi, moto_server, world["window"], tmp_path / "state.sqlite")
        assert done.returncode == 0, done.stderr[-3000:]
        report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "bad")
        conditions = {c["type"]: c for c in report["status"]["conditions"]}
        assert conditions["InvalidSpec"]["status"] == "True"
        assert "a field appears twice" in conditions["InvalidSpec"]["message"]
        assert conditions["Ready"]["status"] == "False"
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "flowreports", "bad")

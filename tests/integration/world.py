"""A cluster and an AWS account for the operator's integration tests: CRDs, RBAC, moto resources,
Kubernetes objects as kubelet and controllers would write them, and flow logs in moto's S3."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import kubernetes
import yaml

from natflow.timeutil import format_time
from tests.harness.kubeapi import KubeAPI
from tests.harness.motoserver import MotoServer

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "us-east-1", "123456789012"
GROUP, VERSION = "natflow.io", "v1alpha1"
# The flow log's format: the header of every object written here, as AWS writes it.
FLOW_FIELDS = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
    "action log-status pkt-srcaddr pkt-dstaddr"
)


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
        LogFormat=" ".join(f"${{{field}}}" for field in FLOW_FIELDS.split()),
    )["FlowLogIds"][0]
    return {
        "logs": boto3.client("logs", **kwargs),
        "ec2": ec2,
        "vpc": vpc,
        "s3": s3,
        "nat": nat["NatGatewayId"],
        "eni": address["NetworkInterfaceId"],
        "nat_ip": address["PrivateIp"],
        "instance": instance["InstanceId"],
        "node_ip": instance["PrivateIpAddress"],
        "flow_log": flow_log,
    }


# (srcaddr, dstaddr, peer, bytes, seconds into the window): one minute-long record on the NAT ENI
FlowRecord = tuple[str, str, str, int, int]


def record_lines(world: dict[str, Any], window: tuple[int, int], records: list[FlowRecord]) -> list[tuple[int, str]]:
    """(start, record in FLOW_FIELDS format) for each record."""
    lines = []
    for src, dst, peer, nbytes, offset in records:
        start = window[0] + offset
        pkt_src, pkt_dst = (src, peer) if dst == world["nat_ip"] else (peer, dst)
        text = f"2 {ACCOUNT} {world['eni']} {src} {dst} 1 443 6 3 {nbytes} {start} {start + 59} ACCEPT OK {pkt_src} {pkt_dst}"
        lines.append((start, text))
    return lines


def put_flow_logs(world: dict[str, Any], window: tuple[int, int], records: list[FlowRecord]) -> None:
    """One S3 object as the flow log delivers it: header line, then the records."""
    lines = record_lines(world, window, records)
    first = min(start for start, _ in lines)
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(first))
    day = time.strftime("%Y/%m/%d", time.gmtime(first))
    key = f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{day}/{ACCOUNT}_vpcflowlogs_{REGION}_{world['flow_log']}_{stamp}_0a1b2c3d.log.gz"
    body = "\n".join([FLOW_FIELDS, *(text for _, text in lines)]) + "\n"
    world["s3"].put_object(Bucket="flows", Key=key, Body=gzip.compress(body.encode()))


def put_log_events(world: dict[str, Any], group: str, window: tuple[int, int], records: list[FlowRecord]) -> None:
    """The same records as CloudWatch Logs events in the NAT ENI's stream (no header, ms timestamps)."""
    logs, stream = world["logs"], f"{world['eni']}-all"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = [
        {"timestamp": start * 1000, "message": text} for start, text in sorted(record_lines(world, window, records))
    ]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def create_job_and_reuse(api: kubernetes.client.ApiClient, namespace: str, node: str, window: tuple[int, int]) -> None:
    """A CronJob's completed Job pod that frees 10.0.1.7 two minutes into the window, and a bare pod
    that gets the same IP a minute later: the completed pod keeps status.podIP, as the API does."""
    dynamic = kubernetes.dynamic.DynamicClient(api)
    cronjobs = dynamic.resources.get(api_version="batch/v1beta1", kind="CronJob")
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    cronjob = cronjobs.create(namespace=namespace, body={
        "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "report"},
        "spec": {"schedule": "0 * * * *", "suspend": True, "jobTemplate": {"spec": {"template": template}}},
    })  # fmt: skip
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    job = batch.create_namespaced_job(namespace, {
        "metadata": {"name": "report-29385000", "ownerReferences": [
            {"apiVersion": "batch/v1beta1", "kind": "CronJob", "name": "report", "uid": cronjob.metadata.uid,
             "controller": True}]},
        "spec": {"template": {"metadata": {"labels": {"job": "report"}}, **template}, "manualSelector": True,
                 "selector": {"matchLabels": {"job": "report"}}},
    })  # fmt: skip
    pod = core.create_namespaced_pod(namespace, {
        "metadata": {"name": "report-29385000-x1", "labels": {"job": "report"}, "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid,
             "controller": True}]},
        "spec": {"nodeName": node, **template["spec"]},
    })  # fmt: skip
    finished = format_time(window[0] + 120)
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Succeeded", "podIP": "10.0.1.7", "podIPs": [{"ip": "10.0.1.7"}],
        "startTime": format_time(window[0] - 600),
        "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                        "startedAt": format_time(window[0] - 590),
                                                        "finishedAt": finished}}}],
    }})  # fmt: skip
    debug = core.create_namespaced_pod(namespace, {"metadata": {"name": "debug"},
                                                   "spec": {"nodeName": node, **template["spec"]}})  # fmt: skip
    core.patch_namespaced_pod_status(debug.metadata.name, namespace, {"status": {
        "phase": "Running", "podIP": "10.0.1.7", "podIPs": [{"ip": "10.0.1.7"}],
        "startTime": format_time(window[0] + 180),
    }})  # fmt: skip


def create_cluster_objects(
    api: kubernetes.client.ApiClient,
    world: dict[str, Any],
    since: int,
    namespace: str = "shop",
    node: str = "ip-node-1",
) -> None:
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
    ensure_namespace(core, namespace)
    ensure_namespace(core, "natflow-system")
    core.create_node({"metadata": {"name": node}, "spec": {"providerID": f"aws:///{REGION}a/{world['instance']}"}})
    core.patch_node_status(node, {"status": {"addresses": [{"type": "InternalIP", "address": world["node_ip"]}]}})
    container = [{"name": "c", "image": "busybox"}]
    deployment = apps.create_namespaced_deployment(
        namespace,
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
        namespace,
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
        namespace,
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
            "spec": {"nodeName": node, "containers": container},
        },
    )
    started = format_time(since)
    core.patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
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
    try:
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
    except kubernetes.client.exceptions.ApiException as error:
        if error.status != 409:  # the aws-node DaemonSet is shared by the test modules
            raise


def create_report(custom: kubernetes.client.CustomObjectsApi, name: str, spec: dict[str, Any]) -> None:
    """Apply a FlowReport, as a cluster admin would."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowReport", "metadata": {"name": name}, "spec": spec}
    custom.create_cluster_custom_object(GROUP, VERSION, "flowreports", body)


@contextmanager
def flow_report(custom: kubernetes.client.CustomObjectsApi, name: str, spec: dict[str, Any]) -> Iterator[None]:
    """A FlowReport for the length of a `with` block, deleted after it whatever happens."""
    create_report(custom, name, spec)
    try:
        yield
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "flowreports", name)


@contextmanager
def prepared_world(
    kubeapi: KubeAPI, moto: MotoServer, namespace: str, node: str
) -> Iterator[tuple[kubernetes.client.ApiClient, dict[str, Any]]]:
    """CRDs, RBAC, a fresh AWS account and the namespace's workloads on `node` (pods running for an hour)."""
    with kubernetes.config.new_client_from_config(config_file=str(kubeapi.kubeconfig)) as api:  # type: ignore[no-untyped-call]
        apply_crds(api)
        kubeapi.restart_controller_manager()  # its garbage collector learns the new CRD types at once
        apply_rbac(api)
        world = aws_world(moto)
        create_cluster_objects(api, world, int(time.time()) - 3600, namespace=namespace, node=node)
        yield api, world

"""Write a realistic offline input set for ``natflow attribute`` and return its known answer.

The generator first decides who sent every byte through which NAT Gateway (its ground truth),
then writes what kubectl and the AWS CLI would show for that hour, and computes the expected
attribution from the ground truth alone. It never imports natflow: a mistake in natflow's rules
cannot be copied into the answer.

One hour, 2026-11-20T10:00Z..11:00Z, in one VPC (10.0.0.0/16, plus 100.64.0.0/16 for custom
networking) with one NAT Gateway per AZ and four EKS nodes:

* ``a1``: secondary-IP mode, with a spare ENI that logs only NODATA;
* ``a2``: prefix delegation (/28 prefixes);
* ``b1``: secondary-IP mode;
* ``b2``: custom networking (pods on a 100.64.x.x ENI).

Pods: Deployments ``shop/web`` (ReplicaSet object present) and ``shop/checkout`` (ReplicaSet
absent, so only the pod-template-hash rule names it), a CronJob's completed Job pod, a StatefulSet,
DaemonSets with and without hostNetwork, a bare Pod and a Deployment on custom networking. During
the hour a web pod is deleted and a checkout pod reuses its IP; a new web pod reuses the finished
Job pod's IP; a checkout pod on the prefix-delegation node is deleted and later bytes from its
address belong to the node. A Lambda ENI and an undescribed instance stay unattributed.

    scenario = build_scenario(tmp_path, seed=7, snat="off")
    scenario.expected()                                   # the whole hour, --group-by workload
    scenario.expected(window=(start, end), group_by="pod")

``--snat`` picks who translates pod addresses: the VPC CNI (``off``: EXTERNALSNAT=true, ``on``,
``on-exclude``: with EXCLUDE_SNAT_CIDRS), no source at all (``absent``), EKS Auto Mode (``auto``: a2 and
b1 are Auto Mode nodes of NodeClasses ``general``, patched from Random to Disabled at 10:30, and
``batch``, Disabled; a1 and b2 stay managed nodes under aws-node with EXTERNALSNAT=false), Cilium in
ENI mode with masquerading (``cilium``, no aws-node), or an IPv6 cluster (``ipv6``: pods have IPv6
addresses, EXTERNALSNAT=true, and IPv4 egress still leaves as the node's IPv4 address).

``python -m tests.scenario.generator --out DIR --seed N [--snat MODE]`` writes one, with its answer
in ``DIR/expected.json``.
"""

from __future__ import annotations

import argparse
import calendar
import gzip
import ipaddress
import json
import random
import shutil
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

SnatMode = Literal["off", "on", "on-exclude", "absent", "auto", "cilium", "ipv6"]
FlowFormat = Literal["text", "parquet", "cloudwatch"]
KeyLayout = Literal["default", "hive"]
GroupBy = Literal["workload", "pod", "namespace"]
Direction = Literal["out", "in"]
Role = Literal["client", "internet", "reject", "other", "nodata", "skipdata", "malformed", "unclassified"]
Damage = Literal["truncated", "bad-bytes", "bogus"]
# (NAT Gateway, namespace, workload kind, workload name, source): one row of natflow's answer
RowKey = tuple[str, str, str, str, str]
# --start/--end in Unix seconds; None leaves that side open
Window = tuple[int | None, int | None]

SNAT_MODES: tuple[SnatMode, ...] = ("off", "on", "on-exclude", "absent", "auto", "cilium", "ipv6")
FLOW_FORMATS: tuple[FlowFormat, ...] = ("text", "parquet", "cloudwatch")
KEY_LAYOUTS: tuple[KeyLayout, ...] = ("default", "hive")

BASE_TIME = calendar.timegm((2026, 11, 20, 10, 0, 0))
HOUR_SECONDS = 3600
DAY_SECONDS = 86400
ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER_NAME = "prod"
VPC_CIDR = "10.0.0.0/16"
CUSTOM_NETWORKING_CIDR = "100.64.0.0/16"
EXCLUDED_SNAT_CIDR = "203.0.113.0/24"
# snat "auto": EKS Auto Mode nodes of two NodeClasses next to managed node groups (a1, b2: aws-node
# with EXTERNALSNAT=false). NodeClass general is Random until its fix at 10:30, then Disabled;
# NodeClass batch is Disabled all along.
AUTO_NODECLASSES = {"a2": "general", "b1": "batch"}
NODECLASS_FIXED = BASE_TIME + 30 * 60
IPV6_POD_PREFIX = 0x2600_1F18_04F2  # snat "ipv6": pod addresses 2600:1f18:4f2::/48, from the IPv4 ones
BUCKET = "acme-prod-vpc-flow-logs"
LOG_GROUP = "/aws/vpc/prod-flow-logs"
S3_OBJECT_SECONDS = 300  # AWS writes one S3 object per 5 minutes of record end times
CLOUDWATCH_PAGE_EVENTS = 400
K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of generated name suffixes

# The S3 flow log's custom format (the text header and the Parquet columns follow it) ...
S3_FIELDS = (
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
    "packets", "bytes", "start", "end", "action", "log-status", "vpc-id", "subnet-id", "instance-id",
    "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr", "region", "az-id", "pkt-src-aws-service",
    "pkt-dst-aws-service", "flow-direction", "traffic-path",
)  # fmt: skip
# ... and the CloudWatch flow log's, in the order of AWS's own v5 example, so that a reader must
# take the order from describe-flow-logs rather than assume the S3 one.
CLOUDWATCH_FIELDS = (
    "version", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "start", "end", "type", "packets",
    "bytes", "account-id", "vpc-id", "subnet-id", "instance-id", "interface-id", "region", "az-id",
    "sublocation-type", "sublocation-id", "action", "tcp-flags", "pkt-srcaddr", "pkt-dstaddr",
    "pkt-src-aws-service", "pkt-dst-aws-service", "traffic-path", "flow-direction", "log-status",
)  # fmt: skip
INT32_FIELDS = frozenset({"version", "srcport", "dstport", "protocol", "tcp-flags", "traffic-path", "encryption-status"})
INT64_FIELDS = frozenset({"packets", "bytes", "start", "end"})

Value = int | str | None


def log_format(fields: Sequence[str]) -> str:
    return " ".join(f"${{{name}}}" for name in fields)


def iso(seconds: int) -> str:
    """Kubernetes time text."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def aws_time(seconds: int) -> str:
    """AWS CLI v2 time text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))


def in_cidr(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


class Ids:
    """AWS- and Kubernetes-looking identifiers drawn from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def aws(self, prefix: str, digits: int = 17) -> str:
        return f"{prefix}-{self.hex(digits)}"

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def suffix(self, length: int = 5) -> str:
        return "".join(self.rng.choice(K8S_ALPHABET) for _ in range(length))

    def mac(self) -> str:
        return "0a:" + ":".join(f"{self.rng.getrandbits(8):02x}" for _ in range(5))


# -- the VPC ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subnet:
    id: str
    cidr: str
    az: str
    az_id: str


@dataclass(frozen=True)
class Gateway:
    id: str
    name: str
    eni: str
    subnet: Subnet
    private_ips: tuple[str, ...]  # the first is the primary address
    public_ips: tuple[str, ...]


@dataclass(frozen=True)
class Interface:
    id: str
    subnet: Subnet
    device_index: int
    primary_ip: str
    mac: str
    secondary_ips: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    name: str
    uid: str
    instance_id: str
    instance_type: str
    gateway: Gateway  # the NAT Gateway its AZ's route table points at
    interfaces: tuple[Interface, ...]
    created: int
    key: str = ""  # a1, a2, b1, b2

    @property
    def primary_ip(self) -> str:
        return self.interfaces[0].primary_ip

    @property
    def subnet(self) -> Subnet:
        return self.interfaces[0].subnet


@dataclass(frozen=True)
class Vpc:
    id: str
    subnets: dict[str, Subnet]
    gateways: tuple[Gateway, ...]
    nodes: dict[str, Node]
    lambda_eni: Interface
    endpoint_eni: Interface
    outsider_eni: Interface  # an instance outside the cluster that describe-network-interfaces misses
    outsider_instance: str
    s3_flow_log: str
    cloudwatch_flow_log: str
    security_group: str


def _node_name(address: str) -> str:
    return f"ip-{address.replace('.', '-')}.ec2.internal"


def _addresses(prefix: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{host}" for host in range(first, last + 1))


def build_vpc(ids: Ids) -> Vpc:
    subnets = {
        "public-a": Subnet(ids.aws("subnet"), "10.0.0.0/24", "us-east-1a", "use1-az1"),
        "public-b": Subnet(ids.aws("subnet"), "10.0.1.0/24", "us-east-1b", "use1-az2"),
        "private-a": Subnet(ids.aws("subnet"), "10.0.16.0/20", "us-east-1a", "use1-az1"),
        "private-b": Subnet(ids.aws("subnet"), "10.0.32.0/20", "us-east-1b", "use1-az2"),
        "pods-b": Subnet(ids.aws("subnet"), "100.64.32.0/19", "us-east-1b", "use1-az2"),
    }
    nat_a = Gateway(ids.aws("nat"), "prod-nat-a", ids.aws("eni"), subnets["public-a"], ("10.0.0.77",), ("3.216.41.7",))
    nat_b = Gateway(
        ids.aws("nat"), "prod-nat-b", ids.aws("eni"), subnets["public-b"],
        ("10.0.1.201", "10.0.1.202"), ("44.198.12.90", "44.198.12.91"),
    )  # fmt: skip

    def node(primary: str, gateway: Gateway, instance_type: str, age_days: float, *extra: Interface,
             secondary: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()) -> Node:  # fmt: skip
        subnet = subnets["private-a"] if gateway is nat_a else subnets["private-b"]
        eth0 = Interface(ids.aws("eni"), subnet, 0, primary, ids.mac(), secondary, prefixes)
        created = BASE_TIME - int(age_days * DAY_SECONDS)
        return Node(_node_name(primary), ids.uid(), ids.aws("i"), instance_type, gateway, (eth0, *extra), created)

    spare_eni = Interface(ids.aws("eni"), subnets["private-a"], 1, "10.0.18.7", ids.mac(), _addresses("10.0.18", 20, 24))
    pods_eni = Interface(ids.aws("eni"), subnets["pods-b"], 1, "100.64.40.4", ids.mac(), _addresses("100.64.40", 10, 19))
    nodes = {
        "a1": node("10.0.17.23", nat_a, "m6i.xlarge", 9.3, spare_eni, secondary=_addresses("10.0.17", 40, 49)),
        "a2": node("10.0.20.5", nat_a, "m6i.2xlarge", 4.1, prefixes=("10.0.21.16/28", "10.0.21.32/28")),
        "b1": node("10.0.33.12", nat_b, "m6i.xlarge", 9.3, secondary=_addresses("10.0.33", 50, 59)),
        "b2": node("10.0.34.7", nat_b, "g5.xlarge", 2.6, pods_eni),
    }
    nodes = {key: replace(value, key=key) for key, value in nodes.items()}
    return Vpc(
        id=ids.aws("vpc"),
        subnets=subnets,
        gateways=(nat_a, nat_b),
        nodes=nodes,
        lambda_eni=Interface(ids.aws("eni"), subnets["private-b"], 1, "10.0.33.200", ids.mac()),
        endpoint_eni=Interface(ids.aws("eni"), subnets["private-a"], 1, "10.0.17.250", ids.mac()),
        outsider_eni=Interface(ids.aws("eni"), subnets["private-a"], 0, "10.0.24.9", ids.mac()),
        outsider_instance=ids.aws("i"),
        s3_flow_log=ids.aws("fl"),
        cloudwatch_flow_log=ids.aws("fl"),
        security_group=ids.aws("sg"),
    )


# -- the cluster -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Owner:
    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: Node
    ip: str  # the node's IP for hostNetwork pods
    host_network: bool
    owner: Owner | None
    workload: tuple[str, str]  # (kind, name) natflow should report
    labels: dict[str, str]
    image: str
    ip_from: int  # the sandbox (and its IP) is ready
    container_id: str
    image_digest: str
    released: int | None = None  # containers finished: the IP is free from here on
    deleted: int | None = None  # metadata.deletionTimestamp
    final_phase: str = "Succeeded"
    exit_code: int = 0
    restart_policy: str = "Always"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def created(self) -> int:
        return self.ip_from - 6


@dataclass(frozen=True)
class Cluster:
    pods: dict[str, Pod]  # by the role the scenario gives it (e.g. "web-a")
    replica_sets: tuple[tuple[Owner, Owner], ...]  # (ReplicaSet, its Deployment), objects in the dump
    job: tuple[Owner, Owner]  # (Job, its CronJob)
    daemon_sets: dict[str, Owner]


def build_cluster(vpc: Vpc, ids: Ids) -> Cluster:
    nodes = vpc.nodes

    def owner(api_version: str, kind: str, name: str) -> Owner:
        return Owner(api_version, kind, name, ids.uid())

    web_rs = owner("apps/v1", "ReplicaSet", f"web-{ids.suffix(10)}")
    checkout_rs = owner("apps/v1", "ReplicaSet", f"checkout-{ids.suffix(10)}")
    model_rs = owner("apps/v1", "ReplicaSet", f"model-sync-{ids.suffix(10)}")
    kafka = owner("apps/v1", "StatefulSet", "kafka")
    # The CronJob controller names a Job after its scheduled time in minutes since the epoch.
    job = owner("batch/v1", "Job", f"nightly-export-{(BASE_TIME + 120) // 60}")
    cron_job = owner("batch/v1", "CronJob", "nightly-export")
    daemon_sets = {name: owner("apps/v1", "DaemonSet", name) for name in ("aws-node", "kube-proxy", "fluent-bit")}
    ds_hash = {name: ids.suffix(10) for name in daemon_sets}

    def pod(namespace: str, name: str, node: Node, ip: str, owner: Owner | None, workload: tuple[str, str],
            labels: dict[str, str], image: str, ip_from: int, host_network: bool = False, **more: Any) -> Pod:  # fmt: skip
        return Pod(namespace, name, ids.uid(), node, ip, host_network, owner, workload, labels, image, ip_from,
                   ids.hex(64), ids.hex(64), **more)  # fmt: skip

    def replica(rs: Owner, app: str, node: Node, ip: str, ip_from: int, **more: Any) -> Pod:
        template_hash = rs.name.rsplit("-", 1)[1]
        labels = {"app.kubernetes.io/name": app, "pod-template-hash": template_hash}
        image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}:v2.14.{ids.rng.randint(0, 9)}"
        return pod("shop" if app != "model-sync" else "ml", f"{rs.name}-{ids.suffix()}", node, ip, rs,
                   ("Deployment", app), labels, image, ip_from, **more)  # fmt: skip

    pods: dict[str, Pod] = {}
    for key, node in nodes.items():
        for ds, image in (("aws-node", "amazon-k8s-cni:v1.19.2-eksbuild.1"), ("kube-proxy", "kube-proxy:v1.31.3")):
            labels = {"controller-revision-hash": ds_hash[ds], "k8s-app": ds, "pod-template-generation": "1"}
            pods[f"{ds}-{key}"] = pod(
                "kube-system", f"{ds}-{ids.suffix()}", node, node.primary_ip, daemon_sets[ds], ("DaemonSet", ds),
                labels, f"602401143452.dkr.ecr.{REGION}.amazonaws.com/eks/{image}", node.created + 40,
                host_network=True,
            )  # fmt: skip
    fluent_ips = {"a1": "10.0.17.43", "a2": "10.0.21.19", "b1": "10.0.33.53", "b2": "100.64.40.11"}
    for key, node in nodes.items():
        labels = {"app.kubernetes.io/name": "fluent-bit", "controller-revision-hash": ds_hash["fluent-bit"],
                  "pod-template-generation": "3"}  # fmt: skip
        pods[f"fluent-bit-{key}"] = pod(
            "logging", f"fluent-bit-{ids.suffix()}", node, fluent_ips[key], daemon_sets["fluent-bit"],
            ("DaemonSet", "fluent-bit"), labels, "cr.fluentbit.io/fluent/fluent-bit:3.2.4", node.created + 75,
        )  # fmt: skip

    minute = 60
    pods["web-a"] = replica(web_rs, "web", nodes["a1"], "10.0.17.41", BASE_TIME - 2 * DAY_SECONDS,
                            released=BASE_TIME + 19 * minute + 40, deleted=BASE_TIME + 20 * minute)  # fmt: skip
    pods["web-b"] = replica(web_rs, "web", nodes["b1"], "10.0.33.51", BASE_TIME - 2 * DAY_SECONDS + 9)
    pods["web-c"] = replica(web_rs, "web", nodes["a2"], "10.0.21.17", BASE_TIME + 21 * minute)
    pods["checkout-d"] = replica(checkout_rs, "checkout", nodes["a1"], "10.0.17.41", BASE_TIME + 22 * minute)
    pods["checkout-e"] = replica(checkout_rs, "checkout", nodes["a2"], "10.0.21.33", BASE_TIME - DAY_SECONDS,
                                 released=BASE_TIME + 30 * minute, deleted=BASE_TIME + 30 * minute + 2)  # fmt: skip
    pods["model-sync"] = replica(model_rs, "model-sync", nodes["b2"], "100.64.40.12", BASE_TIME - 2 * DAY_SECONDS)
    for index, (key, ip) in enumerate((("b1", "10.0.33.52"), ("a1", "10.0.17.42"))):
        name = f"kafka-{index}"
        labels = {"app.kubernetes.io/name": "kafka", "apps.kubernetes.io/pod-index": str(index),
                  "controller-revision-hash": f"kafka-{ids.suffix(10)}", "statefulset.kubernetes.io/pod-name": name}  # fmt: skip
        pods[name] = pod("data", name, nodes[key], ip, kafka, ("StatefulSet", "kafka"), labels,
                         "docker.io/bitnami/kafka:3.9.0", BASE_TIME - 6 * DAY_SECONDS + index * 95)  # fmt: skip
    job_labels = {"batch.kubernetes.io/controller-uid": job.uid, "batch.kubernetes.io/job-name": job.name,
                  "controller-uid": job.uid, "job-name": job.name}  # fmt: skip
    pods["export"] = pod(
        "batch", f"{job.name}-{ids.suffix()}", nodes["a2"], "10.0.21.17", job, ("CronJob", "nightly-export"),
        job_labels, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/exporter:2026.11.2", BASE_TIME + 2 * minute + 9,
        released=BASE_TIME + 15 * minute, restart_policy="Never",
    )  # fmt: skip
    pods["debug-shell"] = pod(
        "default", "debug-shell", nodes["b1"], "10.0.33.54", None, ("Pod", "debug-shell"), {"run": "debug-shell"},
        "docker.io/nicolaka/netshoot:v0.13", BASE_TIME + 30 * minute + 5, released=BASE_TIME + 45 * minute,
        deleted=BASE_TIME + 45 * minute, final_phase="Failed", exit_code=137, restart_policy="Never",
    )  # fmt: skip
    return Cluster(pods, ((web_rs, owner("apps/v1", "Deployment", "web")),
                          (model_rs, owner("apps/v1", "Deployment", "model-sync"))), (job, cron_job), daemon_sets)  # fmt: skip


# -- Kubernetes objects as kubectl prints them -----------------------------------------------------
PodState = Literal["pending", "running", "terminating", "terminated"]


def _condition(kind: str, status: bool, at: int, reason: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"lastProbeTime": None, "lastTransitionTime": iso(at), "status": str(status), "type": kind}
    if reason:
        found["reason"] = reason
    return found


def ipv6_of(address: str) -> str:
    """A pod's address in the IPv6 cluster (snat "ipv6"), one for each IPv4 address of the scenario."""
    return str(ipaddress.IPv6Address(IPV6_POD_PREFIX << 80 | int(ipaddress.IPv4Address(address))))


def pod_object(pod: Pod, state: PodState, resource_version: int, ipv6: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "creationTimestamp": iso(pod.created),
        "labels": dict(pod.labels),
        "name": pod.name,
        "namespace": pod.namespace,
        "resourceVersion": str(resource_version),
        "uid": pod.uid,
    }
    if pod.owner is not None:
        if pod.owner.kind != "StatefulSet":  # StatefulSet pods are named, not generated
            meta["generateName"] = pod.name.rsplit("-", 1)[0] + "-"
        meta["ownerReferences"] = [{
            "apiVersion": pod.owner.api_version, "blockOwnerDeletion": True, "controller": True,
            "kind": pod.owner.kind, "name": pod.owner.name, "uid": pod.owner.uid,
        }]  # fmt: skip
    if state in ("terminating", "terminated") and pod.deleted is not None:
        meta["deletionGracePeriodSeconds"] = 30
        meta["deletionTimestamp"] = iso(pod.deleted)
    container = pod.image.rsplit("/", 1)[-1].split(":")[0]
    spec: dict[str, Any] = {
        "containers": [{
            "image": pod.image, "imagePullPolicy": "IfNotPresent", "name": container,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        }],
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "nodeName": pod.node.name,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": pod.restart_policy,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccount": "default",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [
            {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "tolerationSeconds": 300},
        ],
    }  # fmt: skip
    if pod.host_network:
        spec["hostNetwork"] = True
    scheduled = pod.created + 1
    status: dict[str, Any] = {"hostIP": pod.node.primary_ip, "hostIPs": [{"ip": pod.node.primary_ip}]}
    container_status: dict[str, Any] = {
        "containerID": f"containerd://{pod.container_id}", "image": pod.image,
        "imageID": f"{pod.image.split(':')[0]}@sha256:{pod.image_digest}", "lastState": {}, "name": container,
        "restartCount": 0,
    }  # fmt: skip
    if state == "pending":
        status.update(phase="Pending", qosClass="Burstable", startTime=iso(scheduled), conditions=[
            _condition("PodReadyToStartContainers", False, scheduled), _condition("Initialized", True, scheduled),
            _condition("Ready", False, scheduled, "ContainersNotReady"),
            _condition("ContainersReady", False, scheduled, "ContainersNotReady"),
            _condition("PodScheduled", True, pod.created),
        ])  # fmt: skip
        container_status.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
        del container_status["containerID"], container_status["imageID"]
    elif state in ("running", "terminating"):
        ready = pod.ip_from + 4
        status.update(phase="Running", qosClass="Burstable", startTime=iso(scheduled), conditions=[
            _condition("PodReadyToStartContainers", True, pod.ip_from), _condition("Initialized", True, scheduled),
            _condition("Ready", True, ready), _condition("ContainersReady", True, ready),
            _condition("PodScheduled", True, pod.created),
        ])  # fmt: skip
        container_status.update(ready=True, started=True, state={"running": {"startedAt": iso(pod.ip_from + 2)}})
    else:
        assert pod.released is not None, f"{pod.key} never finishes"
        reason = "PodCompleted" if pod.final_phase == "Succeeded" else "PodFailed"
        status.update(phase=pod.final_phase, qosClass="Burstable", startTime=iso(scheduled), conditions=[
            _condition("PodReadyToStartContainers", False, pod.released + 1),
            _condition("Initialized", True, scheduled, reason if pod.final_phase == "Succeeded" else None),
            _condition("Ready", False, pod.released, reason), _condition("ContainersReady", False, pod.released, reason),
            _condition("PodScheduled", True, pod.created),
        ])  # fmt: skip
        container_status.update(ready=False, started=False, state={"terminated": {
            "containerID": f"containerd://{pod.container_id}", "exitCode": pod.exit_code,
            "finishedAt": iso(pod.released), "reason": "Completed" if pod.exit_code == 0 else "Error",
            "startedAt": iso(pod.ip_from + 2),
        }})  # fmt: skip
    if state != "pending":
        address = ipv6_of(pod.ip) if ipv6 and not pod.host_network else pod.ip
        status.update(podIP=address, podIPs=[{"ip": address}])
    status["containerStatuses"] = [container_status]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def node_object(node: Node, key: str, resource_version: int, snat: SnatMode = "off") -> dict[str, Any]:
    subnet = node.subnet
    group = {"eks.amazonaws.com/nodegroup": f"{CLUSTER_NAME}-{key[0]}"}
    if snat == "auto" and key in AUTO_NODECLASSES:  # an EKS Auto Mode node names its NodeClass
        group = {"eks.amazonaws.com/compute-type": "auto", "eks.amazonaws.com/nodeclass": AUTO_NODECLASSES[key],
                 "karpenter.sh/nodepool": AUTO_NODECLASSES[key]}  # fmt: skip
    heartbeat = BASE_TIME + HOUR_SECONDS + 31
    conditions = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"), ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"), ("Ready", "True", "KubeletReady"),
    ]  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": node.primary_ip,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "creationTimestamp": iso(node.created),
            "labels": {
                **group,
                "k8s.io/cloud-provider-aws": "a94967527effcefb5f5829f529c0a1b9",
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": node.instance_type,
                "topology.kubernetes.io/region": REGION,
                "topology.kubernetes.io/zone": subnet.az,
            },
            "name": node.name,
            "resourceVersion": str(resource_version),
            "uid": node.uid,
        },
        "spec": {"providerID": f"aws:///{subnet.az}/{node.instance_id}"},
        "status": {
            "addresses": [
                {"address": node.primary_ip, "type": "InternalIP"},
                {"address": node.name, "type": "InternalDNS"},
                {"address": node.name, "type": "Hostname"},
            ],
            "conditions": [
                {"lastHeartbeatTime": iso(heartbeat), "lastTransitionTime": iso(node.created + 30), "message": reason,
                 "reason": reason, "status": status, "type": kind}
                for kind, status, reason in conditions
            ],
            "nodeInfo": {
                "architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.23",
                "kernelVersion": "6.1.115-126.197.amzn2023.x86_64", "kubeProxyVersion": "v1.31.3-eks-59bf375",
                "kubeletVersion": "v1.31.3-eks-59bf375", "operatingSystem": "linux",
                "osImage": "Amazon Linux 2023.6.20241212",
            },
        },
    }


def _controller_meta(owned: Owner, owner: Owner, namespace: str, created: int, version: int) -> dict[str, Any]:
    return {
        "creationTimestamp": iso(created),
        "generation": 1,
        "name": owned.name,
        "namespace": namespace,
        "ownerReferences": [{
            "apiVersion": owner.api_version, "blockOwnerDeletion": True, "controller": True, "kind": owner.kind,
            "name": owner.name, "uid": owner.uid,
        }],
        "resourceVersion": str(version),
        "uid": owned.uid,
    }


def replica_set_object(rs: Owner, deployment: Owner, namespace: str, version: int) -> dict[str, Any]:
    meta = _controller_meta(rs, deployment, namespace, BASE_TIME - 8 * DAY_SECONDS, version)
    template_hash = rs.name.rsplit("-", 1)[1]
    meta["labels"] = {"app.kubernetes.io/name": deployment.name, "pod-template-hash": template_hash}
    meta["annotations"] = {"deployment.kubernetes.io/desired-replicas": "2", "deployment.kubernetes.io/revision": "7"}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta,
        "spec": {"replicas": 2, "selector": {"matchLabels": meta["labels"]}},
        "status": {"availableReplicas": 2, "fullyLabeledReplicas": 2, "observedGeneration": 1, "readyReplicas": 2,
                   "replicas": 2},
    }


def job_object(job: Owner, cron_job: Owner, pod: Pod, version: int) -> dict[str, Any]:
    assert pod.released is not None
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **_controller_meta(job, cron_job, "batch", pod.created - 1, version),
            "labels": {"batch.kubernetes.io/controller-uid": job.uid, "batch.kubernetes.io/job-name": job.name},
        },
        "spec": {"backoffLimit": 2, "completions": 1, "parallelism": 1},
        "status": {
            "completionTime": iso(pod.released + 3),
            "conditions": [
                {"lastProbeTime": iso(pod.released + 3), "lastTransitionTime": iso(pod.released + 3),
                 "status": "True", "type": "Complete"},
            ],
            "ready": 0,
            "startTime": iso(pod.created - 1),
            "succeeded": 1,
            "terminating": 0,
        },
    }


def aws_node_env(snat: SnatMode) -> list[dict[str, Any]]:
    """The aws-node container's environment as the EKS add-on sets it, with the scenario's SNAT."""
    values = {
        "ADDITIONAL_ENI_TAGS": "{}", "ANNOTATE_POD_IP": "false", "AWS_VPC_CNI_NODE_PORT_SUPPORT": "true",
        "AWS_VPC_ENI_MTU": "9001", "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "true",
        "AWS_VPC_K8S_CNI_EXTERNALSNAT": "true" if snat in ("off", "ipv6") else "false",
        "AWS_VPC_K8S_CNI_LOGLEVEL": "DEBUG", "AWS_VPC_K8S_CNI_LOG_FILE": "/host/var/log/aws-routed-eni/ipamd.log",
        "AWS_VPC_K8S_CNI_RANDOMIZESNAT": "prng", "AWS_VPC_K8S_CNI_VETHPREFIX": "eni", "ENABLE_IPv4": "true",
        "ENABLE_IPv6": "false", "ENABLE_POD_ENI": "false", "ENABLE_PREFIX_DELEGATION": "true",
        "WARM_ENI_TARGET": "1", "WARM_PREFIX_TARGET": "1",
    }  # fmt: skip
    if snat == "on-exclude":
        values["AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"] = EXCLUDED_SNAT_CIDR
    if snat == "ipv6":  # an IPv6 cluster: EXTERNALSNAT=true changes nothing for IPv4 egress
        values.update(ENABLE_IPv4="false", ENABLE_IPv6="true", ENABLE_V4_EGRESS="true")
    env: list[dict[str, Any]] = [{"name": name, "value": values[name]} for name in sorted(values)]
    env.append({"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}})
    return env


def daemon_set_object(ds: Owner, snat: SnatMode, version: int) -> dict[str, Any]:
    namespace = "logging" if ds.name == "fluent-bit" else "kube-system"
    containers: list[dict[str, Any]] = [{"image": f"{ds.name}:stable", "name": ds.name}]
    if ds.name == "aws-node":
        registry = f"602401143452.dkr.ecr.{REGION}.amazonaws.com/amazon"
        containers = [
            {"env": aws_node_env(snat), "image": f"{registry}-k8s-cni:v1.19.2-eksbuild.1", "name": "aws-node",
             "ports": [{"containerPort": 61678, "name": "metrics", "protocol": "TCP"}]},
            {"args": ["--enable-ipv6=false", "--enable-network-policy=false"],
             "image": f"{registry}/aws-network-policy-agent:v1.1.6-eksbuild.1", "name": "aws-eks-nodeagent"},
        ]  # fmt: skip
    labels = {"k8s-app": ds.name} if namespace == "kube-system" else {"app.kubernetes.io/name": ds.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"creationTimestamp": iso(BASE_TIME - 60 * DAY_SECONDS), "generation": 3, "labels": labels,
                     "name": ds.name, "namespace": namespace, "resourceVersion": str(version), "uid": ds.uid},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": containers, "hostNetwork": ds.name != "fluent-bit",
                         "priorityClassName": "system-node-critical", "serviceAccountName": ds.name},
            },
            "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}, "type": "RollingUpdate"},
        },
        "status": {"currentNumberScheduled": 4, "desiredNumberScheduled": 4, "numberAvailable": 4,
                   "numberMisscheduled": 0, "numberReady": 4, "observedGeneration": 3, "updatedNumberScheduled": 4},
    }  # fmt: skip


def cilium_config_object(version: int) -> dict[str, Any]:
    """Cilium in ENI mode with masquerading on, as its Helm chart writes the ConfigMap (the keys natflow reads)."""
    data = {
        "bpf-map-dynamic-size-ratio": "0.0025", "cluster-name": CLUSTER_NAME, "egress-masquerade-interfaces": "eth+",
        "enable-bpf-masquerade": "true", "enable-endpoint-routes": "true", "enable-ip-masq-agent": "false",
        "enable-ipv4": "true", "enable-ipv4-masquerade": "true", "enable-ipv6": "false", "ipam": "eni",
        "ipv4-native-routing-cidr": VPC_CIDR, "routing-mode": "native", "eni-tags": "{}",
    }  # fmt: skip
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": data, "metadata": {
        "annotations": {"meta.helm.sh/release-name": "cilium", "meta.helm.sh/release-namespace": "kube-system"},
        "creationTimestamp": iso(BASE_TIME - 60 * DAY_SECONDS), "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "name": "cilium-config", "namespace": "kube-system", "resourceVersion": str(version),
        "uid": "6f1d3c1e-5b8a-4c47-9d0e-2a4b7c9e1f30"}}  # fmt: skip


def nodeclass_object(name: str, policy: str, version: int, changed: int) -> dict[str, Any]:
    """An Auto Mode NodeClass; `changed`: when its spec was last written (its managedFields time)."""
    spec = {"role": f"AmazonEKSAutoNodeRole-{CLUSTER_NAME}", "snatPolicy": policy, "networkPolicy": "DefaultAllow",
            "subnetSelectorTerms": [{"tags": {"kubernetes.io/role/internal-elb": "1"}}],
            "securityGroupSelectorTerms": [{"tags": {f"kubernetes.io/cluster/{CLUSTER_NAME}": "owned"}}]}  # fmt: skip
    managed = [
        {"apiVersion": "eks.amazonaws.com/v1", "fieldsType": "FieldsV1", "manager": "kubectl-client-side-apply",
         "operation": "Update", "time": aws_time(changed).replace("+00:00", "Z"),
         "fieldsV1": {"f:spec": {"f:role": {}, "f:snatPolicy": {}}}},
        {"apiVersion": "eks.amazonaws.com/v1", "fieldsType": "FieldsV1", "manager": "eks-auto-mode",
         "operation": "Update", "subresource": "status", "time": iso(BASE_TIME + HOUR_SECONDS - 90),
         "fieldsV1": {"f:status": {"f:conditions": {}}}},
    ]  # fmt: skip
    return {"apiVersion": "eks.amazonaws.com/v1", "kind": "NodeClass", "spec": spec, "metadata": {
        "creationTimestamp": iso(BASE_TIME - 20 * DAY_SECONDS), "finalizers": ["eks.amazonaws.com/termination"],
        "generation": 2 if changed >= BASE_TIME else 1, "managedFields": managed, "name": name,
        "resourceVersion": str(version), "uid": f"5c0e{version:08d}-1f2a-4b3c-8d4e-a1b2c3d4e5f6"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                   "lastTransitionTime": iso(BASE_TIME - 20 * DAY_SECONDS)}]}}  # fmt: skip


def write_nodeclasses(directory: Path) -> None:
    """``kubectl get nodeclasses -o json --watch --output-watch-events``: general fixed to Disabled at 10:30."""
    created = BASE_TIME - 20 * DAY_SECONDS
    versions = [("ADDED", nodeclass_object("batch", "Disabled", 47_000_001, created)),
                ("ADDED", nodeclass_object("general", "Random", 47_000_002, created)),
                ("MODIFIED", nodeclass_object("general", "Disabled", 48_130_000, NODECLASS_FIXED))]  # fmt: skip
    for _, obj in versions:  # one uid per NodeClass across its versions
        obj["metadata"]["uid"] = f"5c0e{sum(map(ord, obj['metadata']['name'])):08d}-1f2a-4b3c-8d4e-a1b2c3d4e5f6"
    stream = [json.dumps({"object": obj, "type": kind}, indent=4, sort_keys=True) for kind, obj in versions]
    (directory / "nodeclasses-watch.json").write_text("\n".join(stream) + "\n")


def write_cluster(directory: Path, vpc: Vpc, cluster: Cluster, snat: SnatMode) -> None:
    """The final ``kubectl get ... -A -o json`` List and the ``--watch-only --output-watch-events`` stream."""
    old_version = iter(range(47_800_113, 48_000_000, 17))
    events: list[tuple[int, str, Pod, PodState]] = []
    for pod in cluster.pods.values():
        if pod.ip_from >= BASE_TIME:  # created during the hour: the watch saw it Pending, then running
            events.append((pod.created, "ADDED", pod, "pending"))
            events.append((pod.ip_from, "MODIFIED", pod, "running"))
        if pod.deleted is not None:
            events.append((pod.deleted - 30, "MODIFIED", pod, "terminating"))
            events.append((pod.deleted, "DELETED", pod, "terminated"))
        elif pod.released is not None:
            events.append((pod.released + 1, "MODIFIED", pod, "terminated"))
    events.sort(key=lambda event: (event[0], event[2].name))
    last_seen: dict[str, tuple[int, PodState]] = {}
    stream: list[str] = []
    for version, (_, kind, pod, state) in enumerate(events, start=48_100_457):
        last_seen[pod.uid] = (version, state)
        event = {"object": pod_object(pod, state, version, snat == "ipv6"), "type": kind}
        stream.append(json.dumps(event, indent=4, sort_keys=True))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pods-watch.json").write_text("\n".join(stream) + "\n")

    items: list[dict[str, Any]] = []
    for pod in cluster.pods.values():
        if pod.deleted is not None:
            continue
        version, state = last_seen.get(pod.uid, (next(old_version), "running"))
        items.append(pod_object(pod, state, version, snat == "ipv6"))
    for key, node in vpc.nodes.items():
        items.append(node_object(node, key, 48_199_000 + len(items), snat))
    for rs, deployment in cluster.replica_sets:
        items.append(replica_set_object(rs, deployment, "ml" if deployment.name == "model-sync" else "shop",
                                        next(old_version)))  # fmt: skip
    job, cron_job = cluster.job
    items.append(job_object(job, cron_job, cluster.pods["export"], 48_100_900))  # completed during the watch
    for name, ds in cluster.daemon_sets.items():
        if name != "aws-node" or snat not in ("absent", "cilium"):
            items.append(daemon_set_object(ds, snat, next(old_version)))
    if snat == "cilium":
        items.append(cilium_config_object(next(old_version)))
    if snat == "auto":
        write_nodeclasses(directory)
    listing = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
    (directory / "cluster.json").write_text(json.dumps(listing, indent=4, sort_keys=True) + "\n")


# -- AWS CLI outputs -------------------------------------------------------------------------------
def _eni_object(vpc: Vpc, interface: Interface, *, description: str, interface_type: str,
                attachment: dict[str, Any] | None, requester_managed: bool = False,
                extra_ips: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    addresses = [interface.primary_ip, *interface.secondary_ips, *extra_ips]
    found: dict[str, Any] = {
        "AvailabilityZone": interface.subnet.az,
        "Description": description,
        "Groups": [{"GroupName": f"eks-cluster-sg-{CLUSTER_NAME}-1937048561", "GroupId": vpc.security_group}],
        "InterfaceType": interface_type,
        "Ipv6Addresses": [],
        "MacAddress": interface.mac,
        "NetworkInterfaceId": interface.id,
        "OwnerId": ACCOUNT,
        "PrivateDnsName": _node_name(interface.primary_ip),
        "PrivateIpAddress": interface.primary_ip,
        "PrivateIpAddresses": [
            {"Primary": index == 0, "PrivateDnsName": _node_name(address), "PrivateIpAddress": address}
            for index, address in enumerate(addresses)
        ],
        "RequesterManaged": requester_managed,
        "SourceDestCheck": not requester_managed,
        "Status": "in-use",
        "SubnetId": interface.subnet.id,
        "TagSet": [],
        "VpcId": vpc.id,
    }
    if attachment is not None:
        found["Attachment"] = attachment
    if interface.prefixes:
        found["Ipv4Prefixes"] = [{"Ipv4Prefix": prefix} for prefix in interface.prefixes]
    return found


def _service_attachment(ids: Ids) -> dict[str, Any]:
    return {"AttachmentId": ids.aws("ela-attach"), "DeleteOnTermination": False, "DeviceIndex": 1,
            "InstanceOwnerId": "amazon-aws", "Status": "attached"}  # fmt: skip


def write_aws(directory: Path, vpc: Vpc, flow_format: FlowFormat, layout: KeyLayout, ids: Ids) -> None:
    directory.mkdir(parents=True, exist_ok=True)

    def dump(name: str, document: dict[str, Any]) -> None:
        (directory / name).write_text(json.dumps(document, indent=4) + "\n")

    dump("describe-nat-gateways.json", {"NatGateways": [{
        "CreateTime": aws_time(BASE_TIME - 200 * DAY_SECONDS),
        "NatGatewayAddresses": [{
            "AllocationId": ids.aws("eipalloc"), "AssociationId": ids.aws("eipassoc"), "IsPrimary": index == 0,
            "NetworkInterfaceId": gateway.eni, "PrivateIp": private_ip, "PublicIp": public_ip, "Status": "succeeded",
        } for index, (private_ip, public_ip) in enumerate(zip(gateway.private_ips, gateway.public_ips, strict=True))],
        "NatGatewayId": gateway.id, "State": "available", "SubnetId": gateway.subnet.id, "VpcId": vpc.id,
        "Tags": [{"Key": "Name", "Value": gateway.name}], "ConnectivityType": "public",
    } for gateway in vpc.gateways]})  # fmt: skip
    dump("describe-vpcs.json", {"Vpcs": [{
        "CidrBlock": VPC_CIDR, "DhcpOptionsId": ids.aws("dopt"), "State": "available", "VpcId": vpc.id,
        "OwnerId": ACCOUNT, "InstanceTenancy": "default",
        "CidrBlockAssociationSet": [
            {"AssociationId": ids.aws("vpc-cidr-assoc"), "CidrBlock": cidr, "CidrBlockState": {"State": "associated"}}
            for cidr in (VPC_CIDR, CUSTOM_NETWORKING_CIDR)
        ],
        "IsDefault": False, "Tags": [{"Key": "Name", "Value": f"{CLUSTER_NAME}-vpc"}],
    }]})  # fmt: skip

    interfaces = []
    for node in vpc.nodes.values():
        for interface in node.interfaces:
            attachment = {
                "AttachTime": aws_time(node.created + 20 * interface.device_index), "AttachmentId": ids.aws("eni-attach"),
                "DeleteOnTermination": True, "DeviceIndex": interface.device_index, "NetworkCardIndex": 0,
                "InstanceId": node.instance_id, "InstanceOwnerId": ACCOUNT, "Status": "attached",
            }  # fmt: skip
            description = f"aws-K8S-{node.instance_id}" if interface.device_index else ""
            eni = _eni_object(vpc, interface, description=description, interface_type="interface", attachment=attachment)
            eni["TagSet"] = [{"Key": "node.k8s.amazonaws.com/instance_id", "Value": node.instance_id},
                             {"Key": "cluster.k8s.amazonaws.com/name", "Value": CLUSTER_NAME}]  # fmt: skip
            interfaces.append(eni)
    for gateway in vpc.gateways:
        interface = Interface(gateway.eni, gateway.subnet, 1, gateway.private_ips[0], ids.mac())
        interfaces.append(_eni_object(
            vpc, interface, description=f"Interface for NAT Gateway {gateway.id}", interface_type="nat_gateway",
            attachment=_service_attachment(ids), requester_managed=True, extra_ips=gateway.private_ips[1:],
        ))  # fmt: skip
    interfaces.append(_eni_object(
        vpc, vpc.lambda_eni, description=f"AWS Lambda VPC ENI-thumbnailer-{ids.uid()}", interface_type="lambda",
        attachment=_service_attachment(ids), requester_managed=True,
    ))  # fmt: skip
    endpoint = ids.aws("vpce")
    interfaces.append(_eni_object(
        vpc, vpc.endpoint_eni, description=f"VPC Endpoint Interface {endpoint}", interface_type="vpc_endpoint",
        attachment=None, requester_managed=True,
    ))  # fmt: skip
    dump("describe-network-interfaces.json", {"NetworkInterfaces": interfaces})

    created = aws_time(BASE_TIME - 90 * DAY_SECONDS)
    dump("describe-flow-logs.json", {"FlowLogs": [
        {
            "CreationTime": created, "DeliverLogsStatus": "SUCCESS", "FlowLogId": vpc.s3_flow_log,
            "FlowLogStatus": "ACTIVE", "ResourceId": vpc.id, "TrafficType": "ALL", "LogDestinationType": "s3",
            "LogDestination": f"arn:aws:s3:::{BUCKET}", "LogFormat": log_format(S3_FIELDS),
            "Tags": [], "MaxAggregationInterval": 60,
            "DestinationOptions": {"FileFormat": "parquet" if flow_format == "parquet" else "plain-text",
                                   "HiveCompatiblePartitions": layout == "hive", "PerHourPartition": layout == "hive"},
        },
        {
            "CreationTime": created, "DeliverLogsErrorMessage": "", "DeliverLogsPermissionArn":
            f"arn:aws:iam::{ACCOUNT}:role/vpc-flow-logs-to-cloudwatch", "DeliverLogsStatus": "SUCCESS",
            "FlowLogId": vpc.cloudwatch_flow_log, "FlowLogStatus": "ACTIVE", "LogGroupName": LOG_GROUP,
            "ResourceId": vpc.id, "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs",
            "LogFormat": log_format(CLOUDWATCH_FIELDS), "Tags": [], "MaxAggregationInterval": 60,
        },
    ]})  # fmt: skip


# -- ground truth: who sent what -------------------------------------------------------------------
@dataclass(frozen=True)
class Destination:
    address: str
    port: int
    protocol: int = 6
    service: str | None = None  # pkt-src/dst-aws-service


S3_ENDPOINTS = (Destination("52.216.141.99", 443, service="S3"), Destination("52.217.74.36", 443, service="S3"),
                Destination("3.5.29.117", 443, service="S3"))  # fmt: skip
ECR_API = Destination("44.213.79.104", 443, service="AMAZON")
EC2_API = Destination("52.46.155.40", 443, service="EC2")
CDN = Destination("104.16.132.229", 443)
GITHUB = Destination("140.82.112.4", 443)
PYPI = Destination("151.101.0.223", 443)
DOCKER_HUB = Destination("54.236.113.205", 443)
LOG_INTAKE = Destination("3.233.146.56", 443)
KAFKA_MIRROR = Destination("18.197.34.201", 9094)
QUIC_CDN = Destination("172.64.155.249", 443, protocol=17)
PAYMENTS = Destination("203.0.113.10", 443)  # a partner API inside EXCLUDED_SNAT_CIDR
LICENSE_SERVER = Destination("203.0.113.80", 443)  # also excluded; reached by a hostNetwork agent


@dataclass(frozen=True)
class Sender:
    """Whom natflow must give a record's bytes to."""

    gateway: str
    kind: Literal["pod", "node", "ip"]
    source: str
    namespace: str = ""
    workload_kind: str = ""
    workload_name: str = ""
    pod: str = ""
    name: str = ""  # the node's name, or the unattributed address
    hidden_pod: str = ""  # nodeSNAT: namespace/name of the pod whose IP SNAT replaced

    def row_key(self, group_by: GroupBy) -> RowKey:
        if self.kind == "node":
            return (self.gateway, "", "Node", self.name, self.source)
        if self.kind == "ip":
            return (self.gateway, "", "IP", self.name, self.source)
        if group_by == "pod":
            return (self.gateway, self.namespace, "Pod", self.pod, self.source)
        if group_by == "namespace":
            return (self.gateway, self.namespace, "Namespace", self.namespace, self.source)
        return (self.gateway, self.namespace, self.workload_kind, self.workload_name, self.source)


def node_snat_at(snat: SnatMode, node: Node, destination: Destination, when: int) -> bool | None:
    """Whether the node's pod traffic to `destination` at `when` reaches the NAT Gateway as the node's
    IP (None: the scenario shows natflow no SNAT source)."""
    if snat == "absent":
        return None
    if snat == "off":
        return False
    if snat == "on-exclude":
        return not in_cidr(destination.address, EXCLUDED_SNAT_CIDR)
    if snat == "auto" and node.key in AUTO_NODECLASSES:
        return AUTO_NODECLASSES[node.key] == "general" and when < NODECLASS_FIXED
    # on, auto's managed nodes (EXTERNALSNAT=false), cilium (masquerade on: no NAT'd destination is in
    # the native-routing CIDR), ipv6 (IPv4 egress leaves as the node's IPv4 whatever EXTERNALSNAT says)
    return True


@dataclass(frozen=True)
class Talker:
    """Something in the VPC that sends bytes through a NAT Gateway during some minutes of the hour."""

    origin: Literal["pod", "node", "stray", "outside"]
    address: str
    interface: Interface
    instance_id: str | None
    gateway: Gateway
    minutes: range
    destinations: tuple[Destination, ...]
    bytes_out: tuple[int, int]
    bytes_in: tuple[int, int]
    flows_per_minute: float
    pod: Pod | None = None
    node: Node | None = None

    def seen_as(self, destination: Destination, snat: SnatMode, when: int) -> tuple[str, Interface, Sender]:
        """The inside address the NAT Gateway sees, the ENI the flow leaves by, and the bytes' owner."""
        gateway = self.gateway.id
        if self.pod is not None:
            pod = self.pod
            if node_snat_at(snat, pod.node, destination, when):  # the CNI rewrote the pod IP to the node's IP
                node = pod.node
                sender = Sender(gateway, "node", "nodeSNAT", name=node.name, hidden_pod=pod.key)
                return node.primary_ip, node.interfaces[0], sender
            kind, name = pod.workload
            return pod.ip, self.interface, Sender(gateway, "pod", "pod", pod.namespace, kind, name, pod.name)
        if self.node is not None:
            if self.origin == "stray":  # a node-owned address that no pod held at the time
                return self.address, self.interface, Sender(gateway, "node", "node", name=self.node.name)
            translated = node_snat_at(snat, self.node, destination, when)
            source = "node" if translated is None else "nodeSNAT" if translated else "hostNetwork"
            return self.address, self.interface, Sender(gateway, "node", source, name=self.node.name)
        return self.address, self.interface, Sender(gateway, "ip", "unattributed", name=self.address)


def build_talkers(vpc: Vpc, cluster: Cluster) -> list[Talker]:
    pods, nodes = cluster.pods, vpc.nodes
    nat_a, nat_b = vpc.gateways
    whole_hour = range(60)

    def interface_of(node: Node, address: str) -> Interface:
        for interface in node.interfaces:
            if address == interface.primary_ip or address in interface.secondary_ips or any(
                in_cidr(address, prefix) for prefix in interface.prefixes
            ):
                return interface
        raise ValueError(f"{address} is not on {node.name}")

    def pod_talker(role: str, minutes: range, destinations: tuple[Destination, ...], bytes_out: tuple[int, int],
                   bytes_in: tuple[int, int], rate: float) -> Talker:  # fmt: skip
        pod = pods[role]
        return Talker("pod", pod.ip, interface_of(pod.node, pod.ip), pod.node.instance_id, pod.node.gateway, minutes,
                      destinations, bytes_out, bytes_in, rate, pod=pod)  # fmt: skip

    talkers: list[Talker] = []
    for node in nodes.values():  # kubelet image pulls, aws-node's EC2 calls, an agent on the host network
        talkers.append(Talker("node", node.primary_ip, node.interfaces[0], node.instance_id, node.gateway, whole_hour,
                              (ECR_API, S3_ENDPOINTS[2], EC2_API, EC2_API, LICENSE_SERVER), (2_000, 60_000),
                              (20_000, 30_000_000), 0.4, node=node))  # fmt: skip
    for key in nodes:
        talkers.append(pod_talker(f"fluent-bit-{key}", whole_hour, (LOG_INTAKE,), (200_000, 3_000_000),
                                  (2_000, 20_000), 0.5))  # fmt: skip
    web = (CDN, QUIC_CDN, S3_ENDPOINTS[0], GITHUB)
    talkers += [
        pod_talker("web-a", range(0, 18), web, (5_000, 400_000), (20_000, 8_000_000), 0.8),
        pod_talker("web-b", whole_hour, web, (5_000, 400_000), (20_000, 8_000_000), 0.8),
        pod_talker("web-c", range(22, 60), web, (5_000, 400_000), (20_000, 8_000_000), 0.8),
        pod_talker("checkout-d", range(24, 60), (PAYMENTS, CDN), (2_000, 60_000), (2_000, 40_000), 1.0),
        pod_talker("checkout-e", range(0, 28), (PAYMENTS, CDN), (2_000, 60_000), (2_000, 40_000), 1.0),
        pod_talker("kafka-0", whole_hour, (KAFKA_MIRROR,), (5_000_000, 80_000_000), (100_000, 2_000_000), 0.6),
        pod_talker("kafka-1", whole_hour, (KAFKA_MIRROR,), (5_000_000, 80_000_000), (100_000, 2_000_000), 0.6),
        pod_talker("export", range(3, 15), S3_ENDPOINTS, (50_000_000, 400_000_000), (50_000, 500_000), 1.0),
        pod_talker("debug-shell", range(31, 44), (PYPI, GITHUB, DOCKER_HUB), (1_000, 20_000),
                   (100_000, 60_000_000), 0.5),
        pod_talker("model-sync", whole_hour, S3_ENDPOINTS, (10_000, 200_000), (50_000_000, 600_000_000), 0.5),
    ]  # fmt: skip
    # Late bytes from addresses no pod holds: a deleted pod's prefix-delegated address, a free secondary IP.
    for node_key, address, minutes in (("a2", "10.0.21.33", range(40, 45)), ("a1", "10.0.17.47", range(50, 55))):
        node = nodes[node_key]
        talkers.append(Talker("stray", address, interface_of(node, address), node.instance_id, node.gateway, minutes,
                              (CDN, GITHUB), (1_000, 40_000), (1_000, 40_000), 1.0, node=node))  # fmt: skip
    talkers.append(Talker("outside", vpc.lambda_eni.primary_ip, vpc.lambda_eni, None, nat_b, whole_hour,
                          (GITHUB, PAYMENTS), (1_000, 50_000), (10_000, 2_000_000), 0.6))  # fmt: skip
    talkers.append(Talker("outside", vpc.outsider_eni.primary_ip, vpc.outsider_eni, vpc.outsider_instance, nat_a,
                          range(10, 41), (DOCKER_HUB,), (1_000, 30_000), (1_000_000, 90_000_000), 0.5))  # fmt: skip
    return talkers


# -- flow-log records ------------------------------------------------------------------------------
@dataclass
class FlowRecord:
    """One record as AWS writes it, and what it means for the answer."""

    values: dict[str, Value]
    role: Role
    gateway: str | None = None  # the NAT Gateway whose ENI recorded it
    direction: Direction | None = None  # client legs: out = inside -> NAT, in = NAT -> inside
    shares: tuple[tuple[Sender, int], ...] = ()  # client legs: owners of the bytes, weighted by seconds
    damage: Damage | None = None
    double_space: bool = False

    def number(self, name: str) -> int:
        value = self.values[name]
        assert isinstance(value, int), f"{name} is {value!r}"
        return value

    @property
    def start(self) -> int:
        return self.number("start")

    @property
    def end(self) -> int:
        return self.number("end")

    @property
    def interface_id(self) -> str:
        return str(self.values["interface-id"])

    def tokens(self, fields: Sequence[str]) -> list[str]:
        """The record's fields as text, damaged the way the scenario wants."""
        if self.damage == "bogus":
            return ["bogus", "line"]
        tokens = ["-" if self.values[name] is None else str(self.values[name]) for name in fields]
        if self.damage == "bad-bytes":
            tokens[fields.index("bytes")] = "NaN"
        if self.damage == "truncated":
            tokens = tokens[:9]
        return tokens

    def line(self, fields: Sequence[str]) -> str:
        tokens = self.tokens(fields)
        if self.double_space:  # AWS's own example has one; whitespace runs separate fields
            index = fields.index("srcport")
            tokens[index] += " "
        return " ".join(tokens)


def _values(vpc_id: str, interface_id: str, subnet: Subnet, instance_id: str | None, start: int, end: int,
            status: str = "OK", **fields: Value) -> dict[str, Value]:  # fmt: skip
    values: dict[str, Value] = dict.fromkeys((*S3_FIELDS, *CLOUDWATCH_FIELDS))
    values.update({
        "version": 5, "account-id": ACCOUNT, "interface-id": interface_id, "start": start, "end": end,
        "log-status": status, "vpc-id": vpc_id, "subnet-id": subnet.id, "instance-id": instance_id,
        "region": REGION, "az-id": subnet.az_id,
    })  # fmt: skip
    values.update({name.replace("_", "-"): value for name, value in fields.items()})
    return values


class AcceptedFields(TypedDict):
    """Fields shared by every record of one accepted connection."""

    type: str
    protocol: int
    action: str


@dataclass(frozen=True)
class FlowDraw:
    """The random parts of one NAT'd connection."""

    destination: Destination
    start: int
    end: int
    bytes_out: int
    bytes_in: int
    client_port: int
    nat_port: int
    nat_ip: str
    internet_lag: int


class RecordMaker:
    """Turns ground truth into the records AWS would write on each ENI."""

    def __init__(self, vpc: Vpc, snat: SnatMode) -> None:
        self.vpc = vpc
        self.snat = snat
        self.records: list[FlowRecord] = []

    def _add(self, role: Role, interface_id: str, subnet: Subnet, instance_id: str | None, start: int, end: int,
             gateway: str | None = None, status: str = "OK", **fields: Value) -> FlowRecord:  # fmt: skip
        values = _values(self.vpc.id, interface_id, subnet, instance_id, start, end, status, **fields)
        record = FlowRecord(values, role, gateway)
        self.records.append(record)
        return record

    def connection(self, talker: Talker, draw: FlowDraw, shares: tuple[tuple[Sender, int], ...] | None = None) -> None:
        """The four records on the NAT ENI (AWS's NAT example) and two on the sender's own ENI."""
        dest = draw.destination
        inside, interface, sender = talker.seen_as(dest, self.snat, draw.start)
        gateway = talker.gateway
        nat, sub = gateway.eni, gateway.subnet
        tcp = dest.protocol == 6
        packets_out, packets_in = draw.bytes_out // 1200 + 2, draw.bytes_in // 1400 + 2
        common = AcceptedFields(type="IPv4", protocol=dest.protocol, action="ACCEPT")
        start, end, lag = draw.start, draw.end, draw.internet_lag
        owners = shares or ((sender, 1),)
        out = self._add(
            "client", nat, sub, None, start, end, gateway.id, srcaddr=inside, dstaddr=draw.nat_ip,
            srcport=draw.client_port, dstport=dest.port, packets=packets_out, bytes=draw.bytes_out,
            tcp_flags=3 if tcp else 0, pkt_srcaddr=inside, pkt_dstaddr=dest.address,
            pkt_dst_aws_service=dest.service, flow_direction="ingress", **common,
        )  # fmt: skip
        out.direction, out.shares = "out", owners
        self._add(
            "internet", nat, sub, None, start + lag, end + lag, gateway.id, srcaddr=draw.nat_ip,
            dstaddr=dest.address, srcport=draw.nat_port, dstport=dest.port, packets=packets_out,
            bytes=draw.bytes_out, tcp_flags=3 if tcp else 0, pkt_srcaddr=draw.nat_ip, pkt_dstaddr=dest.address,
            pkt_dst_aws_service=dest.service, flow_direction="egress", traffic_path=8, **common,
        )  # fmt: skip
        self._add(
            "internet", nat, sub, None, start + lag, end + lag, gateway.id, srcaddr=dest.address,
            dstaddr=draw.nat_ip, srcport=dest.port, dstport=draw.nat_port, packets=packets_in,
            bytes=draw.bytes_in, tcp_flags=19 if tcp else 0, pkt_srcaddr=dest.address, pkt_dstaddr=draw.nat_ip,
            pkt_src_aws_service=dest.service, flow_direction="ingress", **common,
        )  # fmt: skip
        back = self._add(
            "client", nat, sub, None, start + lag, end + lag, gateway.id, srcaddr=draw.nat_ip, dstaddr=inside,
            srcport=dest.port, dstport=draw.client_port, packets=packets_in, bytes=draw.bytes_in,
            tcp_flags=19 if tcp else 0, pkt_srcaddr=dest.address, pkt_dstaddr=inside,
            pkt_src_aws_service=dest.service, flow_direction="egress", traffic_path=1, **common,
        )  # fmt: skip
        back.direction, back.shares = "in", owners
        own, instance = interface.subnet, talker.instance_id
        self._add(
            "other", interface.id, own, instance, start, end, srcaddr=inside, dstaddr=dest.address,
            srcport=draw.client_port, dstport=dest.port, packets=packets_out, bytes=draw.bytes_out,
            tcp_flags=3 if tcp else 0, pkt_srcaddr=inside, pkt_dstaddr=dest.address, flow_direction="egress",
            traffic_path=1, pkt_dst_aws_service=dest.service, **common,
        )  # fmt: skip
        self._add(
            "other", interface.id, own, instance, start + lag, end + lag, srcaddr=dest.address, dstaddr=inside,
            srcport=dest.port, dstport=draw.client_port, packets=packets_in, bytes=draw.bytes_in,
            tcp_flags=19 if tcp else 0, pkt_srcaddr=dest.address, pkt_dstaddr=inside, flow_direction="ingress",
            pkt_src_aws_service=dest.service, **common,
        )  # fmt: skip

    def reject(self, gateway: Gateway, source: str, nat_ip: str, port: int, packets: int, start: int) -> None:
        self._add(
            "reject", gateway.eni, gateway.subnet, None, start, start + 2, gateway.id, srcaddr=source,
            dstaddr=nat_ip, srcport=40_000 + port, dstport=port, protocol=6, packets=packets, bytes=44 * packets,
            action="REJECT", type="IPv4", tcp_flags=2, pkt_srcaddr=source, pkt_dstaddr=nat_ip,
            flow_direction="ingress",
        )  # fmt: skip

    def status_only(self, status: Literal["NODATA", "SKIPDATA"], interface_id: str, subnet: Subnet,
                    instance_id: str | None, gateway: str | None, minute: int) -> None:  # fmt: skip
        start = BASE_TIME + minute * 60
        role: Role = "nodata" if status == "NODATA" else "skipdata"
        self._add(role, interface_id, subnet, instance_id, start, start + 59, gateway, status)


def draw_flow(rng: random.Random, talker: Talker, minute: int) -> FlowDraw:
    destination = rng.choice(talker.destinations)
    # Every leg starts and ends inside one minute, so no reduced row spans a lease change.
    start = BASE_TIME + minute * 60 + rng.randint(0, 20)
    return FlowDraw(
        destination=destination,
        start=start,
        end=start + rng.randint(1, 34),
        bytes_out=rng.randint(*talker.bytes_out),
        bytes_in=rng.randint(*talker.bytes_in),
        client_port=rng.randint(32768, 60999),
        nat_port=rng.randint(1024, 65535),
        nat_ip=rng.choice(talker.gateway.private_ips),
        internet_lag=rng.randint(0, 1),
    )


def build_records(vpc: Vpc, cluster: Cluster, talkers: list[Talker], snat: SnatMode, rng: random.Random,
                  density: float, straddle: bool) -> list[FlowRecord]:  # fmt: skip
    """Every record of the hour. Random draws do not depend on `snat`: one seed, one set of flows."""
    maker = RecordMaker(vpc, snat)
    for talker in talkers:
        rate = talker.flows_per_minute * density
        for minute in talker.minutes:
            count = int(rate) + (1 if rng.random() < rate - int(rate) else 0)
            for _ in range(count):
                maker.connection(talker, draw_flow(rng, talker, minute))
    nat_a, nat_b = vpc.gateways
    for gateway in vpc.gateways:  # internet scanners hitting the NAT's address: REJECT on the NAT ENI
        for minute in range(60):
            if rng.random() < 0.2:
                source = f"{rng.choice((45, 80, 185, 193))}.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                maker.reject(gateway, source, rng.choice(gateway.private_ips), rng.choice((22, 23, 445, 3389, 8080)),
                             rng.randint(1, 3), BASE_TIME + minute * 60 + rng.randint(0, 50))  # fmt: skip
    web_b = next(t for t in talkers if t.pod is cluster.pods["web-b"])
    # packets after the connection closed: a client leg REJECT
    late_from = web_b.seen_as(CDN, snat, BASE_TIME + 35 * 60 + 7)[0]
    maker._add(
        "reject", nat_b.eni, nat_b.subnet, None, BASE_TIME + 35 * 60 + 7, BASE_TIME + 35 * 60 + 9, nat_b.id,
        srcaddr=late_from, dstaddr=nat_b.private_ips[0], srcport=51_234, dstport=443, protocol=6, packets=1,
        bytes=52, action="REJECT", type="IPv4", tcp_flags=4, pkt_srcaddr=late_from,
        pkt_dstaddr=CDN.address, flow_direction="ingress",
    )  # fmt: skip
    node_b1 = vpc.nodes["b1"]
    maker._add(
        "other", node_b1.interfaces[0].id, node_b1.subnet, node_b1.instance_id, BASE_TIME + 20 * 60 + 4,
        BASE_TIME + 20 * 60 + 5, srcaddr=vpc.outsider_eni.primary_ip, dstaddr=node_b1.primary_ip, srcport=48_812,
        dstport=10250, protocol=6, packets=2, bytes=120, action="REJECT", type="IPv4",
        tcp_flags=2, pkt_srcaddr=vpc.outsider_eni.primary_ip, pkt_dstaddr=node_b1.primary_ip, flow_direction="ingress",
    )  # fmt: skip
    node_a1 = vpc.nodes["a1"]
    spare = node_a1.interfaces[1]  # the warm ENI carries nothing: NODATA every ten minutes
    for minute in range(0, 60, 10):
        maker.status_only("NODATA", spare.id, spare.subnet, node_a1.instance_id, None, minute)
    for minute in (12, 48):
        maker.status_only("SKIPDATA", nat_b.eni, nat_b.subnet, None, nat_b.id, minute)
    maker.status_only("SKIPDATA", node_b1.interfaces[0].id, node_b1.subnet, node_b1.instance_id, None, 33)

    first_client_out = next(r for r in maker.records
                            if r.direction == "out" and r.start >= BASE_TIME + 300)  # fmt: skip
    first_client_out.double_space = True
    damaged: tuple[tuple[Damage, Gateway, int], ...] = (("truncated", nat_a, 7), ("bad-bytes", nat_b, 26),
                                                        ("bogus", nat_a, 51))  # fmt: skip
    for damage, gateway, minute in damaged:
        start = BASE_TIME + minute * 60 + 30
        record = maker._add(
            "malformed", gateway.eni, gateway.subnet, None, start, start + 20, gateway.id,
            srcaddr=vpc.lambda_eni.primary_ip, dstaddr=gateway.private_ips[0], srcport=44_100, dstport=443,
            protocol=6, packets=3, bytes=180, action="ACCEPT", type="IPv4",
        )  # fmt: skip
        record.damage = damage
    if straddle:
        add_straddle(maker, vpc, cluster, talkers)
    return maker.records


def add_straddle(maker: RecordMaker, vpc: Vpc, cluster: Cluster, talkers: list[Talker]) -> None:
    """One connection whose records span the moment checkout-e released 10.0.21.33: 30 s pod, 30 s node."""
    if maker.snat not in ("off", "absent"):
        raise ValueError("a straddling pod connection needs pod IPs at the NAT Gateway (snat off or absent)")
    pod = cluster.pods["checkout-e"]
    assert pod.released is not None
    stray = next(t for t in talkers if t.origin == "stray" and t.address == pod.ip)
    draw = FlowDraw(CDN, pod.released - 30, pod.released + 29, 40_000, 1_200_000, 50_505, 20_202,
                    vpc.gateways[0].private_ips[0], 0)  # fmt: skip
    owner = stray.seen_as(CDN, maker.snat, pod.released - 30)[2]
    kind, name = pod.workload
    holder = Sender(owner.gateway, "pod", "pod", pod.namespace, kind, name, pod.name)
    maker.connection(stray, draw, shares=((holder, 30), (owner, 30)))


# -- writing flow logs -----------------------------------------------------------------------------
def _s3_prefix(root: Path, layout: KeyLayout, bucket_start: int) -> Path:
    year, month, day, hour = time.gmtime(bucket_start)[:4]
    if layout == "hive":
        return (root / "AWSLogs" / f"aws-account-id={ACCOUNT}" / "aws-service=vpcflowlogs" / f"aws-region={REGION}"
                / f"year={year}" / f"month={month:02d}" / f"day={day:02d}" / f"hour={hour:02d}")  # fmt: skip
    return root / "AWSLogs" / ACCOUNT / "vpcflowlogs" / REGION / f"{year}" / f"{month:02d}" / f"{day:02d}"


def write_s3(root: Path, vpc: Vpc, records: list[FlowRecord], flow_format: FlowFormat, layout: KeyLayout,
             rng: random.Random, fields: Sequence[str] = S3_FIELDS, flow_log: str | None = None) -> int:  # fmt: skip
    """One object per 5 minutes of record end times, named and placed as AWS does; returns the count.
    The S3 flow log's `fields` and id unless others are given."""
    objects: dict[int, list[FlowRecord]] = defaultdict(list)
    for record in records:
        objects[record.end - record.end % S3_OBJECT_SECONDS].append(record)
    for bucket_start in sorted(objects):
        contents = sorted(objects[bucket_start], key=lambda r: (r.start, r.interface_id))
        stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(bucket_start))
        name = f"{ACCOUNT}_vpcflowlogs_{REGION}_{flow_log or vpc.s3_flow_log}_{stamp}_{rng.getrandbits(32):08x}"
        directory = _s3_prefix(root, layout, bucket_start)
        directory.mkdir(parents=True, exist_ok=True)
        if flow_format == "parquet":
            write_parquet(directory / f"{name}.log.parquet", contents, fields)
        else:
            text = "\n".join([" ".join(fields), *(r.line(fields) for r in contents)]) + "\n"
            with open(directory / f"{name}.log.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write(text.encode())
    return len(objects)


def write_parquet(path: Path, records: list[FlowRecord], fields: Sequence[str] = S3_FIELDS) -> None:
    """AWS's Parquet layout: underscore column names, INT_32/INT_64/STRING, nulls for '-'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def column_type(name: str) -> Any:
        return pa.int32() if name in INT32_FIELDS else pa.int64() if name in INT64_FIELDS else pa.string()

    schema = pa.schema([(name.replace("-", "_"), column_type(name)) for name in fields])
    columns = {name.replace("-", "_"): [r.values[name] for r in records] for name in fields}
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), path, compression="snappy")


def write_cloudwatch(root: Path, records: list[FlowRecord], rng: random.Random) -> int:
    """``aws logs filter-log-events`` pages: one stream per ENI, no header, timestamp = start."""
    ordered = sorted(records, key=lambda r: (r.start, r.interface_id))
    events = [{
        "logStreamName": f"{r.interface_id}-all", "timestamp": r.start * 1000, "message": r.line(CLOUDWATCH_FIELDS),
        "ingestionTime": (r.end + 300) * 1000 + rng.randint(0, 59_999),
        "eventId": "".join(str(rng.randint(0, 9)) for _ in range(56)),
    } for r in ordered]  # fmt: skip
    streams = [{"logStreamName": name, "searchedCompletely": True}
               for name in sorted({str(e["logStreamName"]) for e in events})]  # fmt: skip
    directory = root / "cloudwatch" / LOG_GROUP.strip("/").replace("/", "-")
    directory.mkdir(parents=True, exist_ok=True)
    pages = [events[i : i + CLOUDWATCH_PAGE_EVENTS] for i in range(0, len(events), CLOUDWATCH_PAGE_EVENTS)]
    for number, page in enumerate(pages, start=1):
        document: dict[str, Any] = {"events": page, "searchedLogStreams": streams}
        if number < len(pages):
            document["nextToken"] = f"Bxkq6kVGFtq2y_MoigeqscPOdhXVbhiVtLoAmXb5jCrI{rng.getrandbits(64):016x}"
        (directory / f"filter-log-events-{number:03d}.json").write_text(json.dumps(document, indent=4) + "\n")
    return len(pages)


# -- the answer ------------------------------------------------------------------------------------
def split_by_weight(total: int, weights: Sequence[int]) -> list[int]:
    """Integer parts in proportion to weights, largest remainder first (ties: earlier part)."""
    whole = sum(weights)
    parts = [total * weight // whole for weight in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for index in by_remainder[: total - sum(parts)]:
        parts[index] += 1
    return parts


@dataclass
class Expected:
    """What ``natflow attribute -o json`` must report for a scenario, window and grouping."""

    gateways: dict[str, dict[str, int]]  # natGatewayId -> bytesOut, bytesIn, attributedBytes
    rows: dict[RowKey, tuple[int, int]]  # -> (bytesOut, bytesIn)
    pods: dict[RowKey, set[str]]  # rows with source "pod" -> namespace/name of the pods in them
    stats: dict[str, int]  # natflow's stats member names
    snat_hidden_by_node: dict[str, int]
    snat_hidden_pods: set[str]  # pods whose bytes SNAT put behind their node's IP
    warnings: set[str]  # reasons

    @property
    def snat_hidden_bytes(self) -> int:
        return sum(self.snat_hidden_by_node.values())

    def coverage(self, gateway: str) -> float:
        totals = self.gateways[gateway]
        total = totals["bytesOut"] + totals["bytesIn"]
        return round(totals["attributedBytes"] / total, 4) if total else 0.0

    def to_json(self) -> dict[str, Any]:
        rows = []
        for key, (bytes_out, bytes_in) in sorted(self.rows.items()):
            gateway, namespace, kind, name, source = key
            row: dict[str, Any] = {"natGatewayId": gateway, "namespace": namespace, "workloadKind": kind,
                                   "workloadName": name, "source": source, "bytesOut": bytes_out, "bytesIn": bytes_in}  # fmt: skip
            if key in self.pods:
                row["pods"] = sorted(self.pods[key])
            rows.append(row)
        return {
            "natGateways": [{"natGatewayId": gateway, **totals, "coverage": self.coverage(gateway)}
                            for gateway, totals in sorted(self.gateways.items())],
            "attributions": rows,
            "stats": dict(sorted(self.stats.items())),
            "snatHiddenByNode": dict(sorted(self.snat_hidden_by_node.items())),
            "snatHiddenPods": sorted(self.snat_hidden_pods),
            "warnings": sorted(self.warnings),
        }


@dataclass
class Scenario:
    root: Path
    cluster_dir: Path
    aws_dir: Path
    flowlogs_dir: Path
    seed: int
    snat: SnatMode
    flow_format: FlowFormat
    layout: KeyLayout
    density: float
    straddle: bool
    vpc: Vpc
    cluster: Cluster
    records: list[FlowRecord] = field(repr=False)
    files_written: int = 0

    @property
    def gateway_ids(self) -> list[str]:
        return [g.id for g in self.vpc.gateways]

    def cli_args(self, window: Window | None = None, group_by: GroupBy = "workload") -> list[str]:
        args = ["attribute", "--cluster", str(self.cluster_dir), "--aws", str(self.aws_dir),
                "--flow-logs", str(self.flowlogs_dir), "--group-by", group_by, "-o", "json"]  # fmt: skip
        start, end = window or (None, None)
        if start is not None:
            args += ["--start", iso(start)]
        if end is not None:
            args += ["--end", iso(end)]
        return args

    def parameters(self) -> dict[str, Any]:
        return {"seed": self.seed, "snat": self.snat, "flowFormat": self.flow_format, "layout": self.layout,
                "density": self.density, "straddle": self.straddle}  # fmt: skip

    def expected(self, window: Window | None = None, group_by: GroupBy = "workload") -> Expected:
        """The answer from the ground truth: only client legs on NAT ENIs, ACCEPT, starting in the window."""
        start, end = window or (None, None)
        low = start if start is not None else -(1 << 62)
        high = end if end is not None else 1 << 62
        stats: dict[str, int] = dict.fromkeys((
            "recordsRead", "recordsCounted", "malformedRecords", "noDataRecords", "skipDataRecords",
            "rejectedRecords", "rejectedBytes", "otherInterfaceRecords", "outsideWindowRecords",
            "internetLegRecords", "internetLegBytes", "unclassifiedNatRecords", "unclassifiedNatBytes",
            "splitRows", "splitBytes",
        ), 0)  # fmt: skip
        stats["filesRead"] = self.files_written
        gateways = {g: {"bytesOut": 0, "bytesIn": 0, "attributedBytes": 0} for g in self.gateway_ids}
        rows: dict[RowKey, list[int]] = defaultdict(lambda: [0, 0])
        pods: dict[RowKey, set[str]] = defaultdict(set)
        hidden: dict[str, int] = defaultdict(int)
        hidden_pods: set[str] = set()
        for record in self.records:
            stats["recordsRead"] += 1
            in_window = low <= record.start < high
            if record.role == "malformed":
                stats["malformedRecords"] += 1
            elif record.role in ("nodata", "skipdata") and not in_window:
                stats["outsideWindowRecords"] += 1
            elif record.role == "nodata":
                stats["noDataRecords"] += 1
            elif record.role == "skipdata":
                stats["skipDataRecords"] += 1
            elif record.gateway is None:
                stats["otherInterfaceRecords"] += 1
            elif not in_window:
                stats["outsideWindowRecords"] += 1
            elif record.role == "reject":
                stats["rejectedRecords"] += 1
                stats["rejectedBytes"] += record.number("bytes")
            elif record.role == "internet":
                stats["internetLegRecords"] += 1
                stats["internetLegBytes"] += record.number("bytes")
            elif record.role == "unclassified":  # on a NAT Gateway, neither a client leg nor the internet side
                stats["unclassifiedNatRecords"] += 1
                stats["unclassifiedNatBytes"] += record.number("bytes")
            else:
                nbytes = record.number("bytes")
                column = 0 if record.direction == "out" else 1
                stats["recordsCounted"] += 1
                gateways[record.gateway]["bytesOut" if column == 0 else "bytesIn"] += nbytes
                parts = split_by_weight(nbytes, [weight for _, weight in record.shares])
                if len(parts) > 1:
                    stats["splitRows"] += 1
                    stats["splitBytes"] += nbytes
                for (sender, _), part in zip(record.shares, parts, strict=True):
                    key = sender.row_key(group_by)
                    rows[key][column] += part
                    if sender.kind == "pod":
                        pods[key].add(f"{sender.namespace}/{sender.pod}")
                    if sender.source != "unattributed":
                        gateways[record.gateway]["attributedBytes"] += part
                    if sender.source == "nodeSNAT":
                        hidden[sender.name] += part
                        if sender.hidden_pod:
                            hidden_pods.add(sender.hidden_pod)
        warnings = set()
        if hidden:
            warnings.add("NodeSNATHidesPodIPs")
        if self.snat == "absent":
            warnings.add("CNIUnknown")
        if stats["malformedRecords"]:
            warnings.add("MalformedRecords")
        if stats["skipDataRecords"]:
            warnings.add("SkippedData")
        if stats["unclassifiedNatRecords"]:
            warnings.add("UnclassifiedNatRecords")
        if stats["splitRows"]:
            warnings.add("RecordsSplitAcrossHolders")
        return Expected(
            gateways=gateways,
            rows={key: (out, in_) for key, (out, in_) in rows.items()},
            pods=dict(pods),
            stats=stats,
            snat_hidden_by_node=dict(hidden),
            snat_hidden_pods=hidden_pods,
            warnings=warnings,
        )


def build_scenario(
    out_dir: Path,
    *,
    seed: int,
    snat: SnatMode = "off",
    flow_format: FlowFormat = "text",
    layout: KeyLayout = "default",
    density: float = 1.0,
    straddle: bool = False,
) -> Scenario:
    """Write cluster/, aws/ and flowlogs/ under `out_dir` and return the scenario with its ground truth.

    The same seed gives the same VPC, pods and connections whatever `snat`, `flow_format` and `layout`
    are: only what the NAT Gateway sees (SNAT) and how the records are stored change.
    """
    cluster_dir, aws_dir, flowlogs_dir = out_dir / "cluster", out_dir / "aws", out_dir / "flowlogs"
    for directory in (cluster_dir, aws_dir, flowlogs_dir):
        if directory.exists() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} is not empty")
    ids = Ids(random.Random(f"natflow-scenario-{seed}-ids"))
    vpc = build_vpc(ids)
    cluster = build_cluster(vpc, ids)
    talkers = build_talkers(vpc, cluster)
    records = build_records(vpc, cluster, talkers, snat, random.Random(f"natflow-scenario-{seed}-flows"), density,
                            straddle)  # fmt: skip
    if flow_format == "parquet":  # a Parquet column cannot hold a broken line
        records = [r for r in records if r.damage is None]
    write_cluster(cluster_dir, vpc, cluster, snat)
    write_aws(aws_dir, vpc, flow_format, layout, ids)
    files_rng = random.Random(f"natflow-scenario-{seed}-files")
    if flow_format == "cloudwatch":
        files = write_cloudwatch(flowlogs_dir, records, files_rng)
    else:
        files = write_s3(flowlogs_dir, vpc, records, flow_format, layout, files_rng)
    return Scenario(out_dir, cluster_dir, aws_dir, flowlogs_dir, seed, snat, flow_format, layout, density, straddle,
                    vpc, cluster, records, files)  # fmt: skip


def write_expected(scenario: Scenario, path: Path) -> None:
    document = {"generator": scenario.parameters(), "expected": scenario.expected().to_json()}
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.scenario.generator", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="directory for cluster/, aws/, flowlogs/")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--snat", choices=SNAT_MODES, default="off",
                        help="off: EXTERNALSNAT=true; on: false; on-exclude: false + EXCLUDE_SNAT_CIDRS; "
                             "absent: no aws-node DaemonSet in the dump; auto: EKS Auto Mode NodeClasses next to "
                             "managed nodes; cilium: Cilium ENI mode, masquerading; ipv6: an IPv6 cluster")  # fmt: skip
    parser.add_argument("--format", dest="flow_format", choices=FLOW_FORMATS, default="text")
    parser.add_argument("--layout", choices=KEY_LAYOUTS, default="default", help="S3 key layout")
    parser.add_argument("--density", type=float, default=1.0, help="connections per talker-minute, relative")
    parser.add_argument("--straddle", action="store_true", help="add one connection split across IP holders")
    parser.add_argument("--replace", action="store_true", help="delete cluster/, aws/, flowlogs/ in --out first")
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.replace:
        for name in ("cluster", "aws", "flowlogs"):
            shutil.rmtree(out / name, ignore_errors=True)
    try:
        scenario = build_scenario(out, seed=args.seed, snat=args.snat, flow_format=args.flow_format,
                                  layout=args.layout, density=args.density, straddle=args.straddle)  # fmt: skip
    except (FileExistsError, ValueError) as error:
        print(f"generator: {error}", file=sys.stderr)
        return 2
    write_expected(scenario, out / "expected.json")
    expected = scenario.expected()
    print(f"wrote {out}: {len(scenario.records)} records in {scenario.files_written} flow-log file(s), "
          f"{len(expected.rows)} expected rows")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

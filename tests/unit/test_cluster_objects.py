"""Pod, Node and aws-node objects -> leases, owners and SNAT settings; the owner walk."""

from __future__ import annotations

from typing import Any

import pytest

from natflow.cluster.objects import ObjectError, OwnerRef, instance_id_of, node_record, pod_record, snat_setting
from natflow.cluster.owners import Workload, workload_of
from natflow.timeutil import parse_time


def make_pod(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9f-abcde",
            "namespace": "shop",
            "uid": "uid-1",
            "creationTimestamp": "2026-11-20T10:00:00Z",
            "labels": {"pod-template-hash": "7d9f"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f", "controller": True}],
        },
        "spec": {"nodeName": "n1"},
        "status": {"podIP": "10.0.1.5", **status},
    }


def test_ip_start_prefers_the_network_ready_condition() -> None:
    obj = make_pod(
        startTime="2026-11-20T10:00:05Z",
        conditions=[
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-11-20T10:00:03Z"}
        ],
    )
    record = pod_record(obj)
    assert record is not None and record.start == parse_time("2026-11-20T10:00:03Z") and record.end is None
    del obj["status"]["conditions"]
    assert pod_record(obj).start == parse_time("2026-11-20T10:00:05Z")  # type: ignore[union-attr]
    del obj["status"]["startTime"]
    assert pod_record(obj).start == parse_time("2026-11-20T10:00:00Z")  # type: ignore[union-attr]


def test_completed_pod_releases_its_ip_at_the_last_container_finish() -> None:
    obj = make_pod(
        phase="Succeeded",
        startTime="2026-11-20T10:00:00Z",
        containerStatuses=[
            {"name": "a", "state": {"terminated": {"finishedAt": "2026-11-20T10:05:00Z"}}},
            {"name": "b", "state": {"terminated": {"finishedAt": "2026-11-20T10:06:00Z"}}},
        ],
    )
    record = pod_record(obj)
    assert record is not None and record.end == parse_time("2026-11-20T10:06:00Z") and not record.end_is_estimate


def test_deleted_pod_ends_at_its_deletion_timestamp_or_an_estimate() -> None:
    obj = make_pod(phase="Running", startTime="2026-11-20T10:00:00Z")
    obj["metadata"]["deletionTimestamp"] = "2026-11-20T11:00:00Z"
    assert pod_record(obj, deleted=True).end == parse_time("2026-11-20T11:00:00Z")  # type: ignore[union-attr]
    del obj["metadata"]["deletionTimestamp"]
    obj["status"]["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-20T10:30:00Z"}]
    record = pod_record(obj, deleted=True)
    assert record is not None and record.end == parse_time("2026-11-20T10:30:00Z") and record.end_is_estimate


def test_pods_without_an_ip_hold_nothing_and_bad_times_name_the_object() -> None:
    obj = make_pod()
    del obj["status"]["podIP"]
    assert pod_record(obj) is None
    bad = make_pod(startTime="yesterday")
    with pytest.raises(ObjectError, match=r"^Pod shop/web-7d9f-abcde: status.startTime is not a time: 'yesterday'"):
        pod_record(bad)


def test_branch_eni_and_host_network_are_recognised() -> None:
    obj = make_pod()
    obj["metadata"]["annotations"] = {"vpc.amazonaws.com/pod-eni": '[{"eniId":"eni-1","privateIp":"10.0.1.5"}]'}
    obj["spec"]["hostNetwork"] = True
    record = pod_record(obj)
    assert record is not None and record.branch_eni and record.host_network


def test_node_record_reads_internal_ips_and_instance_id() -> None:
    obj = {
        "kind": "Node",
        "metadata": {"name": "ip-10-0-0-10.ec2.internal", "uid": "n", "creationTimestamp": "2026-11-20T09:00:00Z"},
        "spec": {"providerID": "aws:///us-east-1a/i-0123456789abcdef0"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"}, {"type": "Hostname", "address": "x"}]},
    }
    record = node_record(obj)
    assert record.internal_ips == ("10.0.0.10",) and record.instance_id == "i-0123456789abcdef0"
    assert instance_id_of("aws:////i-0abc") == "i-0abc"
    assert instance_id_of("aws:///us-east-1a/fargate-10.0.0.1") is None


def aws_node(env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "aws-node", "namespace": "kube-system"},
        "spec": {"template": {"spec": {"containers": [{"name": "aws-node", "env": env}]}}},
    }


def test_snat_setting_defaults_and_exclusions() -> None:
    assert snat_setting(aws_node([])).node_snat is True  # absent EXTERNALSNAT means false
    on = snat_setting(aws_node([{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "value": "true"}]))
    assert on.node_snat is False
    excluded = snat_setting(
        aws_node([{"name": "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "value": "10.1.0.0/16, bogus,fd00::/8"}])
    )
    assert excluded.exclude_cidrs == ("10.1.0.0/16",)
    from_config = snat_setting(
        aws_node([{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "valueFrom": {"configMapKeyRef": {}}}])
    )
    assert from_config.node_snat is None
    with pytest.raises(ObjectError, match="no container named aws-node"):
        snat_setting({"kind": "DaemonSet", "metadata": {"name": "aws-node"}, "spec": {}})


def test_workload_walk_uses_objects_then_naming_rules() -> None:
    record = pod_record(make_pod())
    assert record is not None
    owners = {("shop", "ReplicaSet", "web-7d9f"): OwnerRef("Deployment", "web")}

    def lookup(ns: str, kind: str, name: str) -> tuple[bool, OwnerRef | None]:
        key = (ns, kind, name)
        return (key in owners, owners.get(key))

    assert workload_of(record, lookup) == Workload("shop", "Deployment", "web")
    owners.clear()  # ReplicaSet object not in the dump: the pod-template-hash rule
    assert workload_of(record, lookup) == Workload("shop", "Deployment", "web")
    owners[("shop", "ReplicaSet", "web-7d9f")] = None  # a bare ReplicaSet
    assert workload_of(record, lookup) == Workload("shop", "ReplicaSet", "web-7d9f")


def test_job_pods_resolve_to_their_cronjob() -> None:
    obj = make_pod()
    obj["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "report-29000000", "controller": True}]
    record = pod_record(obj)
    assert record is not None
    owners = {("shop", "Job", "report-29000000"): OwnerRef("CronJob", "report")}
    assert workload_of(record, lambda ns, k, n: ((ns, k, n) in owners, owners.get((ns, k, n)))) == Workload(
        "shop", "CronJob", "report"
    )

"""Proves the integration harness itself: a real API server with CRDs, status subresources, RBAC,
garbage collection by the controller-manager, and moto reachable in-process and from subprocesses.

Kubernetes 1.20 limits (design for current EKS, test what 1.20 can): CRD CEL rules
(`x-kubernetes-validations`) are ignored, and Pod `status.hostIPs` (1.28+) is dropped by the server
(asserted below, so a newer server shows up here).

The API handles are typed `Any`: the generated client declares model types for request bodies, and
these tests pass plain dicts (which it accepts) to stay close to the YAML a reader knows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import kubernetes
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.harness.kubeapi import NATFLOW_USER, KubeAPI, wait_until
from tests.harness.motoserver import REGION, MotoServer

pytestmark = pytest.mark.integration

WIDGET_GROUP = "smoke.natflow.test"
WIDGET_VERSION = "v1"
WIDGET_PLURAL = "widgets"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{WIDGET_PLURAL}.{WIDGET_GROUP}"},
    "spec": {
        "group": WIDGET_GROUP,
        "scope": "Namespaced",
        "names": {"plural": WIDGET_PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": WIDGET_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def is_not_found(read: Any) -> bool:
    """True once `read()` raises 404."""
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


@pytest.fixture
def namespace(kube_client: ApiClient) -> Iterator[str]:
    core: Any = kubernetes.client.CoreV1Api(kube_client)
    name = unique_name("smoke")
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def widget_crd(kubeapi: KubeAPI) -> Iterator[str]:
    """The Widget CRD, established; yields its name. Raw REST calls: this also exercises `request`."""
    crds_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crd_name = WIDGET_CRD["metadata"]["name"]
    status, body = kubeapi.request("POST", crds_path, WIDGET_CRD)
    assert status == 201, body

    def established() -> bool:
        status, body = kubeapi.request("GET", f"{crds_path}/{crd_name}")
        # status.conditions is null until the CRD controllers first act on it.
        conditions = (json.loads(body).get("status") or {}).get("conditions") or [] if status == 200 else []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, timeout_seconds=10, what=f"CRD {crd_name} Established")
    yield crd_name
    kubeapi.request("DELETE", f"{crds_path}/{crd_name}")


def test_crd_and_custom_object(kube_client: ApiClient, namespace: str, widget_crd: str) -> None:
    custom: Any = kubernetes.client.CustomObjectsApi(kube_client)
    widget = {
        "apiVersion": f"{WIDGET_GROUP}/{WIDGET_VERSION}",
        "kind": "Widget",
        "metadata": {"name": "first"},
        "spec": {"size": 3},
    }
    custom.create_namespaced_custom_object(WIDGET_GROUP, WIDGET_VERSION, namespace, WIDGET_PLURAL, widget)
    custom.patch_namespaced_custom_object_status(
        WIDGET_GROUP, WIDGET_VERSION, namespace, WIDGET_PLURAL, "first", {"status": {"seen": True}}
    )

    stored = custom.get_namespaced_custom_object(WIDGET_GROUP, WIDGET_VERSION, namespace, WIDGET_PLURAL, "first")
    assert stored["spec"] == {"size": 3}
    assert stored["status"] == {"seen": True}
    assert stored["metadata"]["uid"] and stored["metadata"]["resourceVersion"]


def test_node_and_pod_status_written_as_kubelet_would(kube_client: ApiClient, namespace: str) -> None:
    core: Any = kubernetes.client.CoreV1Api(kube_client)
    node_name = unique_name("ip-10-0-1-5")
    core.create_node({"metadata": {"name": node_name, "labels": {"topology.kubernetes.io/zone": "us-east-1a"}}})
    try:
        core.patch_node_status(node_name, {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.5"}]}})
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "web-0", "labels": {"app": "web"}},
                # nodeName set: no scheduler here, the pod is "bound" at creation.
                "spec": {"nodeName": node_name, "containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        )
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        core.patch_namespaced_pod_status(
            "web-0",
            namespace,
            {
                "status": {
                    "phase": "Running",
                    "hostIP": "10.0.1.5",
                    "hostIPs": [{"ip": "10.0.1.5"}],
                    "podIP": "10.0.1.23",
                    "podIPs": [{"ip": "10.0.1.23"}],
                    "startTime": now,
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    ],
                    "containerStatuses": [
                        {
                            "name": "app",
                            "image": "nginx:1.25",
                            "imageID": "docker-pullable://nginx@sha256:" + "0" * 64,
                            "containerID": "containerd://" + "1" * 64,
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": now}},
                        }
                    ],
                }
            },
        )

        pod = core.read_namespaced_pod("web-0", namespace)
        assert pod.spec.node_name == node_name
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip == "10.0.1.23"
        assert [ip.ip for ip in pod.status.pod_ips] == ["10.0.1.23"]
        assert {c.type: c.status for c in pod.status.conditions} == {"Ready": "True", "ContainersReady": "True"}
        assert pod.status.container_statuses[0].ready is True
        assert pod.status.host_ips is None, "1.20 has no status.hostIPs: read hostIP instead"
        assert core.read_node(node_name).status.addresses[0].address == "10.0.1.5"
    finally:
        core.delete_node(node_name)


def test_controller_manager_garbage_collects_dependents(kube_client: ApiClient, namespace: str) -> None:
    core: Any = kubernetes.client.CoreV1Api(kube_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    owner_reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [owner_reference]}}
    )

    core.delete_namespaced_config_map("owner", namespace)

    wait_until(
        lambda: is_not_found(lambda: core.read_namespaced_config_map("dependent", namespace)),
        timeout_seconds=20,
        what="garbage collection of the dependent ConfigMap",
    )


def test_custom_objects_are_garbage_collected_after_controller_manager_restart(
    kubeapi: KubeAPI, kube_client: ApiClient, namespace: str, widget_crd: str
) -> None:
    # The 1.20 garbage collector re-reads discovery every 30 s; restarting it after creating a CRD
    # makes it watch the new type at once (measured: restart 0.2 s, collection within 0.1 s).
    kubeapi.restart_controller_manager()
    core: Any = kubernetes.client.CoreV1Api(kube_client)
    custom: Any = kubernetes.client.CustomObjectsApi(kube_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "widget-owner"}})
    owner_reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "widget-owner", "uid": owner.metadata.uid}
    custom.create_namespaced_custom_object(
        WIDGET_GROUP,
        WIDGET_VERSION,
        namespace,
        WIDGET_PLURAL,
        {
            "apiVersion": f"{WIDGET_GROUP}/{WIDGET_VERSION}",
            "kind": "Widget",
            "metadata": {"name": "owned", "ownerReferences": [owner_reference]},
        },
    )

    core.delete_namespaced_config_map("widget-owner", namespace)

    wait_until(
        lambda: is_not_found(
            lambda: custom.get_namespaced_custom_object(WIDGET_GROUP, WIDGET_VERSION, namespace, WIDGET_PLURAL, "owned")
        ),
        timeout_seconds=10,
        what="garbage collection of the dependent Widget",
    )


def test_natflow_user_is_forbidden_until_bound(kube_client: ApiClient, natflow_kube_client: ApiClient) -> None:
    natflow_core: Any = kubernetes.client.CoreV1Api(natflow_kube_client)
    rbac: Any = kubernetes.client.RbacAuthorizationV1Api(kube_client)
    role_name = unique_name("smoke-pod-reader")
    try:
        with pytest.raises(ApiException) as forbidden:
            natflow_core.list_pod_for_all_namespaces()
        assert forbidden.value.status == 403

        rbac.create_cluster_role(
            {
                "metadata": {"name": role_name},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            }
        )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": role_name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NATFLOW_USER}],
            }
        )

        def can_list_pods() -> bool:
            try:
                natflow_core.list_pod_for_all_namespaces()
            except ApiException as error:
                if error.status == 403:
                    return False
                raise
            return True

        # The RBAC authorizer reads bindings from an informer: allow it a moment.
        wait_until(can_list_pods, timeout_seconds=10, what="natflow allowed to list pods")
        with pytest.raises(ApiException) as still_forbidden:
            natflow_core.list_node()
        assert still_forbidden.value.status == 403
    finally:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(role_name)
            except ApiException as error:
                if error.status != 404:
                    raise


def test_moto_s3_roundtrip(moto_server: MotoServer) -> None:
    moto_server.reset()
    s3 = boto3.client("s3", **_client_kwargs(moto_server))
    s3.create_bucket(Bucket="flow-logs")
    s3.put_object(Bucket="flow-logs", Key="AWSLogs/1.log", Body=b"2 123456789012 eni-1 ...")

    body = s3.get_object(Bucket="flow-logs", Key="AWSLogs/1.log")["Body"].read()

    assert body == b"2 123456789012 eni-1 ..."


def test_moto_env_reaches_subprocess_boto3(moto_server: MotoServer) -> None:
    moto_server.reset()
    boto3.client("s3", **_client_kwargs(moto_server)).create_bucket(Bucket="seen-from-child")
    child_code = (
        "import boto3, json; print(json.dumps([b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']]))"
    )
    # Only the moto variables: a developer's AWS_PROFILE must not leak into the child.
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    completed = subprocess.run(
        [sys.executable, "-c", child_code],
        env={**child_env, **moto_server.env()},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert json.loads(completed.stdout) == ["seen-from-child"]


def _client_kwargs(moto_server: MotoServer) -> dict[str, str]:
    return {
        "endpoint_url": moto_server.endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }

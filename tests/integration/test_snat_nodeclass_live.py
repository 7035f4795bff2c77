"""EKS Auto Mode live: the real operator starts in a cluster without the NodeClass CRD (it must serve
everything else), then the CRD is installed and a NodeClass created and patched while it runs: the
Auto Mode node's node-IP bytes go from `node` (NodeClass unknown) to `nodeSNAT` (snatPolicy Random,
with the NodeClass patch as the fix) to `hostNetwork` (Disabled)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from tests.harness.kubeapi import KubeAPI
from tests.harness.motoserver import MotoServer
from tests.integration.test_operator_kopf import running_operator, wait_for
from tests.integration.world import GROUP, VERSION, flow_report, prepared_world, put_flow_logs

pytestmark = pytest.mark.integration

CRD = Path(__file__).resolve().parent / "crds" / "nodeclasses.eks.amazonaws.com.yaml"
CRD_NAME = "nodeclasses.eks.amazonaws.com"
NAMESPACE, NODE, NODECLASS = "auto-live", "ip-node-auto", "batch"
NODE_BYTES_PER_MINUTE = 300


def remove_crd(api: kubernetes.client.ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    try:
        ext.delete_custom_resource_definition(CRD_NAME)
    except kubernetes.client.exceptions.ApiException as error:
        if error.status != 404:
            raise
    for _ in range(200):
        try:
            ext.read_custom_resource_definition(CRD_NAME)
        except kubernetes.client.exceptions.ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(0.1)
    pytest.fail(f"{CRD_NAME} was not removed")


def install_crd(api: kubernetes.client.ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
    for _ in range(100):
        conditions = ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.1)
    pytest.fail(f"{CRD_NAME} was not established")


@pytest.fixture(scope="module")
def auto_world(kubeapi: KubeAPI, moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    """An Auto Mode node (NodeClass batch) whose IP sends 300 bytes a minute through the NAT Gateway."""
    with prepared_world(kubeapi, moto_server, NAMESPACE, NODE) as (api, world):
        remove_crd(api)  # natflow must start without it
        core = kubernetes.client.CoreV1Api(api)
        core.patch_node(NODE, {"metadata": {"labels": {"eks.amazonaws.com/compute-type": "auto",
                                                       "eks.amazonaws.com/nodeclass": NODECLASS}}})  # fmt: skip
        now = int(time.time()) // 60 * 60
        for minute in range(now - 600, now + 900, 60):
            put_flow_logs(world, (minute - 60, minute), [
                (world["node_ip"], world["nat_ip"], "54.2.2.2", NODE_BYTES_PER_MINUTE, 30),
            ])  # fmt: skip
        try:
            yield world
        finally:
            core.delete_node(NODE)  # later modules must not find it


def node_rows(custom: kubernetes.client.CustomObjectsApi, source: str) -> list[dict[str, Any]]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, "natflow-system", "flowattributions")["items"]
    return [i["spec"] for i in items if i["spec"]["report"] == "autosnat" and i["spec"]["source"] == source
            and i["spec"]["workload"]["name"] == NODE]  # fmt: skip


def test_nodeclass_crd_installed_and_policy_changed_while_natflow_runs(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    auto_world: dict[str, Any],
    tmp_path: Path,
) -> None:
    store, log = tmp_path / "state.sqlite", tmp_path / "operator.log"
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    with flow_report(custom, "autosnat", {"interval": "1m", "deliveryDelay": "0s"}), running_operator(
        kubeapi, moto_server, store, log
    ):
        wait_for(lambda: node_rows(custom, "node"), 180, "node-IP bytes while the NodeClass is unknown", log)
        assert "Unresolved resources cannot be served" in log.read_text()  # kopf: no CRD yet, and served the rest

        install_crd(kube_client)
        body = {"apiVersion": "eks.amazonaws.com/v1", "kind": "NodeClass", "metadata": {"name": NODECLASS},
                "spec": {"snatPolicy": "Random"}}  # fmt: skip
        custom.create_cluster_custom_object("eks.amazonaws.com", "v1", "nodeclasses", body)
        try:
            rows = wait_for(lambda: node_rows(custom, "nodeSNAT"), 180, "a nodeSNAT row under snatPolicy Random", log)
            assert rows[0]["bytesOut"] % NODE_BYTES_PER_MINUTE == 0
            report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "autosnat")
            conditions = {c["type"]: c for c in report["status"]["conditions"]}
            assert conditions["SNATHidesPodIPs"]["status"] == "True"
            message = conditions["SNATHidesPodIPs"]["message"]
            assert f"NodeClass {NODECLASS} (snatPolicy=Random)" in message
            assert f"kubectl patch nodeclass {NODECLASS} --type merge" in message

            patch = {"spec": {"snatPolicy": "Disabled"}}
            custom.patch_cluster_custom_object("eks.amazonaws.com", "v1", "nodeclasses", NODECLASS, patch)
            wait_for(lambda: node_rows(custom, "hostNetwork"), 180, "a hostNetwork row under snatPolicy Disabled", log)
            assert f"SNAT source NodeClass {NODECLASS} since" in log.read_text()
        finally:
            custom.delete_cluster_custom_object("eks.amazonaws.com", "v1", "nodeclasses", NODECLASS)

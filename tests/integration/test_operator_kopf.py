"""The real operator (`natflow run`, kopf) against a real kube-apiserver and moto in server mode.

Aspects: watch-only on Pods/Nodes (no annotations or finalizers written to them); a FlowReport's
due windows become FlowAttributions whose bytes equal the flow logs of exactly the windows they
list; a restart in the middle (the IP map reloaded from its SQLite store) loses nothing and counts
nothing twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from natflow.timeutil import format_time, parse_time
from tests.harness.faultproxy import FaultProxy
from tests.harness.kubeapi import KubeAPI, free_loopback_ports
from tests.harness.motoserver import MotoServer
from tests.integration.world import (
    GROUP,
    VERSION,
    create_report,
    ensure_namespace,
    flow_report,
    prepared_world,
    put_flow_logs,
)

pytestmark = pytest.mark.integration

NATFLOW = str(Path(sys.executable).with_name("natflow"))
NAMESPACE = "shop-live"
BYTES_OUT_PER_MINUTE, BYTES_IN_PER_MINUTE = 1000, 7000


@pytest.fixture(scope="module")
def live_world(kubeapi: KubeAPI, moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    with prepared_world(kubeapi, moto_server, NAMESPACE, "ip-node-live") as (_, world):
        now = int(time.time())
        # One object per minute around now, so whichever minutes the operator finds due have flow logs.
        for minute in range(now // 60 * 60 - 600, now // 60 * 60 + 600, 60):
            put_flow_logs(world, (minute - 60, minute), [
                ("10.0.1.5", world["nat_ip"], "52.1.1.1", BYTES_OUT_PER_MINUTE, 30),
                (world["nat_ip"], "10.0.1.5", "52.1.1.1", BYTES_IN_PER_MINUTE, 30),
                (world["node_ip"], world["nat_ip"], "54.2.2.2", 300, 30),
            ])  # fmt: skip
        yield world


@contextmanager
def running_operator(
    kubeapi: KubeAPI, moto: MotoServer, store: Path, log: Path, endpoint: str | None = None
) -> Iterator[str]:
    """`natflow run` for the length of a `with` block (its output appended to `log`), then SIGTERM;
    the block gets the operator's liveness URL (a free port: other operators may run on the machine).
    `endpoint`: AWS through another URL than moto's (a FaultProxy in front of it)."""
    liveness = f"http://127.0.0.1:{free_loopback_ports(1)[0]}/healthz"
    env = {**os.environ, **moto.env(), "KUBECONFIG": str(kubeapi.user_kubeconfig()), "NATFLOW_LIVENESS": liveness,
           "NATFLOW_NAMESPACE": "natflow-system", "NATFLOW_STORE": str(store), "NATFLOW_TIMER_SECONDS": "3",
           **({"AWS_ENDPOINT_URL": endpoint} if endpoint else {})}  # fmt: skip
    process = subprocess.Popen([NATFLOW, "run"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        yield liveness
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def web_attribution(api: kubernetes.client.ApiClient, report: str = "live") -> dict[str, Any] | None:
    items = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "flowattributions", label_selector=f"natflow.io/report={report}"
    )["items"]
    return items[0]["spec"] if items else None


def minutes_in(spec: dict[str, Any]) -> int:
    return sum((parse_time(w["end"]) - parse_time(w["start"])) // 60 for w in spec["windows"])


def assert_exact(spec: dict[str, Any]) -> None:
    """The bytes are the flow logs' of exactly the minutes the FlowAttribution lists."""
    assert (spec["bytesOut"], spec["bytesIn"]) == (
        BYTES_OUT_PER_MINUTE * minutes_in(spec),
        BYTES_IN_PER_MINUTE * minutes_in(spec),
    )


def wait_for(predicate: Any, seconds: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; operator log:\n{log.read_text()[-4000:]}", pytrace=False)


def test_live_operator_attributes_due_windows_and_survives_a_restart(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    live_world: dict[str, Any],
    tmp_path: Path,
) -> None:
    store, log = tmp_path / "state.sqlite", tmp_path / "operator.log"
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    create_report(custom, "live", {"interval": "1m", "deliveryDelay": "1m", "period": "Daily"})
    with running_operator(kubeapi, moto_server, store, log) as liveness:
        spec = wait_for(lambda: web_attribution(kube_client), 60, "the first FlowAttribution", log)
        with urllib.request.urlopen(liveness, timeout=10) as probe:  # what the pod's livenessProbe asks
            assert probe.status == 200
        assert spec["workload"] == {"kind": "Deployment", "name": "web", "namespace": NAMESPACE}
        assert_exact(spec)
    assert store.exists()

    # Restart: the store brings the IP map back; windows already applied are not applied again.
    before = web_attribution(kube_client)
    assert before is not None
    with running_operator(kubeapi, moto_server, store, log):
        wait_for(lambda: "leases loaded" in log.read_text(), 30, "the restarted operator", log)
        time.sleep(8)  # a few timer ticks
        after = web_attribution(kube_client)
        assert after is not None and minutes_in(after) >= minutes_in(before)
        assert_exact(after)

    pod = kubernetes.client.CoreV1Api(kube_client).read_namespaced_pod("web-7d9f-abcde", NAMESPACE)
    assert not pod.metadata.finalizers
    assert not [a for a in (pod.metadata.annotations or {}) if "kopf" in a or "natflow" in a]
    report = custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "live")
    assert {c["type"]: c["status"] for c in report["status"]["conditions"]}["Ready"] == "True"
    custom.delete_cluster_custom_object(GROUP, VERSION, "flowreports", "live")


def test_snat_change_is_seen_live_and_warned(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    live_world: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Turning node SNAT on (EXTERNALSNAT=false) while the operator runs: node-IP bytes after the
    change are nodeSNAT, the FlowReport says SNATHidesPodIPs, Events go to the report and the node."""
    store, log = tmp_path / "state.sqlite", tmp_path / "operator.log"
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    apps = kubernetes.client.AppsV1Api(kube_client)

    def set_external_snat(value: str) -> None:
        apps.patch_namespaced_daemon_set("aws-node", "kube-system", {"spec": {"template": {"spec": {"containers": [
            {"name": "aws-node", "env": [{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "value": value}]}]}}}})  # fmt: skip

    def node_rows(source: str) -> list[dict[str, Any]]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, "natflow-system", "flowattributions")["items"]
        return [i for i in items if i["spec"]["report"] == "snat" and i["spec"]["source"] == source]

    report_spec = {"interval": "1m", "deliveryDelay": "0s"}
    with flow_report(custom, "snat", report_spec), running_operator(kubeapi, moto_server, store, log):
        try:
            wait_for(lambda: "leases loaded" in log.read_text(), 30, "the operator", log)
            set_external_snat("false")
            rows = wait_for(lambda: node_rows("nodeSNAT"), 150, "a nodeSNAT row after the change", log)
            assert rows[0]["spec"]["workload"] == {"kind": "Node", "name": "ip-node-live"}
            assert "shop-live/web-7d9f-abcde" in rows[0]["spec"]["pods"]  # the pod that could have sent them
            report = wait_for(
                lambda: (r := custom.get_cluster_custom_object(GROUP, VERSION, "flowreports", "snat"))
                and {c["type"]: c["status"] for c in r["status"].get("conditions", [])}.get("SNATHidesPodIPs") == "True"
                and r, 30, "the SNATHidesPodIPs condition", log)  # fmt: skip
            message = {c["type"]: c for c in report["status"]["conditions"]}["SNATHidesPodIPs"]["message"]
            assert "AWS_VPC_K8S_CNI_EXTERNALSNAT=true" in message
            events = kubernetes.client.CoreV1Api(kube_client).list_namespaced_event("default").items
            warned = {
                (e.involved_object.kind, e.involved_object.name) for e in events if e.reason == "NodeSNATHidesPodIPs"
            }
            assert {("FlowReport", "snat"), ("Node", "ip-node-live")} <= warned
        finally:
            set_external_snat("true")


CHURN_NAMESPACE, CHURN_PODS = "churn", 200


def create_running_pods(api: kubernetes.client.ApiClient, count: int) -> None:
    """`count` pods as the scheduler and kubelet would leave them: bound to the node, Running with an IP."""
    core = kubernetes.client.CoreV1Api(api)
    ensure_namespace(core, CHURN_NAMESPACE)

    def one(index: int) -> None:
        name = f"churn-{index}"
        core.create_namespaced_pod(CHURN_NAMESPACE, {"metadata": {"name": name},
            "spec": {"nodeName": "ip-node-live", "containers": [{"name": "c", "image": "busybox"}]}})  # fmt: skip
        ip = f"10.0.{200 + index // 250}.{index % 250 + 1}"
        core.patch_namespaced_pod_status(name, CHURN_NAMESPACE, {"status": {"phase": "Running", "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": format_time(int(time.time()))}})  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))


def stored_pods(store: Path, namespace: str) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM pods WHERE namespace = ?", (namespace,)).fetchone()[0])


def test_pod_events_are_applied_while_a_report_pass_waits_on_a_slow_s3(
    kubeapi: KubeAPI,
    kube_client: kubernetes.client.ApiClient,
    moto_server: MotoServer,
    live_world: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The real operator: while a pass waits for an S3 object (held by the proxy), pods created
    meanwhile reach the store (the pass reads without the map's lock); once S3 answers, the
    attribution is exact and the liveness probe is green. Held until the pods are in: with the lock
    held for the whole pass, as before, they would not be."""
    store, log = tmp_path / "state.sqlite", tmp_path / "operator.log"
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    with FaultProxy(moto_server.endpoint_url) as proxy:
        proxy.hold("GetObject")
        report_spec = {"interval": "1m", "deliveryDelay": "1m"}
        with flow_report(custom, "stall", report_spec), running_operator(
            kubeapi, moto_server, store, log, endpoint=proxy.endpoint_url
        ) as liveness:
            wait_for(lambda: proxy.held.get("GetObject"), 60, "a pass waiting on S3", log)
            create_running_pods(kube_client, CHURN_PODS)
            wait_for(lambda: stored_pods(store, CHURN_NAMESPACE) == CHURN_PODS, 40, "the pods in the store", log)
            assert proxy.held.get("GetObject")  # the pass is still waiting
            with urllib.request.urlopen(liveness, timeout=10) as probe:
                assert probe.status == 200
            proxy.release()
            spec = wait_for(lambda: web_attribution(kube_client, "stall"), 60, "the FlowAttribution", log)
            assert_exact(spec)
            with urllib.request.urlopen(liveness, timeout=10) as probe:
                assert probe.status == 200

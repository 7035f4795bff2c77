"""The operator's pod-event path: the real `natflow run` (kopf handlers -> IP map -> SQLite store)
against the local kube-apiserver of the integration tests.

Figures: (1) initial sync: pods that exist before the operator starts, until every one is in its
store, and the operator's peak memory; (2) live events: pods created and given an IP (two watch
events each) while it runs, until the store has them all. The baseline is the API server itself:
how fast this machine can write those pods (the operator cannot see events faster than that).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from tests.harness.kubeapi import KubeAPI

NAMESPACE = "bench"
CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
THREADS = 16
NATFLOW = str(Path(sys.executable).with_name("natflow"))
# Targets from the issue: 150,000 pods synced in <= 2 minutes, >= 2,000 pod events/s.
SYNC_TARGET_PODS_PER_S = 150_000 / 120
EVENTS_TARGET_PER_S = 2_000.0

Row = tuple[str, float, float, float, str]


def _pod_ip(index: int) -> str:
    return f"10.{64 + index // 65536}.{index // 256 % 256}.{index % 256}"


def _create_pods(kube: KubeAPI, first: int, count: int) -> float:
    """Create pods and set their status as kubelet would; returns seconds taken."""

    def one(index: int) -> None:
        name = f"pod-{index}"
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "pause"}]}}  # fmt: skip
        status, text = kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", body)
        if status != 201:
            raise RuntimeError(f"create {name}: {status} {text[:200]!r}")
        patch = {"status": {"phase": "Running", "podIP": _pod_ip(index), "podIPs": [{"ip": _pod_ip(index)}],
                            "startTime": "2026-11-21T00:00:00Z"}}  # fmt: skip
        status, text = kube.request(
            "PATCH", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/status", patch, "application/merge-patch+json"
        )
        if status != 200:
            raise RuntimeError(f"status {name}: {status} {text[:200]!r}")

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(first, first + count)))
    return time.perf_counter() - started


def _stored(store: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


def _wait_stored(store: Path, count: int, process: subprocess.Popen[bytes], timeout: float) -> tuple[float, float]:
    """Wait until the store holds `count` pods; returns when its watches were up (the Node stored,
    it is listed first and applied with the first batch) and when the last pod arrived."""
    started = time.perf_counter()
    watching = None
    while _stored(store, "pods") < count:
        if watching is None and _stored(store, "nodes") > 0:
            watching = time.perf_counter()
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited with {process.returncode}")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {_stored(store, 'pods')} of {count} pods stored after {timeout} s")
        time.sleep(0.05)
    done = time.perf_counter()
    return (watching or done) - started, done - started


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(quick: bool) -> list[Row]:
    synced_pods, live_pods = (1_000, 500) if quick else (6_000, 1_000)
    with KubeAPI(with_controller_manager=False) as kube, tempfile.TemporaryDirectory() as work:
        for path, body in (("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}),
                           ("/api/v1/nodes", {"metadata": {"name": "node-1"}})):  # fmt: skip
            kube.request("POST", path, body)
        for crd in sorted((Path(__file__).resolve().parents[1] / "crds").glob("flow*.yaml")):
            kube.request("POST", CRDS_PATH, yaml.safe_load(crd.read_text()))
        write_seconds = _create_pods(kube, 0, synced_pods)
        store = Path(work) / "state.sqlite"
        env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "NATFLOW_STORE": str(store),
               "NATFLOW_NAMESPACE": NAMESPACE, "NATFLOW_LOG_LEVEL": "WARNING"}  # fmt: skip
        log = open(Path(work) / "operator.log", "wb")  # noqa: SIM115 - closed below
        started = time.perf_counter()
        process = subprocess.Popen([NATFLOW, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            first, last = _wait_stored(store, synced_pods, process, timeout=900)
            sync_seconds = time.perf_counter() - started
            # From the moment its watches delivered the first batch (the Node): kopf's start-up excluded.
            handling_seconds = max(last - first, 0.2)
            live_started = time.perf_counter()
            live_write_seconds = _create_pods(kube, synced_pods, live_pods)
            _wait_stored(store, synced_pods + live_pods, process, timeout=900)
            live_seconds = time.perf_counter() - live_started
            peak = _peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
    return [
        (f"initial sync pods/s ({synced_pods} pods, incl. start-up)", synced_pods / sync_seconds,
         synced_pods / write_seconds, SYNC_TARGET_PODS_PER_S, "pods/s; baseline: API server writes"),
        ("pod events/s through the kopf handlers (listed pods, from the first batch)", synced_pods / handling_seconds,
         synced_pods / write_seconds, EVENTS_TARGET_PER_S, "events/s"),
        (f"live pod events/s ({live_pods} pods x 2 events)", 2 * live_pods / live_seconds,
         2 * live_pods / live_write_seconds, EVENTS_TARGET_PER_S, "events/s; bounded by the writer"),
        (f"operator peak RSS after {synced_pods + live_pods} pods", peak, 0.0, 1500.0, "MB"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row[0]:55} {row[1]:10.1f} {row[2]:10.1f} {row[3]:10.1f} {row[4]}")

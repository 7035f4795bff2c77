"""A report pass that takes 30 s while 50,000 pod events arrive (issue 10 §5).

The real Runtime (applier thread, SQLite store, IP map) and the real Controller and pipeline; only
the two ends are stand-ins: the flow logs come from a reader injected at the pipeline's boundary
that takes 30 s (a slow S3), and the API server's writes are recorded. The events go in through
kopf's pod handler, as kopf feeds them, from an event loop in another thread, paced to arrive
during the pass. Every event is applied, the queue never passes its bound, the process's memory
grows by less than a stated limit, and the FlowAttributions are the ones a pass without events
writes. A second run with a tiny bound forces the overload path: events dropped, the cluster listed
again (from a stand-in API server), and still every pod's last state applied. (With 50,000 real API events the local API server needs minutes on two cores; the real
operator is tested with fewer in tests/integration/test_operator_kopf.py.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from bench.etcdpods import pod as churn_pod

from natflow.aws.inventory import FlowLog, Inventory, NatGateway, NetworkInterface, Vpc
from natflow.controller import AwsClients, Controller, WindowOutcome
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.reduce import Reduction
from natflow.handlers import pod_event
from natflow.kube import KubeWriter
from natflow.pipeline import WindowPlan
from natflow.reports.spec import FlowReportSpec
from natflow.runtime import ListPage, OperatorConfig, Runtime
from natflow.timeutil import parse_time

pytestmark = pytest.mark.slow

PASS_SECONDS = 30.0
CHURN_PODS = 25_000  # each: created Running, then Succeeded: 50,000 events
RSS_GROWTH_LIMIT_MB = 200  # the queue's bound (~20 KB a pod event) and 25,000 more pods held
START = "2026-11-21T00:00:00Z"
WINDOW = (parse_time("2026-11-21T10:00:00Z"), parse_time("2026-11-21T11:00:00Z"))
NAT_ENI, NAT_IP = "eni-nat", "10.0.0.220"


def inventory() -> Inventory:
    found = Inventory()
    found.add_nat_gateways([NatGateway.model_validate({"NatGatewayId": "nat-1", "VpcId": "vpc-1",
        "NatGatewayAddresses": [{"NetworkInterfaceId": NAT_ENI, "PrivateIp": NAT_IP}]})])  # fmt: skip
    found.add_vpcs([Vpc.model_validate({"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"})])
    found.add_interfaces([NetworkInterface.model_validate({"NetworkInterfaceId": "eni-node", "VpcId": "vpc-1",
        "PrivateIpAddress": "10.0.0.10", "AvailabilityZone": "us-east-1a",
        "Attachment": {"InstanceId": "i-1", "DeviceIndex": 0}})])  # fmt: skip
    found.add_flow_logs([FlowLog.model_validate({"FlowLogId": "fl-1", "LogDestinationType": "s3",
                                                 "ResourceId": "vpc-1", "LogDestination": "arn:aws:s3:::logs"})])  # fmt: skip
    return found


def cluster_objects() -> list[dict[str, Any]]:
    node = {"kind": "Node", "metadata": {"name": "n1", "uid": "n", "creationTimestamp": START},
            "spec": {"providerID": "aws:///us-east-1a/i-1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"}]}}  # fmt: skip
    replicaset = {"kind": "ReplicaSet", "metadata": {"name": "web-7d", "namespace": "shop",
                  "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]}}  # fmt: skip

    def web(name: str, ip: str) -> dict[str, Any]:
        return {"kind": "Pod", "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}",
                "creationTimestamp": START, "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d", "controller": True}]},
                "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "podIP": ip, "startTime": START}}  # fmt: skip

    return [node, replicaset, web("web-1", "10.0.1.5"), web("web-2", "10.0.1.6")]


def flow_records(reduction: Reduction) -> None:
    """The window's records: two pods out and in, the node itself, an address nobody holds."""
    for minute in range(60):
        start = WINDOW[0] + minute * 60
        for source, destination, peer, nbytes in (
            ("10.0.1.5", NAT_IP, "52.1.1.1", 1000 + minute),
            (NAT_IP, "10.0.1.5", "52.1.1.1", 5000),
            ("10.0.1.6", NAT_IP, "52.2.2.2", 700),
            ("10.0.0.10", NAT_IP, "54.2.2.2", 300),
            ("10.0.9.9", NAT_IP, "54.3.3.3", 70),
        ):
            pkt_src, pkt_dst = (None, peer) if destination == NAT_IP else (peer, None)
            reduction.add(NAT_ENI, source, destination, pkt_src, pkt_dst, None, None, 1, nbytes, start, start + 59,
                          "ACCEPT")  # fmt: skip


class RecordingWriter:
    """The API server's side: FlowAttribution specs as a first write would make them, statuses."""

    def __init__(self) -> None:
        self.specs: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []

    def upsert_attribution(self, namespace: str, name: str, merge: Callable[[Any], Any], *_: Any) -> bool:
        self.specs[(namespace, name)] = merge(None)
        return True

    def patch_report_status(self, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def event(self, *_: Any, **__: Any) -> None:
        pass


def slow_controller(seconds: list[float]) -> type[Controller]:
    """The real Controller with its inputs from memory: the inventory, and flow logs that take
    `seconds[0]` to read."""

    class SlowReads(Controller):
        def inventory(self, spec: FlowReportSpec) -> Inventory:
            return inventory()

        def read_window(self, spec: FlowReportSpec, inventory: Inventory, plan: WindowPlan,
                        outcome: WindowOutcome, diagnostics: Diagnostics) -> Reduction:  # fmt: skip
            reduction = plan.new_reduction()
            flow_records(reduction)
            time.sleep(seconds[0])
            return reduction

    return SlowReads


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


class ApiServer:
    """The churn pods as the API server holds them (each one's latest version and its revision, kept
    small: the objects are made again when listed); what a resync lists if the queue overflows (a
    loaded machine can starve the applier)."""

    def __init__(self) -> None:
        self.pods: dict[int, tuple[str | None, int]] = {}  # index -> (finished, revision)
        self.revision = 1000
        self.lock = threading.Lock()

    def write(self, index: int, finished: str | None) -> dict[str, Any]:
        with self.lock:
            self.revision += 1
            self.pods[index] = (finished, self.revision)
        return self._object(index, finished, self.revision)

    @staticmethod
    def _object(index: int, finished: str | None, revision: int) -> dict[str, Any]:
        obj = churn_pod(index, "churn", finished)
        obj["metadata"]["resourceVersion"] = str(revision)
        return obj

    def relist(self) -> Iterator[ListPage]:
        with self.lock:
            pods, revision = sorted(self.pods.items()), str(self.revision)
        for first in range(0, len(pods), 2000):
            yield "Pod", [self._object(index, *version) for index, version in pods[first : first + 2000]], revision


def feed_events(runtime: Runtime, cluster: ApiServer, started: threading.Event, seconds: float) -> threading.Thread:
    """50,000 pod events through kopf's handler on an event loop of their own, spread over `seconds`."""
    memo = kopf.Memo(runtime=runtime)
    finished = "2026-11-21T10:30:00Z"

    async def feed() -> None:
        started.wait()
        begun = time.monotonic()
        events = [("ADDED", index, None) for index in range(CHURN_PODS)]
        events += [("MODIFIED", index, finished) for index in range(CHURN_PODS)]
        for sent, (kind, index, end) in enumerate(events):
            obj = cluster.write(index, end)
            await pod_event(event={"type": kind, "object": obj}, memo=memo)
            if sent % 200 == 0:  # paced to arrive all through the pass
                behind = begun + seconds * sent / len(events) - time.monotonic()
                await asyncio.sleep(max(behind, 0))

    thread = threading.Thread(target=asyncio.run, args=(feed(),), name="kopf-loop")
    thread.start()
    return thread


@pytest.mark.parametrize(
    "queue_limit",
    [
        pytest.param(5_000, id="bound-5000"),  # on an idle machine the queue stays far below it
        pytest.param(300, id="bound-300"),  # sustained overload: dropped, listed again, same answer
    ],
)
def test_a_30_s_pass_while_50000_pod_events_arrive(tmp_path: Path, queue_limit: int) -> None:
    store = tmp_path / "state.sqlite"
    seconds: list[float] = [0.0]
    config = OperatorConfig("natflow-system", str(store), 48 * 3600, queue_limit=queue_limit)
    writer = RecordingWriter()
    aws = AwsClients(None, None, None, None, None, "us-east-1")
    runtime = Runtime(config, cast(KubeWriter, writer), aws, controller_class=slow_controller(seconds))
    for obj in cluster_objects():
        runtime.enqueue(obj, False)
    runtime.on_aws_node(None, 0)
    cluster = ApiServer()
    runtime.start_applier(cluster.relist)
    report = {"metadata": {"name": "hourly", "uid": "u-1", "generation": 1},
              "spec": {"interval": "1h", "period": "Hourly", "pricePerGB": 0.045}}  # fmt: skip

    runtime.run_report(report, WINDOW)  # without events: the answer to keep
    without_events = dict(writer.specs)
    assert {spec["workload"]["name"] for spec in without_events.values()} == {"web", "n1", "10.0.9.9"}

    writer.specs.clear()
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS from here
    rss_before = rss_mb("VmRSS")
    seconds[0] = PASS_SECONDS
    started = threading.Event()
    feeder = feed_events(runtime, cluster, started, PASS_SECONDS * 0.8)
    begun = time.monotonic()
    started.set()
    status = runtime.run_report(report, WINDOW)
    took = time.monotonic() - begun
    feeder.join()
    deadline = time.monotonic() + 120
    while runtime.resync_pending and time.monotonic() < deadline:  # only after an overflow
        time.sleep(0.1)
    runtime.flush()
    rss_growth = rss_mb("VmHWM") - rss_before

    print(f"pass {took:.1f} s, queue peak {runtime.peak_pending} events, peak RSS +{rss_growth:.0f} MB, "
          f"{runtime.dropped_events} dropped, {runtime.resyncs} resyncs")
    assert took >= PASS_SECONDS and {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert writer.specs == without_events  # the answer is unchanged
    # Every event applied: each churn pod is in the store, ended at its Succeeded time.
    with sqlite3.connect(store) as db:
        counts = db.execute("SELECT count(*), count(end_time) FROM pods WHERE namespace = 'churn'").fetchone()
    assert tuple(counts) == (CHURN_PODS, CHURN_PODS)
    assert runtime.pending == 0
    # Memory bounded: the queue never passed its bound (on an idle machine it stays far below it; on a
    # loaded one the applier may fall behind, and the overflow's resync brings what was dropped).
    assert runtime.peak_pending <= queue_limit
    assert (runtime.resyncs > 0) == (runtime.dropped_events > 0)
    assert rss_growth < RSS_GROWTH_LIMIT_MB, f"peak RSS grew by {rss_growth:.0f} MB"

"""The operator's event path below kopf: queued watch events applied in batches to the state and
the store; a restart ends the pods that went away while it was down, listing the cluster only when
the store has pods that still held an IP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kopf
import pytest

from natflow.cluster.objects import OwnerRef
from natflow.collector import FULL_DUE, FULL_FORCED, FullCollections
from natflow.handlers import applier_health
from natflow.kube import KubeWriter
from natflow.runtime import APPLY_BATCH, OperatorConfig, Runtime
from natflow.store import Store

RUNNING_SINCE = "2026-11-21T00:00:00Z"


def pod(name: str, ip: str, *, finished: str | None = None, host_network: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running", "podIP": ip, "startTime": RUNNING_SINCE}
    if finished:
        status["phase"] = "Succeeded"
        status["containerStatuses"] = [{"state": {"terminated": {"finishedAt": finished}}}]
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "creationTimestamp": RUNNING_SINCE,
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d", "controller": True}]},
        "spec": {"nodeName": "n1", "hostNetwork": host_network},
        "status": status,
    }  # fmt: skip


def runtime(store: Path) -> Runtime:
    return Runtime(OperatorConfig("natflow-system", str(store), 3600), cast(KubeWriter, None))


def test_a_batch_of_events_applies_in_order_to_state_and_store(tmp_path: Path) -> None:
    live = runtime(tmp_path / "state.sqlite")
    node = {"kind": "Node", "metadata": {"name": "n1", "uid": "n", "creationTimestamp": RUNNING_SINCE},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"}]}}  # fmt: skip
    replicaset = {"kind": "ReplicaSet", "metadata": {"name": "web-7d", "namespace": "shop",
                  "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]}}  # fmt: skip
    events = [
        (pod("web-1", "10.0.1.5"), False),
        (pod("web-2", "10.0.1.6"), False),
        (pod("web-1", "10.0.1.5", finished="2026-11-21T01:00:00Z"), False),  # the same pod again: in order
        (pod("agent", "10.0.0.10", host_network=True), False),
        ({"kind": "Pod", "metadata": {"name": "broken", "uid": "u"}, "status": {"podIP": "10.0.1.9"}}, False),
        (node, False),
        (replicaset, False),
    ]
    for obj, deleted in events:
        live.enqueue(obj, deleted)
    assert live.flush() == len(events)

    assert live.state.pods["uid-web-1"].end == 1795222800  # 01:00Z: the later event won
    assert live.state.pods["uid-web-2"].end is None
    assert "uid-agent" in live.state.host_network_pods and "uid-broken" not in live.state.pods
    assert live.state.owners[("shop", "ReplicaSet", "web-7d")] == OwnerRef("Deployment", "web")
    assert live.state.workload(live.state.pods["uid-web-2"]).name == "web"
    assert live.state.nodes["n1"].internal_ips == ("10.0.0.10",)
    reloaded = runtime(tmp_path / "state.sqlite")
    assert dict(reloaded.state.pods) == dict(live.state.pods)
    assert reloaded.state.host_network_pods == live.state.host_network_pods


def test_the_applier_is_woken_early_only_by_a_full_batch(tmp_path: Path) -> None:
    live = runtime(tmp_path / "state.sqlite")
    for index in range(APPLY_BATCH - 1):
        live.enqueue(pod(f"web-{index}", f"10.0.{index // 256}.{index % 256}"), False)
    assert not live._wake.is_set()  # applied at its next round (APPLY_EVERY), with whatever came meanwhile
    live.enqueue(pod("last", "10.1.0.1"), False)
    assert live._wake.is_set()
    assert live.flush() == APPLY_BATCH


def test_first_start_lists_nothing_and_a_restart_ends_the_pods_gone_meanwhile(tmp_path: Path) -> None:
    def unlisted() -> list[str]:
        raise AssertionError("a store without open leases needs no list of the cluster")

    first = runtime(tmp_path / "state.sqlite")
    assert first.reconcile(unlisted, now=2_000_000_000) == 0
    for obj in (pod("web-1", "10.0.1.5"), pod("web-2", "10.0.1.6"), pod("agent", "10.0.0.10", host_network=True),
                pod("job-1", "10.0.1.7", finished="2026-11-21T01:00:00Z")):  # fmt: skip
        first.enqueue(obj, False)
    first.flush()
    first.store.close()

    restarted = runtime(tmp_path / "state.sqlite")
    assert restarted.store.open_pod_uids() == {"uid-web-1", "uid-web-2", "uid-agent"}
    assert restarted.reconcile(lambda: iter(["uid-web-1", "uid-other"]), now=2_000_000_000) == 2
    web2, agent = restarted.state.pods["uid-web-2"], restarted.state.host_network_pods["uid-agent"]
    assert (web2.end, web2.end_is_estimate) == (2_000_000_000, True)
    assert (agent.end, agent.end_is_estimate) == (2_000_000_000, True)
    assert restarted.state.pods["uid-web-1"].end is None
    assert restarted.state.pods["uid-job-1"].end_is_estimate is False  # ended before: untouched
    assert Store(str(tmp_path / "state.sqlite")).open_pod_uids() == {"uid-web-1"}


def test_an_owner_arriving_after_its_pods_changes_their_workload(tmp_path: Path) -> None:
    live = runtime(tmp_path / "state.sqlite")
    live.enqueue(pod("web-1", "10.0.1.5"), False)
    live.flush()
    before = live.state.workload(live.state.pods["uid-web-1"])  # worked out (and kept) without the ReplicaSet
    replicaset = {"kind": "ReplicaSet", "metadata": {"name": "web-7d", "namespace": "shop",
                  "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]}}  # fmt: skip
    live.enqueue(replicaset, False)
    live.flush()
    after = live.state.workload(live.state.pods["uid-web-1"])
    assert (before.kind, after.kind, after.name) == ("ReplicaSet", "Deployment", "web")


def test_the_applier_thread_applies_what_is_queued(tmp_path: Path) -> None:
    live = runtime(tmp_path / "state.sqlite")
    live.start_applier()
    live.enqueue(pod("web-1", "10.0.1.5"), False)
    deadline = time.monotonic() + 5
    while "uid-web-1" not in live.state.pods and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "uid-web-1" in live.state.pods


@pytest.fixture
def collector_state() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_full_collections_wait_for_a_quiet_moment_unless_long_overdue(collector_state: None) -> None:
    def after_middle_collections(count: int) -> None:
        gc.collect()  # counts from zero
        for _ in range(count):
            gc.collect(1)

    collections = FullCollections()
    after_middle_collections(FULL_DUE)
    assert not collections.run(quiet=False)  # busy: left for later
    assert collections.run(quiet=True) and collections.frozen and gc.get_freeze_count() > 0
    assert gc.get_count()[2] == 0
    after_middle_collections(FULL_DUE - 1)
    assert not collections.run(quiet=True)  # not due yet
    after_middle_collections(FULL_FORCED)
    assert collections.run(quiet=False)  # never quiet: collected anyway


def versioned(obj: dict[str, Any], version: int) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(version)}}


def test_an_overflowing_queue_is_dropped_and_the_cluster_listed_again(tmp_path: Path) -> None:
    """Memory stays bounded under overload: past the limit the queued events are dropped (and those
    coming until the resync starts); the resync lists the cluster as the initial sync does, ends the
    pods the list lacks, and applies only events newer than its list."""
    config = OperatorConfig("natflow-system", str(tmp_path / "state.sqlite"), 3600, queue_limit=100)
    live = Runtime(config, cast(KubeWriter, None))
    live.enqueue(pod("gone", "10.0.2.1"), False)
    live.flush()  # applied: its deletion will be among the dropped events
    for index in range(100):
        live.enqueue(versioned(pod(f"web-{index}", f"10.0.1.{index}"), 100 + index), False)
    assert live.pending == 100 and live.peak_pending == 100
    live.enqueue(pod("one-too-many", "10.0.1.200"), False)
    live.enqueue(pod("gone", "10.0.2.1"), True)
    assert live.pending == 0 and live.dropped_events == 102
    assert live.flush() == 0  # nothing queued: the resync will bring it all

    listed = [pod(f"web-{index}", f"10.0.1.{index}") for index in range(100)]
    listed.append(pod("one-too-many", "10.0.1.200"))

    def relist() -> Iterator[tuple[str, list[dict[str, Any]], str]]:
        yield "Node", [], "500"
        # Events that come while the cluster is listed are queued again, for after the list.
        live.enqueue(versioned(pod("web-1", "10.0.1.1", finished="2026-11-21T00:30:00Z"), 499), False)  # older
        live.enqueue(versioned(pod("web-2", "10.0.1.2", finished="2026-11-21T01:00:00Z"), 501), False)  # newer
        assert live.flush() == 0  # a report's join meanwhile applies nothing before the list
        yield "Pod", listed[:50], "500"
        yield "Pod", listed[50:], "500"

    live.resync(relist)
    assert live.resyncs == 1 and len([p for p in live.state.pods if p.startswith("uid-web-")]) == 100
    gone = live.state.pods["uid-gone"]
    assert gone.end is not None and gone.end_is_estimate  # deleted while its events were dropped
    assert live.flush() == 2 and live.stale_events == 1
    assert live.state.pods["uid-web-1"].end is None  # the list is newer than the event at 499
    assert live.state.pods["uid-web-2"].end == 1795222800  # the event at 501 is newer than the list
    assert Store(str(tmp_path / "state.sqlite")).open_pod_uids() == {f"uid-web-{i}" for i in range(100) if i != 2} | {
        "uid-one-too-many"
    }


def test_the_applier_resyncs_on_overflow_by_itself(tmp_path: Path) -> None:
    config = OperatorConfig("natflow-system", str(tmp_path / "state.sqlite"), 3600, queue_limit=100)
    live = Runtime(config, cast(KubeWriter, None))
    listed = [pod(f"web-{index}", f"10.0.1.{index}") for index in range(150)]
    live.start_applier(lambda: iter([("Pod", listed, "7")]))
    with live.lock:  # the applier cannot apply: the queue overflows
        for obj in listed:
            live.enqueue(obj, False)
        assert live.pending < 100 <= live.dropped_events
    deadline = time.monotonic() + 10
    while len(live.state.pods) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(live.state.pods) == 150 and live.resyncs == 1 and live.health() is None


def test_a_dead_applier_fails_the_liveness_probe_and_a_restart_recovers_from_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = runtime(tmp_path / "state.sqlite")
    live.enqueue(pod("web-1", "10.0.1.5"), False)
    live.flush()
    assert live.health() is None

    def broken(events: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    live.apply = broken  # type: ignore[method-assign]
    live.start_applier()
    live.enqueue(pod("web-2", "10.0.1.6"), False)
    deadline = time.monotonic() + 10
    while live.health() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.health() == "the event applier stopped: OperationalError: database or disk is full"
    assert "database or disk is full" in caplog.text and "liveness probe fails" in caplog.text

    memo = kopf.Memo(runtime=live)
    with pytest.raises(kopf.PermanentError, match="disk is full"):
        applier_health(memo=memo)
    assert probe_status(memo) == 500  # what the pod's livenessProbe sees from kopf's endpoint

    restarted = runtime(tmp_path / "state.sqlite")  # Kubernetes restarted the pod
    assert "uid-web-1" in restarted.state.pods and restarted.health() is None
    assert probe_status(kopf.Memo(runtime=restarted)) == 200


def test_a_stalled_applier_fails_the_probe(tmp_path: Path) -> None:
    config = OperatorConfig("natflow-system", str(tmp_path / "state.sqlite"), 3600, stall_seconds=0.5)
    live = Runtime(config, cast(KubeWriter, None))
    live.start_applier()
    with live.lock:  # a join that never ends
        live.enqueue(pod("web-1", "10.0.1.5"), False)
        for _ in range(APPLY_BATCH):
            live.enqueue(pod("web-1", "10.0.1.5"), False)
        time.sleep(1.0)
        assert "no progress" in str(live.health())
    deadline = time.monotonic() + 5
    while live.health() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.health() is None


def probe_status(memo: kopf.Memo) -> int:
    """The status kopf's liveness endpoint answers with natflow's probe handlers registered."""
    from kopf._core.engines.probing import health_reporter

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/healthz"

    async def ask() -> int:
        ready = asyncio.Event()
        server = asyncio.create_task(health_reporter(endpoint, memo=memo, indices=cast(Any, {}),
                                                     registry=kopf.get_default_registry(),
                                                     settings=kopf.OperatorSettings(), ready_flag=ready))  # fmt: skip
        await ready.wait()
        try:
            return await asyncio.to_thread(http_status, endpoint)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    return asyncio.run(ask())


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

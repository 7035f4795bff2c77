"""What the running operator holds: the cluster state, its store, the controller; built once at start."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from natflow.cluster.ipmap import PodColumns
from natflow.cluster.objects import ObjectError, PodRecord, node_record, owner_of, pod_record, snat_setting
from natflow.cluster.state import OWNER_KINDS, ClusterState
from natflow.collector import FullCollections
from natflow.controller import AwsClients, Controller
from natflow.kube import KubeWriter
from natflow.reports.spec import SpecError, read_spec
from natflow.store import Store

log = logging.getLogger("natflow")
DEFAULT_RETENTION_SECONDS = 48 * 3600
PRUNE_EVERY = 600
# Watch events are applied at least this often (seconds), at most this many per store transaction.
# The applier is woken early only when a full batch waits: woken at every event, it applied a few
# events per transaction (BEGIN/COMMIT, the lock and the map's bulk update for each): 86 us an event
# against 37 in batches of 2,000 (30,000 pods held), and it took the GIL from kopf's loop at every wake.
APPLY_EVERY = 0.2
APPLY_BATCH = 2000
# It looks this often whether events stopped coming (for the full collections).
QUIET_CHECK = 0.05
# A look that came this much later than asked (the process was stopped, or starved) starts the quiet
# time afresh: the loop may not yet have read what came meanwhile.
LATE = 0.1
# Quiet this long (nothing queued, nothing coming): a due full collection runs (collector.py).
COLLECT_WHEN_QUIET = 1.0


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str
    store_path: str
    retention_seconds: int

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            namespace=os.environ.get("NATFLOW_NAMESPACE", "natflow-system"),
            store_path=os.environ.get("NATFLOW_STORE", "/var/lib/natflow/state.sqlite"),
            retention_seconds=int(os.environ.get("NATFLOW_RETENTION_SECONDS", DEFAULT_RETENTION_SECONDS)),
        )


class Runtime:
    """Feeds watch events into the state and the store under one lock; runs reports under the same lock."""

    def __init__(self, config: OperatorConfig, writer: KubeWriter, aws: AwsClients | None = None) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.state = ClusterState()
        directory = os.path.dirname(config.store_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.store = Store(config.store_path)
        self.loaded = self.store.load(self.state)
        self.pruned = self.store.prune(int(time.time()) - config.retention_seconds)
        self.writer = writer
        self._aws = aws
        self._controller: Controller | None = None
        self._retention = config.retention_seconds
        self._last_prune = int(time.time())
        self._pending: deque[tuple[Mapping[str, Any], bool]] = deque()
        self._enqueued = 0
        self._wake = threading.Event()

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            self._controller = Controller(
                self.state, self._aws or AwsClients.create(), self.writer, self.config.namespace
            )
        return self._controller

    # -- watch events: queued by the (async) handlers, applied in batches by one thread ---------------
    def enqueue(self, obj: Mapping[str, Any], deleted: bool) -> None:
        """Called on kopf's event loop: must not block (a report may hold the lock for a while)."""
        pending = self._pending
        pending.append((obj, deleted))
        self._enqueued += 1
        if len(pending) >= APPLY_BATCH:
            self._wake.set()

    def start_applier(self) -> None:
        threading.Thread(target=self._apply_forever, name="natflow-applier", daemon=True).start()

    def _apply_forever(self) -> None:
        collections = FullCollections()
        seen = self._enqueued
        last_apply = quiet_since = time.monotonic()
        while True:
            asked = time.monotonic() + QUIET_CHECK
            woken = self._wake.wait(timeout=QUIET_CHECK)
            self._wake.clear()
            now, enqueued = time.monotonic(), self._enqueued
            if enqueued != seen or now > asked + LATE:
                quiet_since = now
            seen = enqueued
            if woken or now - last_apply >= APPLY_EVERY:
                self.flush()
                last_apply = now
            collections.run(quiet=not self._pending and now - quiet_since >= COLLECT_WHEN_QUIET)

    def flush(self) -> int:
        """Apply every queued event, each batch in one store transaction; returns how many."""
        applied = 0
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), APPLY_BATCH))]
            with self.lock, self.store.batch():
                self.apply(batch)
            applied += len(batch)
        return applied

    def apply(self, events: Sequence[tuple[Mapping[str, Any], bool]]) -> None:
        """Objects from watch events, in order; their pods go into the state and the store in bulk."""
        pods: list[PodRecord] = []
        for obj, deleted in events:
            if obj.get("kind") != "Pod":
                self.on_object(obj, deleted)
                continue
            try:
                record = pod_record(obj, deleted=deleted)
            except ObjectError as error:
                log.warning("skipped: %s", error)
                continue
            if record is not None:
                pods.append(record)
        if pods:
            with self.lock:
                self.state.put_pod_columns(PodColumns.of(pods))
                self.store.save_pods(pods)

    def on_object(self, obj: Mapping[str, Any], deleted: bool) -> None:
        """A Pod, Node, ReplicaSet or Job from a watch event (or a list)."""
        kind = obj.get("kind")
        try:
            with self.lock:
                if kind == "Pod":
                    record = pod_record(obj, deleted=deleted)
                    if record is not None:
                        self.state.put_pod(record)
                        self.store.save_pod(record)
                elif kind == "Node":
                    node = node_record(obj, deleted=deleted)
                    self.state.put_node(node)
                    self.store.save_node(node)
                elif kind in OWNER_KINDS:
                    key, owner = owner_of(obj)
                    self.state.put_owner(key, owner)
                    self.store.save_owner(key, owner)
        except ObjectError as error:
            log.warning("skipped: %s", error)

    def on_aws_node(self, obj: Mapping[str, Any] | None, now: int) -> None:
        """The aws-node DaemonSet changed (or is gone): record when the SNAT setting changed."""
        try:
            setting = snat_setting(obj) if obj is not None else None
        except ObjectError as error:
            log.warning("aws-node: %s", error)
            return
        with self.lock:
            changes = self.state.snat.changes()
            if changes and changes[-1][1] == setting:
                return
            since = now if changes else 0  # the first setting seen holds for all earlier history
            self.state.snat.set(since, setting)
            self.store.save_snat(since, setting)
            log.info("aws-node SNAT setting since %s: %s", since, setting)

    def reconcile(self, list_pod_uids: Callable[[], Iterable[str]], now: int) -> int:
        """Pods the store thinks still hold an IP but the cluster's list lacks went away while we were
        down; returns how many. The cluster is listed only if the store has such pods (not on a first start)."""
        gone = self.store.open_pod_uids()
        if gone:
            gone.difference_update(list_pod_uids())
        with self.lock, self.store.batch():
            for uid in gone:
                pod = self.state.pods.get(uid) or self.state.host_network_pods[uid]
                ended = replace(pod, end=now, end_is_estimate=True)
                self.state.put_pod(ended)
                self.store.save_pod(ended)
        return len(gone)

    def run_report(self, report: dict[str, Any], window: tuple[int, int] | None = None) -> dict[str, Any]:
        self.flush()  # the map as of now, not as of the applier's last round
        with self.lock:
            self.maybe_prune(int(time.time()), report)
            return self.controller.run_report(report, window)

    def maybe_prune(self, now: int, report: dict[str, Any]) -> None:
        """Every PRUNE_EVERY seconds, forget pods gone for longer than the longest retention asked for."""
        try:
            asked = read_spec(report.get("spec"), str(report.get("metadata", {}).get("name"))).retention_seconds
        except SpecError:
            asked = 0
        self._retention = max(self._retention, asked)
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        before = now - self._retention
        with self.store.batch():
            dropped = self.store.prune(before)
        dropped_in_memory = self.state.ipmap.prune(before)
        log.info("pruned pods gone before %s: %s from the store, %s in memory", before, dropped, dropped_in_memory)

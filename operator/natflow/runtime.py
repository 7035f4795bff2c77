"""What the running operator holds: the cluster state, its store, the controller; built once at start.

Watch events are queued by kopf's handlers and applied by one thread (the applier) in batches. A
report pass reads and reduces its flow logs without the state's lock and holds it only for the
join, so the applier keeps up however long a pass takes. Under an overload it still cannot take,
the bounded queue is dropped and the cluster listed again (a resync) instead of growing memory.
If the applier dies, `health()` says so: the liveness probe fails and Kubernetes restarts the pod,
which reloads the store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from natflow.cluster.ipmap import PodColumns
from natflow.cluster.objects import ObjectError, PodRecord, node_record, owner_of, pod_record, snat_setting
from natflow.cluster.state import OWNER_KINDS, ClusterState
from natflow.collector import FullCollections
from natflow.controller import AwsClients, Controller
from natflow.kube import KubeWriter
from natflow.reports.spec import SpecError, read_spec
from natflow.settings import Settings
from natflow.store import Store

log = logging.getLogger("natflow")
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
# The kinds a resync lists, in the order the initial sync needs them (nodes before their pods).
RESYNC_KINDS = ("Node", "Pod", "ReplicaSet", "Job")

Event = tuple[Mapping[str, Any], bool]
# One page of a list of the cluster: (kind, objects, the list's resourceVersion).
ListPage = tuple[str, list[dict[str, Any]], str]
Relist = Callable[[], Iterable[ListPage]]


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str
    store_path: str
    retention_seconds: int
    queue_limit: int = 10_000
    stall_seconds: float = 300.0
    aws_max_attempts: int = 10
    aws_region: str | None = None
    vpc_id: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> OperatorConfig:
        return cls(
            namespace=settings.namespace,
            store_path=settings.store,
            retention_seconds=settings.retention_seconds,
            queue_limit=settings.event_queue_limit,
            stall_seconds=settings.applier_stall_seconds,
            aws_max_attempts=settings.aws_max_attempts,
            aws_region=settings.aws_region,
            vpc_id=settings.vpc_id,
        )


def _version(obj: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as the etcd revision it is (None when it is not a number)."""
    text = (obj.get("metadata") or {}).get("resourceVersion")
    return int(text) if isinstance(text, str) and text.isdigit() else None


class Runtime:
    """Feeds watch events into the state and the store under one lock; joins reports under the same lock."""

    def __init__(
        self,
        config: OperatorConfig,
        writer: KubeWriter,
        aws: AwsClients | None = None,
        controller_class: type[Controller] = Controller,
    ) -> None:
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
        self._controller_class = controller_class
        self._controller: Controller | None = None
        self._retention = config.retention_seconds
        self._last_prune = int(time.time())
        self._passes = threading.Lock()  # one report pass at a time (the controller's caches)
        # The queue: appended by kopf's loop, taken by whoever flushes (under `self.lock`, in order).
        self._pending: deque[Event] = deque()
        self._queue = threading.Lock()  # held only to append, take or drop: never blocks kopf's loop long
        self._enqueued = 0
        self._wake = threading.Event()
        # Overload: events dropped (and coming while a resync waits) are covered by the resync's list.
        self._resync_needed = False
        self._resyncing = False
        self._listed_versions: dict[str, int] = {}  # kind -> revision of the last resync's list
        self.resyncs = 0
        self.dropped_events = 0
        self.stale_events = 0
        self.peak_pending = 0
        # The applier's health, for the liveness probe.
        self._applier: threading.Thread | None = None
        self.applier_failure: str | None = None
        self._heartbeat = time.monotonic()

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            config = self.config
            aws = self._aws or AwsClients.create(config.aws_max_attempts, config.aws_region)
            self._controller = self._controller_class(
                self.state, aws, self.writer, config.namespace, state_guard=self.joined, vpc_id=config.vpc_id
            )
        return self._controller

    # -- watch events: queued by the (async) handlers, applied in batches by one thread ---------------
    def enqueue(self, obj: Mapping[str, Any], deleted: bool) -> None:
        """Called on kopf's event loop: must not block (the applier takes the queue's lock only briefly)."""
        with self._queue:
            self._enqueued += 1
            if self._resync_needed:
                self.dropped_events += 1
                return
            pending = self._pending
            if len(pending) >= self.config.queue_limit:
                self.dropped_events += len(pending) + 1
                pending.clear()
                self._resync_needed = True
                self._wake.set()
                return
            pending.append((obj, deleted))
            if len(pending) > self.peak_pending:
                self.peak_pending = len(pending)
        if len(pending) >= APPLY_BATCH:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def resync_pending(self) -> bool:
        """A resync is due or under way (events were dropped that it has not yet brought back)."""
        return self._resync_needed or self._resyncing

    def start_applier(self, relist: Relist | None = None) -> None:
        """The applier thread; `relist` lists the cluster for a resync (without it, an overflow only drops)."""
        self._heartbeat = time.monotonic()
        self._applier = threading.Thread(
            target=self._apply_forever, args=(relist,), name="natflow-applier", daemon=True
        )
        self._applier.start()

    def health(self) -> str | None:
        """Why the operator should be restarted (the applier died or stalled), or None when it is well."""
        if self.applier_failure is not None:
            return f"the event applier stopped: {self.applier_failure}"
        if self._applier is not None and not self._applier.is_alive():
            return "the event applier thread is gone"
        stalled = time.monotonic() - self._heartbeat
        if self._applier is not None and stalled > self.config.stall_seconds:
            return f"the event applier made no progress for {stalled:.0f} s"
        return None

    def _apply_forever(self, relist: Relist | None) -> None:
        try:
            self._apply_rounds(relist)
        except BaseException as error:
            failure = f"{type(error).__name__}: {error}"
            log.critical(
                "the event applier stopped (%s); the liveness probe fails from now on, so Kubernetes restarts "
                "the pod, which reloads what was applied from the store and lists the cluster again",
                failure,
                exc_info=True,
            )
            self.applier_failure = failure  # after the log: whoever sees the failure finds its cause logged

    def _apply_rounds(self, relist: Relist | None) -> None:
        collections = FullCollections()
        seen = self._enqueued
        last_apply = quiet_since = time.monotonic()
        while True:
            asked = time.monotonic() + QUIET_CHECK
            woken = self._wake.wait(timeout=QUIET_CHECK)
            self._wake.clear()
            now, enqueued = time.monotonic(), self._enqueued
            self._heartbeat = now
            if enqueued != seen or now > asked + LATE:
                quiet_since = now
            seen = enqueued
            if self._resync_needed:
                self.resync(relist)
            if woken or now - last_apply >= APPLY_EVERY:
                self.flush()
                last_apply = now
            collections.run(quiet=not self._pending and now - quiet_since >= COLLECT_WHEN_QUIET)

    def flush(self) -> int:
        """Apply every queued event, each batch in one store transaction; returns how many were taken.
        Batches are taken and applied under the lock, so events apply in the order they came
        whichever thread flushes."""
        taken = 0
        while not self._resyncing:  # a resync applies what came during its list after the list
            with self.lock:
                with self._queue:
                    batch = [self._pending.popleft() for _ in range(min(len(self._pending), APPLY_BATCH))]
                if not batch:
                    return taken
                with self.store.batch():
                    self.apply(self._after_list(batch))
            taken += len(batch)
            self._heartbeat = time.monotonic()
        return taken

    def _after_list(self, batch: list[Event]) -> list[Event]:
        """Events not older than the last resync's list of their kind (that list already holds them)."""
        listed = self._listed_versions
        if not listed:
            return batch
        fresh = []
        for obj, deleted in batch:
            seen = listed.get(str(obj.get("kind")))
            version = _version(obj) if seen is not None else None
            if version is not None and seen is not None and version <= seen:
                self.stale_events += 1
                continue
            fresh.append((obj, deleted))
        return fresh

    def resync(self, relist: Relist | None) -> None:
        """After an overflow: list the cluster again and apply it as the initial sync does; pods the
        store holds open that the list lacks went away meanwhile and are ended (as at a restart)."""
        with self._queue:
            self._resync_needed = False  # events from now on are queued again, applied after the list
            self._resyncing = relist is not None
            dropped = self.dropped_events
        self.resyncs += 1
        log.warning(
            "watch events came faster than they could be applied (queue limit %s): %s dropped so far; "
            "listing the cluster again (resync %s)",
            self.config.queue_limit,
            dropped,
            self.resyncs,
        )
        if relist is None:
            return
        try:
            self._relist(relist)
        finally:
            self._resyncing = False

    def _relist(self, relist: Relist) -> None:
        listed_pods: set[str] = set()
        versions: dict[str, int] = {}
        for kind, items, version in relist():
            for item in items:
                item.setdefault("kind", kind)
            with self.lock, self.store.batch():
                self.apply([(item, False) for item in items])
            if kind == "Pod":
                listed_pods.update(str((item.get("metadata") or {}).get("uid")) for item in items)
            if version.isdigit():
                versions[kind] = int(version)
            self._heartbeat = time.monotonic()
        ended = self.reconcile(lambda: listed_pods, int(time.time()))
        self._listed_versions = versions
        log.info("resync %s: %s pods listed, %s ended while events were dropped", self.resyncs, len(listed_pods), ended)

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

    @contextmanager
    def joined(self) -> Iterator[None]:
        """The state as of now (every queued event applied), held still: for a report's join."""
        with self.lock:
            self.flush()
            yield

    def run_report(self, report: dict[str, Any], window: tuple[int, int] | None = None) -> dict[str, Any]:
        """One pass of a report. Its flow logs are read without the lock (the applier goes on meanwhile);
        the controller takes it, through `joined`, for the join only."""
        with self._passes:
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
        with self.lock:
            with self.store.batch():
                dropped = self.store.prune(before)
            dropped_in_memory = self.state.ipmap.prune(before)
        log.info("pruned pods gone before %s: %s from the store, %s in memory", before, dropped, dropped_in_memory)

"""All kopf handlers, thin: event -> Runtime (pure domain underneath) -> patch.

Pods, Nodes, ReplicaSets, Jobs and the aws-node DaemonSet are only watched (`@kopf.on.event`):
natflow never writes annotations, finalizers or status to objects it does not own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import kopf
from kubernetes import client, config

from natflow.kube import GROUP, KubeWriter
from natflow.reports.spec import SpecError, read_spec
from natflow.runtime import RESYNC_KINDS, ListPage, OperatorConfig, Runtime
from natflow.settings import Settings

log = logging.getLogger("natflow")


def _api() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


# Objects per page of every list: kopf's initial lists and the restart's pod list hold one page at
# a time, not 150,000 pods (GBs of JSON) at once.
LIST_CHUNK = 2000
# How long kopf keeps an object's worker task after its last event (kopf's default: 5 s). A waiting
# worker holds that event (a pod: a hundred parsed JSON containers) for the cyclic collector to scan
# again and again: at 1,700 events/s, 8,500 pods' JSON in memory (peak RSS with 20,000 pods 450 MB
# against 230 MB with 0.5 s). A pod's next event comes seconds later and starts a new worker.
WORKER_IDLE_SECONDS = 0.5
# A list of objects' metadata only (PartialObjectMetadataList): no specs or statuses to transfer and parse.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"


def _own(body: kopf.Body) -> bool:
    return str(body.get("apiVersion", "")).startswith(f"{GROUP}/")


class OwnResourcesDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled state, kept only for natflow's own resources (FlowReports).

    kopf builds the essence of every object on every event, by deep-copying its body twice, and
    looks for the last-handled one in its annotations, to detect changes; natflow has no change
    handlers for the objects it only watches, so for them (a cluster's pods: most of the operator's
    CPU at start) the essence is empty and there is no last-handled one to look for."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        if not _own(body):
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if not _own(body):
            return None
        return super().fetch(body=body)


class OwnResourcesProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's handler progress in annotations; the empty essence of a watched-only object (see
    OwnResourcesDiffBase) is cleared of kopf's keys on every event by deep copies: nothing to clear."""

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        if not essence:
            return cast(kopf.BodyEssence, {})
        return super().clear(essence=essence)


@kopf.on.startup()
def startup(*, settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings.persistence.progress_storage = OwnResourcesProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = OwnResourcesDiffBase(prefix=GROUP)
    settings.posting.enabled = False  # natflow posts its own, rate-limited Events
    settings.watching.server_timeout = 600
    settings.watching.chunk_size = LIST_CHUNK
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    api = _api()
    config: Settings = memo.settings
    runtime = Runtime(OperatorConfig.of(config), KubeWriter(api))
    ended = runtime.reconcile(lambda: _pod_uids(api), int(time.time()))
    logger.info(f"store: {runtime.loaded} leases loaded, {runtime.pruned} pruned, {ended} ended while down")
    runtime.start_applier(lambda: _list_cluster(api))
    memo.runtime = runtime


@kopf.on.probe(id="eventApplier")
def applier_health(*, memo: kopf.Memo, **_: Any) -> str:
    """The liveness probe (kopf's endpoint answers 500 when a probe fails): the pod is restarted
    when the event applier died or stalled, and the new one reloads the store."""
    runtime: Runtime | None = getattr(memo, "runtime", None)
    problem = runtime.health() if runtime is not None else None
    if problem is not None:
        log.error("liveness: %s", problem)
        raise kopf.PermanentError(problem)
    return "ok"


def _pages(api: client.ApiClient, kind: str, accept: str | None = None) -> Iterator[dict[str, Any]]:
    """A list of every object of `kind` in the cluster, a page (parsed JSON) at a time."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    listers: dict[str, Callable[..., Any]] = {
        "Node": core.list_node,
        "Pod": core.list_pod_for_all_namespaces,
        "ReplicaSet": apps.list_replica_set_for_all_namespaces,
        "Job": batch.list_job_for_all_namespaces,
    }
    lister = listers[kind]
    headers = {"Accept": accept} if accept else {}
    token = None
    while True:
        response: Any = lister(limit=LIST_CHUNK, _continue=token, _preload_content=False, _headers=headers)
        page = json.loads(response.data)
        yield page
        token = page["metadata"].get("continue")
        if not token:
            return


def _pod_uids(api: client.ApiClient) -> Iterator[str]:
    """The uid of every pod in the cluster, listed a page at a time, metadata only."""
    for page in _pages(api, "Pod", METADATA_ONLY):
        yield from (item["metadata"]["uid"] for item in page["items"])


def _list_cluster(api: client.ApiClient) -> Iterator[ListPage]:
    """The objects the watches feed, listed again for a resync: (kind, a page of objects, the list's
    resourceVersion, the same on every page of one list)."""
    for kind in RESYNC_KINDS:
        version = None
        for page in _pages(api, kind):
            version = version or str(page["metadata"].get("resourceVersion") or "")
            yield kind, page["items"], version


def _event(event: kopf.RawEvent, memo: kopf.Memo, kind: str) -> None:
    obj = dict(event["object"])
    obj.setdefault("kind", kind)
    memo.runtime.enqueue(obj, deleted=event.get("type") == "DELETED")


@kopf.on.event("", "v1", "pods")
async def pod_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "Pod")


@kopf.on.event("", "v1", "nodes")
async def node_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "Node")


@kopf.on.event("apps", "v1", "replicasets")
async def replicaset_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "ReplicaSet")


@kopf.on.event("batch", "v1", "jobs")
async def job_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "Job")


@kopf.on.event("apps", "v1", "daemonsets", field="metadata.name", value="aws-node")
def aws_node_event(*, event: kopf.RawEvent, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    if namespace != "kube-system":
        return
    gone = event.get("type") == "DELETED"
    memo.runtime.on_aws_node(None if gone else dict(event["object"]), int(time.time()))


@kopf.on.create("natflow.io", "v1alpha1", "flowreports")
@kopf.on.update("natflow.io", "v1alpha1", "flowreports", field="spec")
def report_changed(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    try:
        read_spec(body.get("spec"), body.metadata.name)
    except SpecError:
        memo.runtime.run_report(dict(body))  # writes the InvalidSpec condition


def report_timer(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.run_report(dict(body))


def register_timer(settings: Settings) -> None:
    """Each FlowReport looks for due windows every NATFLOW_TIMER_SECONDS (a setting, read at start)."""
    kopf.timer("natflow.io", "v1alpha1", "flowreports", interval=settings.timer_seconds, initial_delay=2)(report_timer)

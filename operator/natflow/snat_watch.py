"""The operator's SNAT sources besides aws-node (cluster/snat.py decides from them, per node).

* NodeClasses (EKS Auto Mode), Calico IPPools and Installations: kopf event handlers, thin. Their
  CRDs may not exist in a cluster: kopf then logs "Unresolved resources cannot be served" once and
  serves the rest; it watches CRDs, so a CRD created later is watched from then on.
* The one ``kube-system/cilium-config`` ConfigMap: RBAC grants it by name only, so a watch with a
  ``metadata.name`` field selector (kopf would list every ConfigMap) in a thread of its own.

``read_snat_sources`` lists all four once (``natflow run --once`` and ``natflow doctor``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf
from kubernetes import client, watch

from natflow.cluster.objects import ObjectError
from natflow.cluster.snat import CILIUM_CONFIG, essence, source_kind
from natflow.cluster.state import ClusterState
from natflow.store import Store

log = logging.getLogger("natflow")
CILIUM_FIELD_SELECTOR = f"metadata.name={CILIUM_CONFIG[1]}"
WATCH_SECONDS = 600
RETRY_SECONDS = 5.0
FORBIDDEN_RETRY_SECONDS = 300.0
RUNTIME_POLL_SECONDS = 0.5

# (API group, version, plural, kind) of the SNAT source custom resources.
SOURCE_RESOURCES = (
    ("eks.amazonaws.com", "v1", "nodeclasses", "NodeClass"),
    ("crd.projectcalico.org", "v1", "ippools", "IPPool"),
    ("operator.tigera.io", "v1", "installations", "Installation"),
)


class _Holder(Protocol):
    """What the Runtime offers: the state and store, under one lock."""

    lock: threading.RLock
    state: ClusterState
    store: Store


def record_snat_source(runtime: _Holder, obj: dict[str, Any], gone: bool, now: int) -> None:
    """A SNAT source object seen (or gone) at `now`: into the state's history and the store."""
    identity = source_kind(obj)
    if identity is None:
        return
    kind, name = identity
    try:
        with runtime.lock:
            since = runtime.state.observe_snat_source(now, kind, name, None if gone else obj)
            if since is None:
                return
            runtime.store.save_snat_source(kind, name, since, None if gone else essence(obj))
    except ObjectError as error:
        log.warning("SNAT source skipped: %s", error)
        return
    log.info("SNAT source %s %s since %s: %s", kind, name, since, "gone" if gone else "changed")


def _event(event: kopf.RawEvent, memo: kopf.Memo, kind: str, api_version: str) -> None:
    obj = dict(event["object"])
    obj.setdefault("kind", kind)
    obj.setdefault("apiVersion", api_version)
    record_snat_source(memo.runtime, obj, event.get("type") == "DELETED", int(time.time()))


@kopf.on.event("eks.amazonaws.com", "v1", "nodeclasses")
def nodeclass_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "NodeClass", "eks.amazonaws.com/v1")


@kopf.on.event("crd.projectcalico.org", "v1", "ippools")
def ippool_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "IPPool", "crd.projectcalico.org/v1")


@kopf.on.event("operator.tigera.io", "v1", "installations")
def installation_event(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _event(event, memo, "Installation", "operator.tigera.io/v1")


@kopf.on.startup()
def start_cilium_watch(*, memo: kopf.Memo, **_: Any) -> None:
    """The watch waits in its thread for the runtime that natflow.handlers' startup makes: a startup
    handler that waited (retried) would keep the operator from stopping when that startup fails."""
    threading.Thread(target=_when_running, args=(memo,), name="natflow-cilium", daemon=True).start()


def _when_running(memo: kopf.Memo) -> None:
    while memo.get("runtime") is None:
        time.sleep(RUNTIME_POLL_SECONDS)
    from natflow.handlers import _api

    watch_cilium_config(_api(), memo["runtime"])


def _cilium_configs(core: client.CoreV1Api, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    response: Any = core.list_namespaced_config_map(
        CILIUM_CONFIG[0], field_selector=CILIUM_FIELD_SELECTOR, _preload_content=False, **kwargs
    )
    listing = json.loads(response.data)
    items = [{**item, "kind": "ConfigMap", "apiVersion": "v1"} for item in listing.get("items") or []]
    return items, str((listing.get("metadata") or {}).get("resourceVersion") or "")


def watch_cilium_config(api: client.ApiClient, runtime: _Holder) -> None:
    """List, then watch, the cilium-config ConfigMap, for ever; an absent one is recorded as gone."""
    core = client.CoreV1Api(api)
    namespace, name = CILIUM_CONFIG
    absent = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"namespace": namespace, "name": name}}
    while True:
        try:
            items, version = _cilium_configs(core)
            record_snat_source(runtime, items[0] if items else absent, not items, int(time.time()))
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                core.list_namespaced_config_map, CILIUM_CONFIG[0], field_selector=CILIUM_FIELD_SELECTOR,
                resource_version=version, timeout_seconds=WATCH_SECONDS,
            )  # fmt: skip
            for event in stream:
                obj = {**event["raw_object"], "kind": "ConfigMap", "apiVersion": "v1"}
                record_snat_source(runtime, obj, event["type"] == "DELETED", int(time.time()))
        except client.exceptions.ApiException as error:
            if error.status == 403:
                log.warning("cannot read ConfigMap kube-system/cilium-config (RBAC): %s", error.reason)
                time.sleep(FORBIDDEN_RETRY_SECONDS)
            elif error.status != 410:  # 410: the version is too old; list again
                log.warning("cilium-config watch: %s %s", error.status, error.reason)
                time.sleep(RETRY_SECONDS)
        except Exception as error:  # the connection broke: list and watch again
            log.warning("cilium-config watch: %s", error)
            time.sleep(RETRY_SECONDS)


# -- one look at every source ---------------------------------------------------------------------
@dataclass
class SourceListing:
    """What one look found: the objects, and for each source whether it is absent or unreadable."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # e.g. "nodeclasses.eks.amazonaws.com (no CRD)"
    forbidden: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.objects)


def read_snat_sources(api: client.ApiClient) -> SourceListing:
    """List NodeClasses, Calico IPPools and Installations, and get the cilium-config ConfigMap;
    a missing CRD or object is absent, a 403 is forbidden; other errors raise ApiException."""
    found = SourceListing()
    custom = client.CustomObjectsApi(api)
    for group, version, plural, kind in SOURCE_RESOURCES:
        resource = f"{plural}.{group}"
        try:
            response: Any = custom.list_cluster_custom_object(group, version, plural, _preload_content=False)
        except client.exceptions.ApiException as error:
            if error.status == 404:
                found.absent.append(f"{resource} (no CRD)")
            elif error.status == 403:
                found.forbidden.append(f"list {resource}")
            else:
                raise
            continue
        items = json.loads(response.data).get("items") or []
        found.objects.extend({**item, "kind": kind, "apiVersion": f"{group}/{version}"} for item in items)
    try:
        items, _ = _cilium_configs(client.CoreV1Api(api))
    except client.exceptions.ApiException as error:
        if error.status != 403:
            raise
        found.forbidden.append("list configmaps kube-system/cilium-config")
        items = []
    found.objects.extend(items)
    if not items:
        found.absent.append("ConfigMap kube-system/cilium-config")
    return found


def load_snat_sources(runtime: _Holder, listing: SourceListing, now: int) -> None:
    for obj in listing:
        record_snat_source(runtime, obj, False, now)

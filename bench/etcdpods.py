"""Pods and Nodes written straight into the API server's etcd, for the operator benchmark.

The local API server creates only a few hundred pods a second through its REST API (admission,
validation, one etcd transaction each), far below the figures to measure. Objects put into etcd
directly, many per transaction, are what the API server lists and watches for its clients. It
must run with `--storage-media-type=application/json`, so that a stored value is the object's
plain JSON. Its watch cache for pods is off: filling it would make the API server decode every
one of the 150,000 writes (its CPU doubled, seeding took a third longer); kube-apiserver 1.20 serves a list
without a resourceVersion (kopf's) from etcd either way, and a watch from etcd instead of the cache.

The objects look like those of an EKS cluster: Deployment pods with owner references, a service
account token volume, conditions, container statuses and the managed fields that kubelet and the
controller-manager leave, 3.6 KB of JSON each.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Flags for the harness: plain JSON values, no watch cache for pods; transactions of a thousand objects.
APISERVER_FLAGS = ("--storage-media-type=application/json", "--watch-cache-sizes=pods#0")
ETCD_FLAGS = ("--max-txn-ops=10000", "--max-request-bytes=67108864")
OBJECTS_PER_TXN = 1000
CREATED = "2026-11-21T00:00:00Z"
PODS_PER_REPLICASET = 50
PODS_PER_NODE = 110  # the VPC CNI's limit for a large instance type


def pod_ip(index: int) -> str:
    return f"10.{64 + index // 65536}.{index // 256 % 256}.{index % 256}"


def node_name(index: int) -> str:
    return f"ip-10-0-{index // 256 % 256}-{index % 256}.ec2.internal"


def _uid(kind: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{kind}/{index}"))


def _managed_fields(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": "v1", "time": CREATED,
            "fieldsType": "FieldsV1", "fieldsV1": fields}  # fmt: skip


def pod(index: int, namespace: str, finished: str | None = None) -> dict[str, Any]:
    """Pod `index` as the API server stores it: Running with its IP, or Succeeded at `finished`."""
    app = f"app-{index // PODS_PER_REPLICASET}"
    return _pod(app, f"{index:06x}", namespace, _uid("pod", index), _uid("replicaset", index // PODS_PER_REPLICASET),
                node_name(index // PODS_PER_NODE), pod_ip(index), f"{index:064x}", finished)


def _pod(app: str, suffix: str, namespace: str, uid: str, owner_uid: str, node: str, ip: str, container_id: str,
         finished: str | None) -> dict[str, Any]:  # fmt: skip
    replicaset = f"{app}-5d8c7b9f4"
    name = f"{replicaset}-{suffix}"
    conditions = [{"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": CREATED}
                  for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]  # fmt: skip
    state: dict[str, Any] = {"running": {"startedAt": CREATED}}
    if finished is not None:
        state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": CREATED, "finishedAt": finished}}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name, "generateName": f"{replicaset}-", "namespace": namespace, "uid": uid,
            "creationTimestamp": CREATED,
            "labels": {"app": app, "pod-template-hash": "5d8c7b9f4"},
            "annotations": {"kubernetes.io/psp": "eks.privileged"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset,
                                 "uid": owner_uid,
                                 "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [
                _managed_fields("kube-controller-manager", "Update", {"f:metadata": {
                    "f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                    "f:ownerReferences": {".": {}, f'k:{{"uid":"{owner_uid}"}}': {
                        ".": {}, "f:apiVersion": {}, "f:blockOwnerDeletion": {}, "f:controller": {}, "f:kind": {},
                        "f:name": {}, "f:uid": {}}}},
                    "f:spec": {"f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {},
                                                                     "f:resources": {}}}}}),
                _managed_fields("kubelet", "Update", {"f:status": {
                    "f:conditions": {'k:{"type":"Ready"}': {".": {}, "f:status": {}, "f:type": {}}},
                    "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
                    "f:podIPs": {".": {}, f'k:{{"ip":"{ip}"}}': {".": {}, "f:ip": {}}}, "f:startTime": {}}}),
            ],
        },
        "spec": {
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "containers": [{
                "name": "app", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1.4.2",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "AWS_REGION", "value": "us-east-1"}],
                "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": node,
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running" if finished is None else "Succeeded", "conditions": conditions,
            "hostIP": "10.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": CREATED,
            "containerStatuses": [{"name": "app", "state": state, "lastState": {}, "ready": finished is None,
                                   "restartCount": 0, "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1.4.2",
                                   "imageID": "docker-pullable://app@sha256:" + "0" * 64,
                                   "containerID": f"containerd://{container_id}", "started": finished is None}],
            "qosClass": "Burstable",
        },
    }  # fmt: skip


def node(index: int) -> dict[str, Any]:
    name = node_name(index)
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "uid": _uid("node", index), "creationTimestamp": CREATED},
            "spec": {"providerID": f"aws:///us-east-1a/i-{index:017x}"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.{index // 256 % 256}.{index % 256}"},
                                     {"type": "Hostname", "address": name}]}}  # fmt: skip


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def node_item(index: int) -> tuple[str, str]:
    return f"/registry/minions/{node_name(index)}", _json(node(index))


def pod_item(index: int, namespace: str, finished: str | None = None) -> tuple[str, str]:
    """(etcd key, stored JSON) of `pod(index, namespace, finished)`; running pods from a template (150,000 of them)."""
    name = f"app-{index // PODS_PER_REPLICASET}-5d8c7b9f4-{index:06x}"  # as _pod names it
    if finished is not None:
        return f"/registry/pods/{namespace}/{name}", _json(pod(index, namespace, finished))
    replicaset = index // PODS_PER_REPLICASET
    values = {"app": f"app-{replicaset}", "suffix": f"{index:06x}", "namespace": namespace, "uid": _uid("pod", index),
              "owner_uid": _uid("replicaset", replicaset), "node": node_name(index // PODS_PER_NODE),
              "ip": pod_ip(index), "container_id": f"{index:064x}"}  # fmt: skip
    parts = _running_pod_template()
    text = "".join(part if position % 2 == 0 else values[part] for position, part in enumerate(parts))
    return f"/registry/pods/{namespace}/{name}", text


@functools.cache
def _running_pod_template() -> list[str]:
    """A running pod's JSON split around its varying fields: literal, field name, literal, ..."""
    text = _json(_pod(*(f"@@{name}@@" for name in _POD_FIELDS), finished=None))
    return re.split("@@(" + "|".join(_POD_FIELDS) + ")@@", text)


_POD_FIELDS = ("app", "suffix", "namespace", "uid", "owner_uid", "node", "ip", "container_id")


class Etcd:
    """etcd's v3 JSON gateway (`POST /v3/kv/txn`, keys and values base64)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def put(self, items: Sequence[tuple[str, str]]) -> None:
        """One transaction putting every (key, value)."""
        puts = [{"requestPut": {"key": _b64(key), "value": _b64(value)}} for key, value in items]
        request = urllib.request.Request(f"{self.url}/v3/kv/txn", json.dumps({"success": puts}).encode(), method="POST")
        with self._http.open(request, timeout=120) as response:
            answer = json.load(response)
        if not answer.get("succeeded"):
            raise RuntimeError(f"etcd txn of {len(items)} objects failed: {str(answer)[:300]}")

    def put_all(self, items: Iterable[tuple[str, str]], per_txn: int = OBJECTS_PER_TXN) -> None:
        """Put everything in transactions of `per_txn`, two at a time (encoding overlaps etcd's work)."""
        iterator = iter(items)
        with ThreadPoolExecutor(2) as pool:
            pending: deque[Future[None]] = deque()
            while batch := list(itertools.islice(iterator, per_txn)):
                pending.append(pool.submit(self.put, batch))
                if len(pending) > 2:
                    pending.popleft().result()
            for future in pending:
                future.result()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()

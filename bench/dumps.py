"""Cluster dumps: `natflow.cluster.dump.load_cluster` over a generated ``kubectl get pods -A -o json``.

(e) a 150,000-pod List of about 1 GB, read through the real loader in a child process: MB/s against
    the same loader fed by ijson's C backend (yajl2_c) instead of natflow.jsonstream, and peak RSS;
    the same at a quarter of the pods; and the quarter's pods as four Lists one after another in
    one file (four snapshots: the input as large as the full dump, the cluster as small as the
    quarter), which shows that memory follows the cluster, not the size of the input.

Pods look like a real EKS cluster's (managedFields, ownerReferences, several containers with
probes and resources, podIPs, five conditions, containerStatuses; some finished, some pending,
some hostNetwork) and are written as kubectl writes them (4-space indents). The files are made
once (seeded) under bench/out/dumps/ and reused.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

PODS = 150_000
QUICK_PODS = 20_000
RATE_TARGET = 20.0  # MB/s
RSS_TARGET_MB = 800
MB = 1 << 20
BASE_TIME = 1_795_168_800  # 2026-11-20T10:00:00Z
NAMESPACES = 300
NODES = 1_000


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _uid(rng: random.Random) -> str:
    text = f"{rng.getrandbits(128):032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _container(rng: random.Random, name: str, image: str) -> dict[str, Any]:
    return {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": name,
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "resources": {
            "limits": {"memory": f"{rng.choice((256, 512, 1024))}Mi"},
            "requests": {"cpu": f"{rng.choice((100, 250, 500))}m", "memory": "128Mi"},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access", "readOnly": True}
        ],
    }


def pod(index: int, version: int, rng: random.Random) -> dict[str, Any]:
    """One pod as ``kubectl get pods -A -o json`` shows it; index selects its name, node and IP."""
    namespace = f"team-{index % NAMESPACES:03d}"
    app = f"svc-{index % 4_000:04d}"
    template = f"{rng.getrandbits(40):010x}"[:10]
    name = f"{app}-{template}-{rng.getrandbits(25):05x}"[:63]
    node = f"ip-10-{index % NODES // 250}-{index % 250}-{index % NODES % 200}.ec2.internal"
    ip = f"10.{64 + index // 65_536 % 64}.{index // 256 % 256}.{index % 256}"
    created = BASE_TIME + index % 86_400
    kind = ("ReplicaSet", "ReplicaSet", "ReplicaSet", "DaemonSet", "Job", "StatefulSet")[index % 6]
    phase = "Succeeded" if kind == "Job" and index % 12 == 4 else ("Pending" if index % 97 == 0 else "Running")
    images = [f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{app}:v1.{index % 40}.{index % 7}"]
    images += ["public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.2"] * (index % 5 == 0)
    containers = [_container(rng, f"c{n}" if n else "app", image) for n, image in enumerate(images)]
    started = created + 4
    conditions = [
        {"lastProbeTime": None, "lastTransitionTime": _iso(created + offset), "status": "True", "type": condition}
        for condition, offset in (
            ("PodReadyToStartContainers", 3),
            ("Initialized", 1),
            ("Ready", 9),
            ("ContainersReady", 9),
            ("PodScheduled", 0),
        )
    ]
    if phase == "Succeeded":
        state: dict[str, Any] = {
            "terminated": {
                "containerID": f"containerd://{rng.getrandbits(256):064x}",
                "exitCode": 0,
                "finishedAt": _iso(started + 600),
                "reason": "Completed",
                "startedAt": _iso(started),
            }
        }
    else:
        state = {"running": {"startedAt": _iso(started)}}
    statuses = [
        {
            "containerID": f"containerd://{rng.getrandbits(256):064x}",
            "image": container["image"],
            "imageID": f"{container['image'].split(':')[0]}@sha256:{rng.getrandbits(256):064x}",
            "lastState": {},
            "name": container["name"],
            "ready": phase == "Running",
            "restartCount": index % 5 == 0,
            "started": phase == "Running",
            "state": state,
        }
        for container in containers
    ]
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable"}
    if phase != "Pending":
        host_network = kind == "DaemonSet"
        address = f"10.0.{index % NODES // 250}.{index % 250}" if host_network else ip
        status |= {
            "conditions": conditions,
            "containerStatuses": statuses,
            "hostIP": f"10.0.{index % NODES // 250}.{index % 250}",
            "hostIPs": [{"ip": f"10.0.{index % NODES // 250}.{index % 250}"}],
            "podIP": address,
            "podIPs": [{"ip": address}],
            "startTime": _iso(created + 1),
        }
    else:
        status["conditions"] = [conditions[-1] | {"status": "False", "reason": "Unschedulable"}]
    owner = f"{app}-{template}" if kind == "ReplicaSet" else app
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": _iso(created),
            "generateName": f"{owner}-",
            "labels": {"app.kubernetes.io/name": app, "pod-template-hash": template, "team": namespace},
            "managedFields": [
                {
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {"f:labels": {}, "f:ownerReferences": {}},
                        "f:spec": {"f:containers": {}},
                    },
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "time": _iso(created),
                },
                {
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:podIPs": {}}},
                    "manager": "kubelet",
                    "operation": "Update",
                    "subresource": "status",
                    "time": _iso(started + 9),
                },
            ],
            "name": name,
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
                    "blockOwnerDeletion": True,
                    "controller": True,
                    "kind": kind,
                    "name": owner,
                    "uid": _uid(rng),
                }
            ],
            "resourceVersion": str(version),
            "uid": _uid(rng),
        },
        "spec": {
            "containers": containers,
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "hostNetwork": kind == "DaemonSet",
            "nodeName": node,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Never" if kind == "Job" else "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                }
                for taint in ("not-ready",)
            ],
            "volumes": [
                {
                    "name": "kube-api-access",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
                    },
                }
            ],
        },
        "status": status,
    }


def generate(path: Path, pods: int, snapshots: int) -> None:
    """Write `snapshots` Lists of the same `pods` pods (each a later resourceVersion) into `path`."""
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8") as out:
        for snapshot in range(snapshots):
            rng = random.Random(20261206)  # the same pods, uids and names in every snapshot
            out.write('{\n    "apiVersion": "v1",\n    "items": [\n')
            for index in range(pods):
                text = json.dumps(pod(index, 10_000_000 + snapshot * pods + index, rng), indent=4)
                out.write(("" if index == 0 else ",\n") + "        " + text.replace("\n", "\n        "))
            out.write('\n    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n')
    partial.rename(path)


def run(data: Path, quick: bool) -> list[Any]:
    """The rows of figure (e), each measured in a child process (see bench.run.measure)."""
    from bench.run import Row, measure

    pods = QUICK_PODS if quick else PODS
    quarter = pods // 4
    directory = data / "dumps"
    directory.mkdir(parents=True, exist_ok=True)
    sets = [(directory / f"pods-{pods}.json", pods, 1), (directory / f"pods-{quarter}.json", quarter, 1)]
    sets.append((directory / f"pods-{quarter}x4.json", quarter, 4))
    for path, count, snapshots in sets:
        if not path.exists():
            print(f"generating {path.name} ...", file=sys.stderr)
            _child("generate", str(path), str(count), str(snapshots))
    full, small, repeated = (path for path, _, _ in sets)

    def load(path: Path, expected: int) -> tuple[float, float, float]:
        found = measure([sys.executable, "-m", "bench.dumps", "load", str(path)], f"load_cluster {path.name}")
        result = json.loads(found.output)
        if result["used"] != expected or result["warnings"]:
            raise SystemExit(f"load_cluster {path.name}: {result}, expected {expected:,} pods and no warnings")
        return path.stat().st_size / MB / found.seconds, found.tree_rss / MB, found.cpu_seconds

    baseline = measure([sys.executable, "-m", "bench.dumps", "ijson", str(full)], f"loader on ijson {full.name}")
    if json.loads(baseline.output)["items"] != pods:
        raise SystemExit(f"ijson read {baseline.output.strip()} of {full.name}")
    base_rate = full.stat().st_size / MB / baseline.seconds
    rate, rss, cpu = load(full, pods)
    small_rate, small_rss, _ = load(small, quarter)
    repeated_rate, repeated_rss, _ = load(repeated, quarter)
    size = f"{full.stat().st_size / 1e9:.2f} GB"

    def speed(figure: str, value: float) -> Row:
        verdict = "pass" if value >= RATE_TARGET else "fail"
        return Row(figure, f"{value:.1f} MB/s", f"{base_rate:.1f} MB/s", f"{value / base_rate:.2f}x",
                   f">= {RATE_TARGET:g} MB/s", verdict)  # fmt: skip

    def memory(figure: str, value: float) -> Row:
        return Row(
            figure, f"{value:.0f} MB", "-", "-", f"<= {RSS_TARGET_MB} MB", "pass" if value <= RSS_TARGET_MB else "fail"
        )

    first = speed(f"(e) cluster dump, {pods:,}-pod List ({size}), load_cluster", rate)
    first.cpu = f"{cpu:.1f} / {baseline.cpu_seconds:.1f}"
    return [
        first,
        speed(f"    the same, {quarter:,} pods ({small.stat().st_size / 1e6:.0f} MB)", small_rate),
        speed(
            f"    {quarter:,} pods x 4 snapshots in one file ({repeated.stat().st_size / 1e9:.2f} GB)", repeated_rate
        ),
        memory(f"    peak RSS, {pods:,} pods", rss),
        memory(f"    peak RSS, {quarter:,} pods", small_rss),
        memory(f"    peak RSS, {quarter:,} pods x 4 snapshots", repeated_rss),
    ]


def _child(*argv: str) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "bench.dumps", *argv], check=True)


# -- children -------------------------------------------------------------------------------------


def load_child(path: str) -> int:
    from natflow.cluster.dump import load_cluster
    from natflow.diagnostics import Diagnostics

    diagnostics = Diagnostics()
    state, stats = load_cluster([path], diagnostics)
    leases = len(state.pods) + len(state.host_network_pods)
    warnings = [d.message for d in diagnostics.items]
    print(json.dumps({"used": stats.objects_used, "leases": leases, "read": stats.objects_read, "warnings": warnings}))
    return 0


def ijson_child(path: str) -> int:
    """The baseline: load_cluster with ijson's C backend in place of natflow.jsonstream."""
    from collections.abc import Iterator

    import ijson

    from natflow.cluster import dump
    from natflow.diagnostics import Diagnostics
    from natflow.jsonstream import Element

    def items(handle: Any, streamed: Any) -> Iterator[Element]:
        for position, item in enumerate(ijson.items(handle, "items.item", multiple_values=True)):
            yield Element(1, "items", position, item, {"kind": "List"})

    dump.iter_stream = items  # type: ignore[assignment]
    _, stats = dump.load_cluster([path], Diagnostics())
    print(json.dumps({"items": stats.objects_read, "backend": ijson.backend}))
    return 0


def main(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "generate":
        generate(Path(rest[0]), int(rest[1]), int(rest[2]))
        return 0
    if kind == "load":
        return load_child(rest[0])
    if kind == "ijson":
        return ijson_child(rest[0])
    raise SystemExit(f"unknown child {kind!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

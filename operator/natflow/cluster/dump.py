"""Load a cluster dump: ``kubectl get -o json`` files (objects or Lists of mixed kinds) and watch
streams (``--output-watch-events``), merged by object uid, newest resourceVersion winning."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from natflow.cluster.objects import ObjectError, describe, member
from natflow.cluster.snat import changed_at, source_kind
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.jsonstream import JsonStreamError, iter_values
from natflow.paths import walk_files

READ_KINDS = ("Pod", "Node", "ReplicaSet", "Job", "DaemonSet")
AWS_NODE = ("kube-system", "aws-node")


@dataclass
class DumpStats:
    files_read: int = 0
    objects_read: int = 0
    objects_used: int = 0
    objects_skipped: int = 0
    other_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class _Seen:
    obj: Mapping[str, Any]
    version: tuple[int, str]
    deleted: bool
    where: str  # file and value index, for messages


def _version(obj: Mapping[str, Any]) -> tuple[int, str]:
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return (int(text), text) if text.isdigit() else (-1, text)


def _objects(value: Any, list_kind: str | None = None) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Objects in one JSON value, each with whether a DELETED watch event carried it."""
    if not isinstance(value, dict):
        raise ObjectError(f"expected a JSON object, found {type(value).__name__}")
    if "type" in value and isinstance(value.get("object"), dict) and "kind" not in value:
        obj = value["object"]
        yield obj, value["type"] == "DELETED"
        return
    kind = value.get("kind")
    if isinstance(value.get("items"), list) and (kind == "List" or (isinstance(kind, str) and kind.endswith("List"))):
        item_kind = kind[: -len("List")] if kind != "List" else None
        for item in value["items"]:
            if isinstance(item, dict) and "kind" not in item and item_kind:
                item = {**item, "kind": item_kind}
            yield from _objects(item, kind)
        return
    if not kind:
        where = f" in a {list_kind}" if list_kind else ""
        raise ObjectError(f"{describe(value)}{where}: no kind (not a Kubernetes object)")
    yield value, False


def load_cluster(paths: list[str], diagnostics: Diagnostics) -> tuple[ClusterState, DumpStats]:
    """Read every file, merge objects, and build the cluster state (time-indexed IP map included)."""
    stats = DumpStats()
    newest: dict[tuple[str, str], _Seen] = {}
    sources: dict[tuple[str, str], list[_Seen]] = {}  # every version of each SNAT source object
    for path, _ in walk_files(paths):
        stats.files_read += 1
        try:
            with open(path, encoding="utf-8") as handle:
                for index, value in enumerate(iter_values(handle), start=1):
                    try:
                        for obj, deleted in _objects(value):
                            stats.objects_read += 1
                            kind = str(obj.get("kind"))
                            source = source_kind(obj)
                            if source is not None:
                                version = _version(obj)
                                sources.setdefault(source, []).append(
                                    _Seen(obj, version, deleted, f"{path} value {index}")
                                )
                                continue
                            if kind not in READ_KINDS:
                                stats.other_kinds[kind] = stats.other_kinds.get(kind, 0) + 1
                                continue
                            meta = member(obj, "metadata")
                            identity = str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
                            seen = _Seen(obj, _version(obj), deleted, f"{path} value {index}")
                            old = newest.get((kind, identity))
                            if old is None or seen.version >= old.version:
                                seen.deleted = seen.deleted or (old is not None and old.deleted)
                                newest[(kind, identity)] = seen
                            elif deleted:
                                old.deleted = True
                    except ObjectError as error:
                        stats.objects_skipped += 1
                        diagnostics.warn("ClusterObjectSkipped", f"{path} value {index}: {error}", file=path)
        except (JsonStreamError, UnicodeDecodeError) as error:
            diagnostics.warn(
                "ClusterFileUnreadable",
                f"{path}: not kubectl JSON ({error}); objects before the problem are kept",
                file=path,
            )
        except OSError as error:
            diagnostics.warn("ClusterFileUnreadable", f"{path}: {error.strerror or error}", file=path)

    state = ClusterState()
    _replay_snat_sources(sources, state, stats, diagnostics)
    # Owners first so that workloads resolve; nodes before pods is not needed (the map is lazy).
    order = {kind: rank for rank, kind in enumerate(("ReplicaSet", "Job", "Node", "Pod", "DaemonSet"))}
    aws_node_found = False
    for (kind, _), seen in sorted(newest.items(), key=lambda item: order[item[0][0]]):
        obj = seen.obj
        try:
            if kind == "DaemonSet":
                meta = member(obj, "metadata")
                if (meta.get("namespace"), meta.get("name")) == AWS_NODE and not seen.deleted:
                    state.set_snat(0, obj)
                    aws_node_found = True
                continue
            state.apply(obj, deleted=seen.deleted)
            stats.objects_used += 1
        except ObjectError as error:
            stats.objects_skipped += 1
            diagnostics.warn("ClusterObjectSkipped", f"{seen.where}: {error}")
    if not aws_node_found:
        state.set_snat(0, None)
    return state, stats


def _replay_snat_sources(
    sources: Mapping[tuple[str, str], list[_Seen]], state: ClusterState, stats: DumpStats, diagnostics: Diagnostics
) -> None:
    """Each SNAT source object's versions in resourceVersion order: the first holds for all earlier
    history; each later one from when its spec (or data) last changed (its managedFields time).
    Replayed in time order, all objects together (Calico's pools are one set)."""
    timed: list[tuple[int, str, str, _Seen]] = []
    for (kind, name), seen in sources.items():
        for number, version in enumerate(sorted(seen, key=lambda s: s.version)):
            since = 0 if number == 0 else changed_at(version.obj)
            if since is None:
                stats.objects_skipped += 1
                diagnostics.warn(
                    "ClusterObjectSkipped",
                    f"{version.where}: {describe(version.obj)}: a later version with no managedFields or creation time",
                )
                continue
            timed.append((since, kind, name, version))
    for since, kind, name, version in sorted(timed, key=lambda entry: entry[:3]):
        try:
            state.replay_snat_source(kind, name, since, None if version.deleted else version.obj)
            stats.objects_used += 1
        except ObjectError as error:
            stats.objects_skipped += 1
            diagnostics.warn("ClusterObjectSkipped", f"{version.where}: {error}")

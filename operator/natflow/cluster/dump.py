"""Load a cluster dump: ``kubectl get -o json`` files (objects or Lists of mixed kinds) and watch
streams (``kubectl get -w -o json``, with or without ``--output-watch-events``), merged by object
uid, the newest resourceVersion winning.

A List is read one item at a time (`natflow.jsonstream`) and only what attribution takes from an
object is kept (its lease record, owner or SNAT setting), so memory follows the cluster, not the
size of the dump.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from natflow.cluster.objects import (
    ObjectError,
    describe,
    member,
    node_record,
    owner_of,
    pod_records,
    snat_setting,
)
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.jsonstream import Element, JsonStreamError, iter_stream
from natflow.paths import walk_files

READ_KINDS = ("Pod", "Node", "ReplicaSet", "Job", "DaemonSet")
AWS_NODE = ("kube-system", "aws-node")
# Owners first so that workloads resolve; nodes before pods is not needed (the map is lazy).
_APPLY_ORDER = {kind: rank for rank, kind in enumerate(("ReplicaSet", "Job", "Node", "Pod", "DaemonSet"))}
# Per file, the skipped objects named one by one; the rest are counted in one more warning.
SKIPS_NAMED_PER_FILE = 10


class NoUsableObjects(FileNotFoundError):
    """The cluster input holds no object natflow can use: a usage error (exit status 2), like a missing file."""


@dataclass
class DumpStats:
    files_read: int = 0
    objects_read: int = 0
    objects_used: int = 0
    objects_skipped: int = 0
    other_kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Where:
    path: str
    value: int  # the top-level value in the file (1-based)
    item: int | None  # the item of a List (0-based)

    def __str__(self) -> str:
        return f"{self.path} value {self.value}" + ("" if self.item is None else f" item {self.item}")


@dataclass(slots=True)
class _Kept:
    """One version of an object: what natflow takes from it, and where it was read."""

    kind: str
    version: str
    number: int | None  # the resourceVersion as a number, when it is one
    where: _Where
    deleted: bool
    as_shown: Any  # PodRecord | NodeRecord | (owner key, OwnerRef) | SnatSetting | None
    as_deleted: Any  # the same when a DELETED event carried the object (differs for open pod leases)
    error: str | None  # why the object is unusable: reported if this is the version kept


@dataclass
class _Duplicates:
    """Objects of one uid that differ between two files (or twice in one), resolved one way."""

    count: int
    example: str


class _Loader:
    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        self.stats = DumpStats()
        self.kept: dict[str, _Kept] = {}
        self.duplicates: dict[tuple[str, str, str], _Duplicates] = {}
        self.skipped_in: dict[str, int] = {}

    # -- reading ---------------------------------------------------------------------------------
    def read_file(self, path: str) -> None:
        self.stats.files_read += 1
        read_before = self.stats.objects_read
        try:
            with open(path, "rb") as handle:
                for found in iter_stream(handle, ("items",)):
                    if isinstance(found, Element):
                        list_kind = found.members.get("kind")
                        where = _Where(path, found.value_index, found.position)
                        self.read_value(found.value, where, list_kind if isinstance(list_kind, str) else "List")
                    elif not found.streamed:  # a List's own members were read with its items
                        self.read_value(found.value, _Where(path, found.value_index, None), None)
        except JsonStreamError as error:
            kept = self.stats.objects_read - read_before
            reason = "ClusterFileTruncated" if error.truncated else "ClusterFileUnreadable"
            what = "" if error.truncated else "not kubectl JSON: "
            message = f"{path}: {what}{error}; kept the {_count(kept, 'object')} before it"
            self.diagnostics.warn(reason, message, file=path)
        except OSError as error:
            self.diagnostics.warn("ClusterFileUnreadable", f"{path}: {error.strerror or error}", file=path)

    def read_value(self, value: Any, where: _Where, list_kind: str | None) -> None:
        try:
            for obj, deleted in _objects(value, list_kind):
                self.stats.objects_read += 1
                self.read_object(obj, deleted, where)
        except ObjectError as error:
            self.skip(f"{where}: {error}", where.path)

    def skip(self, message: str, path: str) -> None:
        self.stats.objects_skipped += 1
        count = self.skipped_in[path] = self.skipped_in.get(path, 0) + 1
        if count <= SKIPS_NAMED_PER_FILE:
            self.diagnostics.warn("ClusterObjectSkipped", message, file=path)

    def read_object(self, obj: Mapping[str, Any], deleted: bool, where: _Where) -> None:
        kind = str(obj.get("kind"))
        if kind not in READ_KINDS:
            self.stats.other_kinds[kind] = self.stats.other_kinds.get(kind, 0) + 1
            return
        meta = member(obj, "metadata")
        if kind == "DaemonSet" and (meta.get("namespace"), meta.get("name")) != AWS_NODE:
            return  # only aws-node's settings matter
        as_shown: Any = None
        as_deleted: Any = None
        error = None
        try:
            if kind == "Pod":
                as_shown, as_deleted = pod_records(obj)
            elif kind == "Node":
                as_shown = as_deleted = node_record(obj)
            elif kind == "DaemonSet":
                as_shown = as_deleted = snat_setting(obj)
            else:
                as_shown = as_deleted = owner_of(obj)
        except ObjectError as problem:
            error = str(problem)
        uid = meta.get("uid")
        identity = uid if isinstance(uid, str) and uid else f"{kind} {meta.get('namespace')}/{meta.get('name')}"
        version = str(meta.get("resourceVersion") or "")
        new = _Kept(kind, version, _version_number(version), where, deleted, as_shown, as_deleted, error)
        old = self.kept.get(identity)
        if old is None:
            self.kept[identity] = new
            return
        if new.number is None or old.number is None or new.number >= old.number:
            new.deleted = new.deleted or old.deleted  # a DELETED event ends the object for good
            self.kept[identity] = new
        elif deleted:
            old.deleted = True
        # Each write of an object gets a new resourceVersion: two numbered versions of one kind are its
        # history (a dump and a watch stream overlap), and the newest is the object. Anything else that
        # differs is a conflict the input should not hold.
        numbered = new.number is not None and old.number is not None
        history = numbered and old.kind == kind and new.number != old.number
        if not history and (old.kind, old.as_shown, old.error) != (kind, new.as_shown, new.error):
            self.note_duplicate(identity, old, new, describe(obj))

    def note_duplicate(self, uid: str, old: _Kept, new: _Kept, name: str) -> None:
        if new.number is None or old.number is None:
            rule = "the later-read (resourceVersions are not both numbers)"
        elif new.number == old.number:
            rule = "the later-read (equal resourceVersions)"
        else:
            rule = "the newest resourceVersion"
        key = (old.where.path, new.where.path, rule)
        found = self.duplicates.get(key)
        if found is not None:
            found.count += 1
            return
        kept = self.kept[uid].where
        example = (
            f"uid {_short(uid)}: {old.kind} at {old.where} (resourceVersion {_short(old.version)}) and {name} at "
            f"{new.where} (resourceVersion {_short(new.version)}): kept {kept}"
        )
        self.duplicates[key] = _Duplicates(1, example)

    # -- the result ------------------------------------------------------------------------------
    def state(self) -> ClusterState:
        for (first, second, rule), found in self.duplicates.items():
            files = f"twice in {first}" if first == second else f"in both {first} and {second}"
            self.diagnostics.warn(
                "ClusterObjectDuplicate",
                f"{_count(found.count, 'uid')} with different content {files}; kept {rule}; first: {found.example}",
                file=second,
            )
        state = ClusterState()
        aws_node_found = False
        for kept in sorted(self.kept.values(), key=lambda seen: _APPLY_ORDER[seen.kind]):
            if kept.error is not None:
                self.skip(f"{kept.where}: {kept.error}", kept.where.path)
                continue
            found = kept.as_deleted if kept.deleted else kept.as_shown
            if kept.kind == "Pod":
                if found is not None:
                    state.put_pod(found)
            elif kept.kind == "Node":
                state.put_node(found)
            elif kept.kind == "DaemonSet":
                if not kept.deleted:
                    state.snat.set(0, found)
                    aws_node_found = True
                continue
            else:
                state.put_owner(*found)
            self.stats.objects_used += 1
        if not aws_node_found:
            state.snat.set(0, None)
        for path, count in self.skipped_in.items():
            if count > SKIPS_NAMED_PER_FILE:
                more = count - SKIPS_NAMED_PER_FILE
                self.diagnostics.warn("ClusterObjectSkipped", f"{path}: {more} more objects skipped", file=path)
        if self.stats.objects_used == 0 and not aws_node_found:
            raise NoUsableObjects(self.nothing_usable())
        return state

    def nothing_usable(self) -> str:
        stats = self.stats
        found = f"{_count(stats.files_read, 'file')}, {_count(stats.objects_read, 'object')} read"
        if stats.other_kinds:
            found += " (" + ", ".join(f"{count} {kind}" for kind, count in sorted(stats.other_kinds.items())) + ")"
        problems = [d.message for d in self.diagnostics.items if d.reason.startswith("Cluster")]
        first = f"; first problem: {problems[0]}" if problems else ""
        return f"--cluster: no usable object (a Pod, Node, ReplicaSet, Job or the aws-node DaemonSet) in {found}{first}"


def _version_number(text: str) -> int | None:
    """An etcd revision (a 64-bit counter) as a number; anything else is not one."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


def _short(text: str) -> str:
    """Text from the input for a message: cut short when long."""
    return reprlib.repr(text)[1:-1] if text else "none"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _objects(value: Any, list_kind: str | None = None) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Objects in one JSON value, each with whether a DELETED watch event carried it."""
    if not isinstance(value, dict):
        raise ObjectError(f"expected a JSON object, found {type(value).__name__}")
    if "type" in value and isinstance(value.get("object"), dict) and "kind" not in value:
        if value["type"] != "BOOKMARK":  # a bookmark carries only a resourceVersion, no object
            yield value["object"], value["type"] == "DELETED"
        return
    kind = value.get("kind")
    if list_kind and not kind and list_kind != "List" and list_kind.endswith("List"):
        value = {**value, "kind": list_kind[: -len("List")]}  # items of a PodList carry no kind
        kind = value["kind"]
    if isinstance(value.get("items"), list) and isinstance(kind, str) and kind.endswith("List"):
        for item in value["items"]:
            yield from _objects(item, kind)
        return
    if not kind:
        where = f" in a {_short(list_kind)}" if list_kind else ""
        raise ObjectError(f"{describe(value)}{where}: no kind (not a Kubernetes object)")
    yield value, False


def load_cluster(paths: list[str], diagnostics: Diagnostics) -> tuple[ClusterState, DumpStats]:
    """Read every file, merge objects, and build the cluster state (time-indexed IP map included).

    Raises NoUsableObjects when nothing in the files can be used.
    """
    loader = _Loader(diagnostics)

    def skip(path: str, problem: str) -> None:
        diagnostics.warn("ClusterFileUnreadable", f"{path}: {problem}; skipped", file=path)

    for path, _ in walk_files(paths, skip):
        loader.read_file(path)
    return loader.state(), loader.stats
